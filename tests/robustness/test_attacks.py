"""robustness.attacks: FGSM and PGD stay in the eps-ball and pixel range, raise
the loss, lower accuracy, and run on Keras models, SavedModels, TFSMLayer and in
tf.function."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from contractive_keras.robustness import attacks
from tests.robustness.classifiers import mnist_test, tiny_mnist_model


def per_example_loss(model, x, y):
    logits = model(x, training=False)
    return keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True).numpy()


def accuracy(model, x, y):
    return float(np.mean(np.argmax(model(x, training=False), -1) == y))


def distance(x_adv, x, norm):
    delta = (np.asarray(x_adv) - x).reshape(len(x), -1)
    return np.abs(delta).max(1) if norm == "linf" else np.linalg.norm(delta, axis=1)


ATTACK_CASES = [("fgsm", "linf", 0.1), ("fgsm", "l2", 1.5), ("pgd", "linf", 0.1), ("pgd", "l2", 1.5),
                ("pgd", "linf", 1.0), ("fgsm", "l2", 40.0)]


def run_attack(name, model, x, y, eps, norm, **kwargs):
    if name == "fgsm":
        return attacks.fgsm(model, x, y, eps, norm=norm)
    return attacks.pgd(model, x, y, eps, norm=norm, steps=10, seed=7, **kwargs)


@pytest.mark.parametrize("name,norm,eps", ATTACK_CASES)
def test_adversarial_images_stay_in_eps_ball_and_pixel_range(name, norm, eps):
    model = tiny_mnist_model(hidden=32)
    x, y = mnist_test(100)  # real digits: many pixels sit exactly at 0 and 1
    x_adv = np.asarray(run_attack(name, model, x, y, eps, norm))
    assert x_adv.shape == x.shape and x_adv.dtype == np.float32
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    # float32 rounding of x + delta may overshoot the radius by an ulp or so.
    assert np.all(distance(x_adv, x, norm) <= eps * (1 + 1e-5) + 1e-6)
    # The attack moved the images (it used its budget, not a no-op).
    assert np.median(distance(x_adv, x, norm)) > 0.5 * min(eps, 1.0)


@pytest.mark.parametrize("name", ["fgsm", "pgd"])
@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_attacks_raise_loss_and_lower_accuracy_of_trained_model(name, norm):
    model = tiny_mnist_model(hidden=32)
    x, y = mnist_test(300)
    eps = 0.1 if norm == "linf" else 2.0
    x_adv = run_attack(name, model, x, y, eps, norm)
    clean_acc, adv_acc = accuracy(model, x, y), accuracy(model, x_adv, y)
    assert clean_acc > 0.85
    assert adv_acc < clean_acc - 0.4
    assert per_example_loss(model, x_adv, y).mean() > per_example_loss(model, x, y).mean() + 1.0


@pytest.mark.parametrize("norm,eps", [("linf", 0.05), ("l2", 1.0)])
def test_fgsm_never_lowers_the_loss_of_a_convex_model(norm, eps):
    # Softmax regression: the loss is convex in x and the clipped step keeps
    # each coordinate's sign, so loss(x_adv) >= loss(x) + grad . delta >= loss(x).
    model = tiny_mnist_model(hidden=0)
    x, y = mnist_test(300)
    x_adv = attacks.fgsm(model, x, y, eps, norm=norm)
    before, after = per_example_loss(model, x, y), per_example_loss(model, x_adv, y)
    assert np.all(after >= before - 1e-5)
    assert np.mean(after > before) > 0.95


def test_pgd_is_at_least_as_strong_as_fgsm():
    model = tiny_mnist_model(hidden=32)
    x, y = mnist_test(300)
    eps = 0.05
    fgsm_loss = per_example_loss(model, attacks.fgsm(model, x, y, eps), y)
    pgd_adv = attacks.pgd(model, x, y, eps, steps=20, seed=1)
    assert per_example_loss(model, pgd_adv, y).mean() > fgsm_loss.mean()
    assert accuracy(model, pgd_adv, y) <= accuracy(model, attacks.fgsm(model, x, y, eps), y)


def test_zero_radius_returns_the_clean_images():
    model = tiny_mnist_model(hidden=0)
    x, y = mnist_test(20)
    np.testing.assert_array_equal(attacks.fgsm(model, x, y, 0.0), x)
    np.testing.assert_array_equal(attacks.pgd(model, x, y, 0.0, steps=3, seed=0), x)


def test_pgd_is_reproducible_with_a_seed_and_random_start_depends_on_it():
    model = tiny_mnist_model(hidden=32)
    x, y = mnist_test(50)
    a = attacks.pgd(model, x, y, 0.1, steps=3, seed=3)
    b = attacks.pgd(model, x, y, 0.1, steps=3, seed=3)
    c = attacks.pgd(model, x, y, 0.1, steps=3, seed=4)
    np.testing.assert_array_equal(a, b)
    assert np.abs(np.asarray(a) - np.asarray(c)).max() > 0
    d = attacks.pgd(model, x, y, 0.1, steps=3, random_start=False)
    e = attacks.pgd(model, x, y, 0.1, steps=3, random_start=False, seed=99)
    np.testing.assert_array_equal(d, e)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_pgd_restarts_stay_in_ball_and_are_no_weaker_on_average(norm):
    model = tiny_mnist_model(hidden=32)
    x, y = mnist_test(200)
    eps = 0.03 if norm == "linf" else 0.8
    single = attacks.pgd(model, x, y, eps, norm=norm, steps=5, seed=5)
    several = attacks.pgd(model, x, y, eps, norm=norm, steps=5, restarts=3, seed=5)
    assert np.all(distance(several, x, norm) <= eps * (1 + 1e-5) + 1e-6)
    assert accuracy(model, several, y) <= accuracy(model, single, y) + 0.01


def test_pgd_inside_tf_function_matches_eager():
    model = tiny_mnist_model(hidden=32)
    x, y = mnist_test(50)
    graph = tf.function(lambda x, y: attacks.pgd(model, x, y, 0.1, steps=4, seed=tf.constant([1, 2])))
    eager = attacks.pgd(model, x, y, 0.1, steps=4, seed=tf.constant([1, 2]))
    np.testing.assert_allclose(graph(tf.constant(x), tf.constant(y)), eager, atol=1e-6)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    model = tiny_mnist_model(hidden=32)
    path = str(tmp_path_factory.mktemp("exported") / "sm")
    model.export(path, verbose=False)
    keras_path = str(tmp_path_factory.mktemp("keras") / "model.keras")
    model.save(keras_path)
    return model, path, keras_path


def test_attacks_run_through_savedmodels_tfsmlayer_and_paths(exported):
    model, path, keras_path = exported
    x, y = mnist_test(64)
    loaded = tf.saved_model.load(path)
    wrapped = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.TFSMLayer(path, call_endpoint="serve")])

    class SignatureOnly:  # a SavedModel seen only through its signatures
        signatures = loaded.signatures

    reference_fgsm = attacks.fgsm(model, x, y, 0.1)
    reference_pgd = attacks.pgd(model, x, y, 0.1, steps=5, seed=0)
    for target in (loaded, wrapped, SignatureOnly(), path, keras_path):
        np.testing.assert_allclose(attacks.fgsm(target, x, y, 0.1), reference_fgsm, atol=1e-6)
        np.testing.assert_allclose(attacks.pgd(target, x, y, 0.1, steps=5, seed=0), reference_pgd, atol=1e-6)


def test_pgd_on_savedmodel_serving_function_inside_tf_function(exported):
    _, path, _ = exported
    loaded = tf.saved_model.load(path)
    x, y = mnist_test(64)
    attack = tf.function(lambda x, y: attacks.pgd(loaded, x, y, 0.1, steps=5, seed=[0, 1]))
    x_adv = attack(tf.constant(x), tf.constant(y))
    logits = loaded.serve(x_adv)
    assert np.mean(np.argmax(logits, -1) == y) < np.mean(np.argmax(loaded.serve(x), -1) == y) - 0.3


@pytest.mark.parametrize("kwargs,message", [
    (dict(norm="l1"), "norm must be one of"),
    (dict(eps=-0.1), "eps must be a non-negative number"),
    (dict(steps=0), "steps must be a positive int"),
    (dict(restarts=2, random_start=False), "restarts > 1 needs random_start"),
])
def test_bad_attack_arguments_are_refused_with_clear_errors(kwargs, message):
    model = tiny_mnist_model(hidden=0)
    x, y = mnist_test(4)
    kwargs = {"eps": 0.1, **kwargs}
    with pytest.raises(ValueError, match=message):
        attacks.pgd(model, x, y, **kwargs)


def _saturated_linear_model(scale):
    """A linear classifier whose logits are ``scale`` times a trained one's."""
    rng = np.random.default_rng(0)
    model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(10)])
    w = rng.normal(size=(784, 10)).astype("float32") * scale
    model.layers[-1].set_weights([w, np.zeros(10, "float32")])
    return model


