"""robustness.square: the Square attack stays in the eps-ball and pixel box, lowers
accuracy without any gradient (zero, undefined or saturated), never raises the
margin, is reproducible, follows the reference schedule, and refuses bad arguments."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from contractive_keras.robustness import attacks
from contractive_keras.robustness.square import _pulse, square, square_fraction
from tests.robustness.classifiers import MEAN, STD, mnist_test, tiny_mnist_model

EPS = {"linf": 0.15, "l2": 2.0}


def accuracy(model, x, y):
    return float(np.mean(np.argmax(model(x), -1) == y))


def margins(model, x, y):
    """z_y - max_{j != y} z_j per example."""
    logits = np.asarray(model(x), np.float64)
    true = logits[np.arange(len(y)), y]
    logits[np.arange(len(y)), y] = -np.inf
    return true - logits.max(1)


def distance(x_adv, x, norm):
    delta = (np.asarray(x_adv) - x).reshape(len(x), -1)
    return np.abs(delta).max(1) if norm == "linf" else np.linalg.norm(delta, axis=1)


def plain_model():
    model = tiny_mnist_model(hidden=32)
    return lambda x: model(x, training=False)


@pytest.fixture(scope="module")
def attacked():
    """Square on 100 MNIST digits, 300 queries, seed 0, per norm (computed once)."""
    x, y = mnist_test(100)
    return x, y, {norm: np.asarray(square(plain_model(), x, y, eps, norm=norm, queries=300, seed=0))
                  for norm, eps in EPS.items()}


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_outputs_lie_in_the_eps_ball_and_the_pixel_box(attacked, norm):
    x, _, results = attacked
    x_adv = results[norm]
    assert x_adv.shape == x.shape and x_adv.dtype == np.float32
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    # float32 rounding of x + delta may overshoot the radius by an ulp or so.
    tolerance = 1e-6 if norm == "linf" else 1e-4 * EPS[norm]
    assert np.all(distance(x_adv, x, norm) <= EPS[norm] + tolerance)
    # The search used its budget: most images moved to (or near) the sphere.
    assert np.median(distance(x_adv, x, norm)) > 0.5 * EPS[norm]


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_square_lowers_accuracy_of_the_trained_model(attacked, norm):
    x, y, results = attacked
    model = plain_model()
    clean_acc, adv_acc = accuracy(model, x, y), accuracy(model, results[norm], y)
    assert clean_acc > 0.85
    assert adv_acc < clean_acc - 0.5


def test_the_margin_never_rises_above_the_clean_margin(attacked):
    x, y, results = attacked
    model = plain_model()
    clean = margins(model, x, y)
    for x_adv in results.values():
        after = margins(model, x_adv, y)
        assert np.all(after <= clean + 1e-6)
        # An image left unchanged is one the search did not improve; misclassified
        # clean images are never queried, hence returned as they are.
        unchanged = np.all(x_adv == x, axis=(1, 2, 3))
        assert np.all(unchanged[clean <= 0])
        assert np.all(after[~unchanged] < clean[~unchanged])


def zero_gradient_model():
    model = tiny_mnist_model(hidden=32)

    @tf.custom_gradient
    def blind(x):
        return tf.identity(x), lambda upstream: tf.zeros_like(upstream)

    return lambda x: model(blind(x), training=False)


def numpy_model():
    """The tiny model's forward pass in NumPy behind tf.numpy_function: no gradient at all."""
    model = tiny_mnist_model(hidden=32)
    _, _, dense1, dense2 = model.layers[1:]  # Normalization(MEAN, STD**2), Flatten, Dense, Dense
    (w1, b1), (w2, b2) = (dense.get_weights() for dense in (dense1, dense2))

    def forward(x):
        h = ((x - MEAN) / STD).reshape(len(x), -1)
        return (np.maximum(h @ w1 + b1, 0) @ w2 + b2).astype(np.float32)

    def logits(x):
        out = tf.numpy_function(forward, [x], tf.float32, stateful=False)
        return tf.ensure_shape(out, [None, 10])

    return logits


