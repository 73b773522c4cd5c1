"""certify.certified_radius: the one certified radius, its two bounds, and
certified points that an L2 PGD attack cannot break."""

import math

import keras
import numpy as np
import pytest

from contractive_keras import certify, robustness
from contractive_keras.certify import radius as radius_module
from contractive_keras.layers import GroupSort
from contractive_keras.robustness import attacks
from tests.certify.classifiers import tiny_classifier


def _groupsort_classifier(seed=0):
    """Flatten -> Dense -> GroupSort -> Dense read-out: small, nonlinear, certifiable."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((4, 4, 1))
    x = GroupSort(2)(keras.layers.Dense(16)(keras.layers.Flatten()(inputs)))
    return keras.Model(inputs, keras.layers.Dense(4)(x))


def _old_logit_radius(logits, labels, lipschitz):
    """The former ``robustness.certified_radius``: max(M, 0) / (sqrt(2) L), M the label margin."""
    return np.maximum(robustness.margins(logits, labels), 0.0) / (math.sqrt(2.0) * lipschitz)


def test_the_result_says_which_bound_certified_it_and_unpacks_as_radius_and_correct():
    keras.utils.set_random_seed(1)
    model = tiny_classifier()
    x = np.random.rand(8, 5, 5, 1).astype("float32")
    result = certify.certified_radius(model, x)
    assert result.bound == "pairwise" and isinstance(result, certify.CertifiedRadius)
    radius, correct = result
    assert radius is result.radius and correct is result.correct and correct.all()
    assert certify.certified_radius(model, x, bound="global").bound == "global"
    inputs = keras.Input((4,))
    no_readout = keras.Model(inputs, GroupSort(2)(keras.layers.Dense(4)(inputs)))
    assert certify.certified_radius(no_readout, np.random.rand(3, 4)).bound == "global"


def test_pairwise_radius_is_at_least_the_global_one_on_a_small_model():
    keras.utils.set_random_seed(9)
    model = tiny_classifier()
    x = np.random.rand(20, 5, 5, 1).astype("float32")
    pairwise = certify.certified_radius(model, x)
    global_ = certify.certified_radius(model, x, bound="global")
    assert np.all(pairwise.radius >= global_.radius) and np.any(pairwise.radius > global_.radius)
    # The same two radii from the logits and the model's own bounds.
    body, kernel = certify.body_and_readout(model)
    logits = radius_module._logits(model, x, 500)
    from_logits = certify.certified_radius(logits=logits, body_bound=body.value, readout_kernel=kernel)
    assert from_logits.bound == "pairwise"
    np.testing.assert_array_equal(from_logits.radius, pairwise.radius)
    whole = certify.certified_radius(logits=logits,
                                     lipschitz_constant=body.value * float(np.linalg.norm(kernel, 2)))
    assert whole.bound == "global"
    np.testing.assert_array_equal(whole.radius, global_.radius)


def test_logits_and_a_constant_give_the_former_lipschitz_margin_radius_exactly():
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(200, 5))
    labels = rng.integers(0, 5, size=200)
    for lipschitz in (0.3, 2.0, 17.0):
        result = certify.certified_radius(logits=logits, labels=labels, lipschitz_constant=lipschitz)
        assert result.bound == "global"
        np.testing.assert_array_equal(result.radius, _old_logit_radius(logits, labels, lipschitz))
        np.testing.assert_array_equal(result.correct, logits.argmax(1) == labels)
    fixed = np.array([[3.0, 1.0, 0.0], [0.0, 2.0, 1.0], [5.0, 0.0, 4.0]])
    np.testing.assert_allclose(certify.certified_radius(
        logits=fixed, labels=[0, 0, 2], lipschitz_constant=2.0).radius, [2 / (2 * math.sqrt(2)), 0, 0])


def test_certified_radius_refuses_ambiguous_or_false_bounds():
    logits = np.eye(3)
    with pytest.raises(ValueError, match="logits go in logits="):
        certify.certified_radius(logits, np.arange(3), 1.0)     # the former robustness call
    with pytest.raises(ValueError, match="exactly one"):
        certify.certified_radius()
    with pytest.raises(ValueError, match="lipschitz_constant must be a finite number > 0"):
        certify.certified_radius(logits=logits, lipschitz_constant=0.0)
    with pytest.raises(ValueError, match="body_bound must be a finite number > 0"):
        certify.certified_radius(logits=logits, body_bound=math.inf, readout_kernel=np.eye(3))
    with pytest.raises(ValueError, match="not both"):
        certify.certified_radius(logits=logits, lipschitz_constant=1.0, body_bound=1.0)
    with pytest.raises(ValueError, match="need lipschitz_constant"):
        certify.certified_radius(logits=logits, readout_kernel=np.eye(3))
    with pytest.raises(ValueError, match="bound must be one of"):
        certify.certified_radius(logits=logits, lipschitz_constant=1.0, bound="tight")
    with pytest.raises(ValueError, match="bounded by certify itself"):
        certify.certified_radius(_groupsort_classifier(), np.zeros((2, 4, 4, 1)), lipschitz_constant=1.0)


def _broken_by_l2_pgd(model, x, y, eps):
    x_adv = attacks.pgd(model, x, y, eps, norm="l2", steps=30, restarts=1, seed=5, step_size=eps / 8)
    distance = np.linalg.norm((np.asarray(x_adv) - x).reshape(len(x), -1), axis=1)
    assert np.all(distance <= eps * (1 + 1e-5))
    return np.argmax(model(x_adv), -1) != y


def test_no_point_certified_at_a_radius_is_broken_by_l2_pgd_at_that_radius():
    model = _groupsort_classifier(seed=2)
    x = np.random.default_rng(4).uniform(size=(64, 4, 4, 1)).astype("float32")
    y = model(x).numpy().argmax(1)      # the model's own labels: every point is correct
    result = certify.certified_radius(model, x, y)
    assert result.bound == "pairwise" and result.correct.all()
    positive = np.sort(result.radius)
    for eps in (positive[16], positive[32]):
        eps = float(eps) * (1 - 1e-6)    # certified points: radius > eps
        certified = result.radius > eps
        assert certified.sum() > 16
        assert not np.any(certified & _broken_by_l2_pgd(model, x, y, eps))
    # The check has teeth: at 20 times the largest radius the attack breaks certified points.
    assert np.any(_broken_by_l2_pgd(model, x, y, 20 * float(positive[-1])))


def test_bound_used_says_which_read_out_form_applies():
    assert certify.bound_used(tiny_classifier()) == "pairwise"
    assert certify.bound_used(tiny_classifier(), "global") == "global"
    inputs = keras.Input((4,))
    no_readout = keras.Model(inputs, keras.layers.Dense(3, activation="tanh")(inputs))
    assert certify.bound_used(no_readout) == "global"
    with pytest.raises(ValueError, match="bound must be one of"):
        certify.bound_used(no_readout, "tight")


def test_pairwise_radius_is_exact_for_a_linear_model():
    """For z = W^T x the pairwise radius is the distance to the nearest decision boundary."""
    rng = np.random.default_rng(5)
    W = rng.standard_normal((6, 4))
    x = rng.standard_normal((50, 6))
    logits = x @ W
    radius = certify.pairwise_radius(logits, W, 1.0)
    pred = logits.argmax(1)
    for i in range(50):
        y = pred[i]
        distances = [(logits[i, y] - logits[i, j]) / np.linalg.norm(W[:, y] - W[:, j])
                     for j in range(4) if j != y]
        assert radius[i] == pytest.approx(min(distances), rel=1e-12)
        # just beyond the radius, towards the nearest boundary, the class changes
        j = [j for j in range(4) if j != y][int(np.argmin(distances))]
        step = (W[:, j] - W[:, y]) / np.linalg.norm(W[:, j] - W[:, y])
        assert (x[i] + 1.0001 * radius[i] * step) @ W[:, j] > (x[i] + 1.0001 * radius[i] * step) @ W[:, y]


def test_certified_radius_traces_a_model_at_most_twice_for_any_batch_sizes():
    keras.utils.set_random_seed(3)
    model = tiny_classifier()
    x = np.random.rand(23, 5, 5, 1).astype("float32")
    eager = model(x, training=False).numpy().astype(np.float64)
    radius, _ = certify.certified_radius(model, x, batch_size=10)  # batches of 10, 10 and 3
    certify.certified_radius(model, x[:7], batch_size=4)
    forward = radius_module.compiled_forward(model)
    assert forward is radius_module.compiled_forward(model)
    assert forward.experimental_get_tracing_count() <= 2  # the first shape, then a batch-free one
    _, kernel = certify.body_and_readout(model)
    expected = radius_module.pairwise_radius(eager, kernel, certify.body_and_readout(model)[0].value)
    np.testing.assert_allclose(radius, np.maximum(expected, 0.0), rtol=1e-5, atol=1e-7)


def test_the_compiled_forward_cache_does_not_keep_a_model_alive():
    import gc
    import weakref

    model = tiny_classifier()
    radius_module.compiled_forward(model)(np.zeros((2, 5, 5, 1), "float32"))
    held = weakref.ref(model)
    del model
    gc.collect()
    assert held() is None