def test_margin_loss_attacks_where_saturated_cross_entropy_is_blind():
    """Huge logits make softmax exactly one-hot in float32: the cross-entropy
    gradient vanishes at correctly classified points and FGSM-CE changes
    nothing there, while the margin objective still finds adversarial steps."""
    model = _saturated_linear_model(1e4)
    x = np.random.default_rng(1).random((64, 28, 28, 1)).astype("float32")
    y = np.asarray(model(x)).argmax(1)  # every point "correct"
    ce = np.asarray(model(attacks.fgsm(model, x, y, 0.1, loss="ce"))).argmax(1)
    margin = np.asarray(model(attacks.fgsm(model, x, y, 0.1, loss="margin"))).argmax(1)
    assert (ce == y).mean() == 1.0
    assert (margin == y).mean() < 0.5


def test_margin_loss_is_max_other_logit_minus_true_logit():
    logits = tf.constant([[1.0, 5.0, 2.0], [0.5, -1.0, 3.0]])
    value = attacks.attack_loss(logits, tf.constant([1, 0]), "margin").numpy()
    np.testing.assert_allclose(value, [2.0 - 5.0, 3.0 - 0.5])


def test_unknown_attack_loss_is_refused():
    with pytest.raises(ValueError, match="loss must be one of"):
        attacks.fgsm(lambda x: x, np.zeros((1, 2), "float32"), [0], 0.1, loss="hinge")