def test_square_needs_no_gradient(attacked):
    x, y, results = attacked
    blind, plain = zero_gradient_model(), plain_model()
    images = tf.constant(x[:10])
    with tf.GradientTape() as tape:
        tape.watch(images)
        loss = tf.reduce_sum(blind(images))
    assert not np.any(tape.gradient(loss, images))  # gradient attacks are blind here
    assert accuracy(plain, attacks.fgsm(blind, x, y, EPS["linf"]), y) == accuracy(plain, x, y)
    x_adv = np.asarray(square(blind, x, y, EPS["linf"], queries=300, seed=0))
    np.testing.assert_array_equal(x_adv, results["linf"])  # same forward pass, same result

    no_gradient = numpy_model()
    with tf.GradientTape() as tape:
        tape.watch(images)
        loss = tf.reduce_sum(no_gradient(images))
    assert tape.gradient(loss, images) is None
    x_adv = square(no_gradient, x, y, EPS["l2"], norm="l2", queries=300, seed=0)
    assert accuracy(plain, x_adv, y) < accuracy(plain, x, y) - 0.5


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_square_succeeds_on_a_saturated_model(norm):
    model = tiny_mnist_model(hidden=32)
    x, y = mnist_test(60)
    huge = lambda images: 1e4 * model(images, training=False)  # noqa: E731
    probabilities = tf.nn.softmax(huge(x))
    assert np.mean(np.max(probabilities, -1) == 1.0) > 0.9  # float32 softmax is one-hot
    x_adv = square(huge, x, y, EPS[norm], norm=norm, queries=300, seed=0)
    assert accuracy(huge, x_adv, y) < accuracy(huge, x, y) - 0.5


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_same_seed_same_images_other_seed_other_images(norm):
    model = plain_model()
    x, y = mnist_test(20)
    run = lambda seed: np.asarray(square(model, x, y, EPS[norm] / 3, norm=norm,  # noqa: E731
                                         queries=60, seed=seed))
    first = run(3)
    np.testing.assert_array_equal(first, run(3))
    assert not np.array_equal(first, run(4))


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_colour_images_of_any_size_stay_in_the_ball_and_box(norm):
    # Three channels, H != W, a box other than [0, 1]: the per-channel updates.
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((9, 13, 3)), keras.layers.Conv2D(4, 3, activation="relu"),
                              keras.layers.Flatten(), keras.layers.Dense(5)])
    x = np.random.default_rng(0).uniform(-1, 1, (12, 9, 13, 3)).astype(np.float32)
    y = np.argmax(model(x), -1)
    eps = 0.2 if norm == "linf" else 1.5
    x_adv = np.asarray(square(model, x, y, eps, norm=norm, queries=40, seed=1, clip_min=-1.0))
    assert x_adv.min() >= -1.0 and x_adv.max() <= 1.0
    assert np.all(distance(x_adv, x, norm) <= eps * (1 + 1e-4) + 1e-6)
    assert np.all(margins(model, x_adv, y) <= margins(model, x, y) + 1e-5)


def test_zero_radius_and_a_single_query():
    model = plain_model()
    x, y = mnist_test(10)
    for norm in ("linf", "l2"):
        np.testing.assert_array_equal(square(model, x, y, 0.0, norm=norm, queries=20), x)
        x_adv = np.asarray(square(model, x, y, EPS[norm], norm=norm, queries=1))  # the init only
        assert np.all(distance(x_adv, x, norm) <= EPS[norm] * (1 + 1e-4) + 1e-6)


def reference_fraction(p_init, query, queries):
    """The reference's schedule, written out: halve p past each threshold."""
    it = query * 10000 // queries
    for bound, divisor in ((8000, 512), (6000, 256), (4000, 128), (2000, 64), (1000, 32),
                           (500, 16), (200, 8), (50, 4), (10, 2)):
        if it > bound:
            return p_init / divisor
    return p_init


def test_square_fraction_follows_the_piecewise_schedule():
    expected = {0: 0.8, 10: 0.8, 11: 0.4, 50: 0.4, 51: 0.2, 200: 0.2, 201: 0.1, 500: 0.1,
                501: 0.05, 1000: 0.05, 1001: 0.025, 2001: 0.0125, 4001: 0.8 / 128,
                6001: 0.8 / 256, 8000: 0.8 / 256, 8001: 0.8 / 512, 9999: 0.8 / 512}
    for query, p in expected.items():
        assert square_fraction(0.8, query, 10000) == pytest.approx(p, rel=1e-12)
    # A shorter run rescales the step by 10000 / queries: 1000 queries halve at 1, 5, 20, ...
    assert [square_fraction(0.1, q, 1000) for q in (1, 2, 5, 6, 20, 21, 999)] == pytest.approx(
        [0.1, 0.05, 0.05, 0.025, 0.025, 0.0125, 0.1 / 512])
    for queries in (1, 7, 300, 1000, 5000, 10000):
        for query in range(queries):
            assert square_fraction(0.5, query, queries) == reference_fraction(0.5, query, queries)


def test_the_l2_pulse_is_the_papers_meta_pulse():
    # eta written as the reference builds it: rectangles of growing size around the centre.
    def eta(a, b):
        out = np.zeros((a, b))
        for k in range(max(a // 2, b // 2) + 1):
            out[max(a // 2 - k, 0):a // 2 + k + 1, max(b // 2 - k, 0):b // 2 + k + 1] += 1 / (k + 1) ** 2
        return out / max(np.linalg.norm(out), 1e-12)

    for side in (1, 2, 3, 5, 8, 25):
        expected = np.concatenate([eta(side // 2, side), -eta(side - side // 2, side)])
        np.testing.assert_allclose(_pulse(side), expected / np.linalg.norm(expected), rtol=1e-6)


@pytest.mark.parametrize("kwargs,message", [
    ({"norm": "l1"}, "norm must be one of"),
    ({"eps": -0.1}, "eps must be a non-negative number"),
    ({"queries": 0}, "queries must be a positive int"),
    ({"queries": 10.0}, "queries must be a positive int"),
    ({"p_init": 0.0}, r"p_init must be a number in \(0, 1\]"),
    ({"p_init": 1.5}, r"p_init must be a number in \(0, 1\]"),
    ({"clip_min": 1.0, "clip_max": 0.0}, "clip_min must be below clip_max"),
    ({"images": np.zeros((4, 28, 28), np.float32)}, r"images must be 4-D \(N, H, W, C\)"),
    ({"images": np.zeros((4, 1, 28, 1), np.float32)}, "images must be at least 2 x 2"),
    ({"images": np.full((4, 28, 28, 1), 2.0, np.float32)}, r"images must lie in \[clip_min, clip_max\]"),
    ({"labels": np.zeros(3, np.int32)}, r"labels must have shape \(4,\)"),
    ({"labels": np.full(4, 10)}, r"labels must be in \[0, 10\)"),
    ({"seed": [1, 2, 3]}, "seed must be an int or a shape-"),
])
def test_bad_arguments_are_refused_with_clear_errors(kwargs, message):
    x, y = mnist_test(4)
    arguments = {"images": x, "labels": y, "eps": 0.1, **kwargs}
    with pytest.raises(ValueError, match=message):
        square(plain_model(), arguments.pop("images"), arguments.pop("labels"), arguments.pop("eps"),
               **arguments)


def test_square_fraction_refuses_bad_arguments():
    for args, message in [((0.8, 10, 10), r"query must be an int in \[0, queries=10\)"),
                          ((0.8, -1, 10), "query must be an int"),
                          ((0.8, 0, 0), "queries must be a positive int"),
                          ((2.0, 0, 10), "p_init must be a number")]:
        with pytest.raises(ValueError, match=message):
            square_fraction(*args)
