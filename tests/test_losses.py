"""Certified-training losses (contractive_keras.losses): properties, not figures.

The tests marked ``backends`` run under every Keras backend (numpy and
keras.ops; gradients by the backend's autodiff, ``tests/certify/gradients``);
those that need float64 tensors skip where JAX has none; the trained-network
tests at the end are TensorFlow's.
"""

import math

import keras
import numpy as np
import pytest
from keras import ops

from contractive_keras import backend
from contractive_keras import losses
from contractive_keras.constraints import SpectralNormClip
from contractive_keras.layers.group_sort import GroupSort
from tests.certify.gradients import gradients

#: float64 where the backend keeps it (TensorFlow, torch; JAX only with x64)
DTYPE = backend.wide_float()
needs_float64 = pytest.mark.skipif(not backend.float64_in_graph(),
                                   reason="compares to float64 rounding; JAX without x64")


def _problem(seed=0, batch=64, features=12, classes=5, dtype=DTYPE):
    rng = np.random.default_rng(seed)
    kernel = rng.normal(size=(features, classes))
    logits = rng.normal(size=(batch, classes)) * 3.0
    labels = rng.integers(0, classes, size=batch)
    return (keras.Variable(kernel.astype(dtype)), ops.convert_to_tensor(logits.astype(dtype)),
            labels.astype("int32"))


def _numpy(value):
    return ops.convert_to_numpy(value)


def _plain_ce(labels, logits):
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)(labels, logits)


@pytest.mark.backends
@pytest.mark.parametrize("form", ["pairwise", "global"])
def test_eps_zero_is_the_plain_cross_entropy(form):
    kernel, logits, labels = _problem()
    kwargs = {"readout": kernel} if form == "pairwise" else {"lipschitz": 2.0}
    loss = losses.LipschitzMarginCrossEntropy(eps=0.0, **kwargs)
    np.testing.assert_allclose(float(loss(labels, logits)), float(_plain_ce(labels, logits)),
                               rtol=1e-6)
    onehot = np.eye(logits.shape[-1], dtype=DTYPE)[labels]
    np.testing.assert_allclose(float(loss(onehot, logits)), float(_plain_ce(labels, logits)),
                               rtol=1e-6)


@pytest.mark.backends
def test_temperature_matches_the_scaled_cross_entropy_at_eps_zero():
    kernel, logits, labels = _problem(seed=1)
    loss = losses.LipschitzMarginCrossEntropy(eps=0.0, readout=kernel, temperature=0.1)
    expected = 0.1 * float(_plain_ce(labels, logits / 0.1))
    np.testing.assert_allclose(float(loss(labels, logits)), expected, rtol=1e-6)


@pytest.mark.backends
@needs_float64
@pytest.mark.parametrize("form", ["pairwise", "global"])
def test_loss_is_above_the_plain_one_and_increases_with_eps(form):
    kernel, logits, labels = _problem(seed=2)
    kwargs = ({"readout": kernel, "body_lipschitz": 0.7} if form == "pairwise"
              else {"lipschitz": 1.3})
    reduction = dict(reduction=None, dtype="float64")
    plain = _numpy(keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction=None)(
        labels, logits))
    previous = plain
    for eps in (0.05, 0.1, 0.5, 1.0, 2.0):
        value = _numpy(losses.LipschitzMarginCrossEntropy(eps=eps, **kwargs, **reduction)(
            labels, logits))
        assert np.all(value >= plain - 1e-12)
        assert np.all(value > previous)          # per example, strictly
        previous = value


@pytest.mark.backends
@needs_float64
def test_pairwise_bound_is_body_times_column_distances():
    kernel, _, _ = _problem(seed=3)
    loss = losses.LipschitzMarginCrossEntropy(eps=1.0, readout=kernel, body_lipschitz=0.5)
    bound = _numpy(loss.pairwise_bound("float64"))
    w = _numpy(kernel)
    expected = 0.5 * np.linalg.norm(w[:, :, None] - w[:, None, :], axis=0)
    np.testing.assert_allclose(bound, expected, rtol=1e-9, atol=1e-9)
    assert np.all(np.diag(bound) == 0.0)
    # Never below the exact value (the floor only raises it).
    assert np.all(bound >= expected)


@pytest.mark.backends
@needs_float64
def test_global_form_raises_each_other_logit_by_sqrt2_L_eps():
    _, logits, labels = _problem(seed=4)
    loss = losses.LipschitzMarginCrossEntropy(eps=0.3, lipschitz=2.0, dtype="float64")
    raised = _numpy(loss.margin_logits(labels, logits)) - _numpy(logits)
    onehot = np.eye(logits.shape[-1])[labels]
    np.testing.assert_allclose(raised, (1 - onehot) * math.sqrt(2) * 2.0 * 0.3, rtol=1e-12)


def _finite_difference(fn, arrays, index_of, eps=1e-6):
    """Central differences of fn(*arrays) in arrays[index_of] (float64 NumPy arrays)."""
    base = np.array(arrays[index_of], copy=True)
    grad = np.zeros_like(base)
    for index in np.ndindex(base.shape):
        for sign in (1, -1):
            shifted = list(arrays)
            shifted[index_of] = base.copy()
            shifted[index_of][index] += sign * eps
            grad[index] += sign * float(fn(*shifted)) / (2 * eps)
    return grad


@pytest.mark.backends
@needs_float64
@pytest.mark.parametrize("wrt", ["logits", "kernel", "body"])
def test_gradient_matches_finite_differences(wrt):
    kernel, logits, labels = _problem(seed=5, batch=6, features=4, classes=3)
    arrays = [_numpy(logits), _numpy(kernel), np.array(0.8)]

    def value(z, w, body):
        # reduction "sum": Keras's torch divide_no_nan (the batch mean) returns float32
        loss = losses.LipschitzMarginCrossEntropy(eps=0.7, readout=w, body_lipschitz=body,
                                                  temperature=0.5, dtype="float64",
                                                  reduction="sum")
        return loss(labels, z)

    index = ["logits", "kernel", "body"].index(wrt)
    analytic = gradients(value, *arrays)[index]
    numeric = _finite_difference(value, arrays, index)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-5, atol=1e-8)


@pytest.mark.backends
def test_gradient_is_finite_where_two_readout_columns_coincide():
    def value(kernel):
        loss = losses.LipschitzMarginCrossEntropy(eps=1.0, readout=kernel)
        return loss(np.array([0, 1]), np.ones((2, 3), "float32"))

    (grad,) = gradients(value, np.zeros((4, 3), "float32"))
    assert np.all(np.isfinite(grad))


@pytest.mark.backends
@needs_float64
def test_margin_logits_certify_exactly_the_linear_worst_case():
    """z = W^T x + c: y ranked first by z + eps K[y]  <=>  no x' within eps changes y.

    For a linear model the worst case of z_y - z_j over ||x' - x|| <= eps is
    (z_y - z_j) - eps ||w_y - w_j||, reached at x' = x - eps (w_y - w_j) /
    ||w_y - w_j||.  Both directions are checked with that explicit attack.
    """
    rng = np.random.default_rng(6)
    features, classes = 8, 6
    w = rng.normal(size=(features, classes))
    c = rng.normal(size=classes)
    x = rng.normal(size=(400, features)) * 2.0
    z = x @ w + c
    y = z.argmax(1)
    loss = losses.LipschitzMarginCrossEntropy(eps=0.0, readout=ops.convert_to_tensor(w),
                                              dtype="float64")
    seen = set()
    for eps in (0.1, 0.5, 1.0, 2.0):
        loss.eps = eps
        certified = _numpy(loss.margin_logits(y, ops.convert_to_tensor(z))).argmax(1) == y
        for i in range(len(x)):
            broken = False
            for j in range(classes):
                if j == y[i]:
                    continue
                direction = w[:, y[i]] - w[:, j]
                adv = x[i] - eps * direction / np.linalg.norm(direction)
                za = adv @ w + c
                broken |= za[j] >= za[y[i]] - 1e-9
            assert certified[i] == (not broken), (eps, i)
        seen.update(certified.tolist())
    assert seen == {True, False}             # both outcomes occur


@pytest.mark.backends
def test_config_round_trip_and_bind():
    readout = keras.layers.Dense(3, name="head")
    model = keras.Sequential([keras.Input((4,)), readout])
    loss = losses.LipschitzMarginCrossEntropy(eps=0.25, readout=readout, body_lipschitz=0.5,
                                              temperature=0.2)
    config = keras.saving.serialize_keras_object(loss)
    rebuilt = keras.saving.deserialize_keras_object(config)
    assert isinstance(rebuilt, losses.LipschitzMarginCrossEntropy)
    assert (rebuilt.eps, rebuilt.readout, rebuilt.body_lipschitz, rebuilt.temperature) == (
        0.25, "head", 0.5, 0.2)
    labels, logits = np.array([0, 2]), np.array([[1.0, 0.0, -1.0], [0.5, 0.2, 0.1]], "float32")
    with pytest.raises(ValueError, match="bind"):
        rebuilt(labels, logits)
    rebuilt.bind(readout=model.get_layer("head"))
    np.testing.assert_allclose(float(rebuilt(labels, logits)), float(loss(labels, logits)),
                               rtol=1e-6)
    global_loss = losses.LipschitzMarginCrossEntropy(eps=0.1, lipschitz=3.0)
    again = losses.LipschitzMarginCrossEntropy.from_config(global_loss.get_config())
    np.testing.assert_allclose(float(again(labels, logits)), float(global_loss(labels, logits)))


@pytest.mark.backends
@pytest.mark.parametrize("cls,kwargs", [(losses.MulticlassHinge, {"margin": 0.7}),
                                        (losses.MulticlassKR, {}),
                                        (losses.MulticlassHingeKR, {"alpha": 5.0,
                                                                    "margin": 0.7})])
def test_hinge_family_config_round_trip(cls, kwargs):
    loss = cls(**kwargs)
    rebuilt = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    _, logits, labels = _problem(seed=7)
    np.testing.assert_allclose(float(rebuilt(labels, logits)), float(loss(labels, logits)))


@pytest.mark.backends
def test_arguments_are_checked():
    with pytest.raises(ValueError, match="exactly one"):
        losses.LipschitzMarginCrossEntropy(eps=0.1)
    with pytest.raises(ValueError, match="exactly one"):
        losses.LipschitzMarginCrossEntropy(eps=0.1, readout=np.ones((2, 2)), lipschitz=1.0)
    with pytest.raises(ValueError, match="eps"):
        losses.LipschitzMarginCrossEntropy(eps=-1.0, lipschitz=1.0)
    with pytest.raises(ValueError, match="temperature"):
        losses.LipschitzMarginCrossEntropy(eps=0.1, lipschitz=1.0, temperature=0.0)
    with pytest.raises(ValueError, match="margin"):
        losses.MulticlassHinge(margin=0.0)


@pytest.mark.backends
def test_hinge_is_zero_exactly_when_every_margin_holds():
    rng = np.random.default_rng(8)
    logits = rng.normal(size=(500, 4)) * 2
    labels = rng.integers(0, 4, 500)
    values = _numpy(losses.MulticlassHinge(margin=1.0, reduction=None, dtype=DTYPE)(
        labels, logits.astype(DTYPE)))
    target = logits[np.arange(500), labels]
    others = np.where(np.eye(4)[labels] > 0, -np.inf, logits).max(1)
    satisfied = (target >= 0.5) & (others <= -0.5)
    assert np.all((values == 0) == satisfied)
    assert satisfied.any() and not satisfied.all()


@pytest.mark.backends
@needs_float64
def test_hinge_kr_is_alpha_hinge_minus_kr():
    _, logits, labels = _problem(seed=9)
    f64 = dict(reduction=None, dtype="float64")
    hinge = _numpy(losses.MulticlassHinge(margin=0.5, **f64)(labels, logits))
    kr = _numpy(losses.MulticlassKR(**f64)(labels, logits))
    hkr = _numpy(losses.MulticlassHingeKR(alpha=3.0, margin=0.5, **f64)(labels, logits))
    np.testing.assert_allclose(hkr, 3.0 * hinge + kr, rtol=1e-12)
    z = _numpy(logits)
    onehot = np.eye(z.shape[1])[labels]
    expected_kr = (onehot * z).sum(1) - ((1 - onehot) * z).sum(1) / (z.shape[1] - 1)
    np.testing.assert_allclose(-kr, expected_kr, rtol=1e-12)


# --- every backend: NumPy float64 references and closed-form gradients -------

def _softmax(x):
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _margin_ce_reference(labels, z, w, body, eps, temperature):
    """Per-example T * CE(y, (z + eps K[y]) / T), K_yj = body sqrt(||w_y - w_j||^2 + floor)."""
    onehot = np.eye(z.shape[1])[labels]
    squared = np.sum((w[:, :, None] - w[:, None, :]) ** 2, axis=0)
    K = body * np.sqrt(squared + losses._DISTANCE_FLOOR) * (1 - np.eye(z.shape[1]))
    m = (z + eps * onehot @ K) / temperature
    log_p = m - m.max(1, keepdims=True) - np.log(np.exp(m - m.max(1, keepdims=True)).sum(1, keepdims=True))
    return -temperature * np.sum(onehot * log_p, axis=1), onehot, m


def _hinge_kr_reference(labels, z, alpha, margin):
    classes = z.shape[1]
    onehot = np.eye(classes)[labels]
    sign = 2 * onehot - 1
    hinge = np.mean((onehot * (classes - 2) + 1) * np.maximum(margin / 2 - sign * z, 0), axis=1)
    kr = (onehot * z).sum(1) - ((1 - onehot) * z).sum(1) / (classes - 1)
    return hinge, kr


def _float32_problem(seed, batch=16, features=6, classes=4):
    rng = np.random.default_rng(seed)
    return (rng.integers(0, classes, size=batch), (rng.normal(size=(batch, classes)) * 2).astype("float32"),
            rng.normal(size=(features, classes)).astype("float32"))


@pytest.mark.backends
def test_every_loss_matches_its_numpy_reference_in_float32():
    labels, z, w = _float32_problem(10)
    z64, w64 = z.astype(np.float64), w.astype(np.float64)
    none = dict(reduction=None)
    margin_ce = losses.LipschitzMarginCrossEntropy(eps=0.4, readout=w, body_lipschitz=0.9,
                                                   temperature=0.5, **none)
    expected, _, _ = _margin_ce_reference(labels, z64, w64, 0.9, 0.4, 0.5)
    np.testing.assert_allclose(_numpy(margin_ce(labels, z)), expected, rtol=1e-5, atol=1e-6)
    global_ce = losses.LipschitzMarginCrossEntropy(eps=0.4, lipschitz=1.5, **none)
    onehot = np.eye(4)[labels]
    raised = z64 + 0.4 * math.sqrt(2) * 1.5 * (1 - onehot)
    expected = -np.sum(onehot * np.log(_softmax(raised)), axis=1)
    np.testing.assert_allclose(_numpy(global_ce(labels, z)), expected, rtol=1e-5, atol=1e-6)
    hinge, kr = _hinge_kr_reference(labels, z64, 3.0, 0.7)
    np.testing.assert_allclose(_numpy(losses.MulticlassHinge(0.7, **none)(labels, z)), hinge,
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(_numpy(losses.MulticlassKR(**none)(labels, z)), -kr, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(_numpy(losses.MulticlassHingeKR(3.0, 0.7, **none)(labels, z)),
                               3.0 * hinge - kr, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(_numpy(losses.pairwise_distances(w)),
                               np.linalg.norm(w64[:, :, None] - w64[:, None, :], axis=0),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.backends
def test_gradients_in_the_logits_match_the_closed_forms():
    labels, z, w = _float32_problem(11)
    z64, w64 = z.astype(np.float64), w.astype(np.float64)
    batch = len(labels)
    loss = losses.LipschitzMarginCrossEntropy(eps=0.3, readout=w, body_lipschitz=1.2, temperature=0.5)
    (grad,) = gradients(lambda logits: loss(labels, logits), z)
    _, onehot, m = _margin_ce_reference(labels, z64, w64, 1.2, 0.3, 0.5)
    np.testing.assert_allclose(grad, (_softmax(m) - onehot) / batch, rtol=1e-4, atol=1e-6)
    alpha, margin, classes = 2.0, 0.8, z.shape[1]
    hkr = losses.MulticlassHingeKR(alpha=alpha, margin=margin)
    (grad,) = gradients(lambda logits: hkr(labels, logits), z)
    sign = 2 * onehot - 1
    active = (margin / 2 - sign * z64) > 0
    d_hinge = -(onehot * (classes - 2) + 1) * sign * active / classes
    d_kr = onehot - (1 - onehot) / (classes - 1)
    np.testing.assert_allclose(grad, (alpha * d_hinge - d_kr) / batch, rtol=1e-5, atol=1e-7)


@pytest.mark.backends
def test_gradient_in_the_readout_kernel_matches_numpy_finite_differences():
    """The backend's autodiff (float32 on JAX) against central differences of the float64 reference."""
    labels, z, w = _float32_problem(12, batch=8, features=3, classes=3)
    loss = losses.LipschitzMarginCrossEntropy(eps=0.6, readout=w, body_lipschitz=0.7)
    (grad,) = gradients(lambda kernel: loss.bind(readout=kernel)(labels, z), w)

    def reference(kernel):
        return np.mean(_margin_ce_reference(labels, z.astype(np.float64), kernel, 0.7, 0.6, 1.0)[0])

    numeric = _finite_difference(reference, [w.astype(np.float64)], 0)
    np.testing.assert_allclose(grad, numeric, rtol=1e-3, atol=1e-5)


# --- a small trained Lipschitz network: fit, certify, attack -----------------

def _blobs(n, features=16, classes=3, seed=0):
    centers = np.random.default_rng(1234).normal(size=(classes, features)) * 0.6
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    points = centers[labels] + rng.normal(size=(n, features)) * 0.6
    return points.astype("float32"), labels.astype("int32")


def _lipschitz_mlp(features=16, width=32, classes=3):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((features,)),
        keras.layers.Dense(width, kernel_constraint=SpectralNormClip(1.0), name="dense1"),
        GroupSort(2),
        keras.layers.Dense(width, kernel_constraint=SpectralNormClip(1.0), name="dense2"),
        GroupSort(2),
        keras.layers.Dense(classes, name="logits"),
    ])
    return model


def _body_bound(model):
    """Float64 certified bound of the map up to the read-out: product of exact norms."""
    return float(np.prod([np.linalg.norm(np.asarray(model.get_layer(n).kernel, np.float64), 2)
                          for n in ("dense1", "dense2")]))


def _pairwise_radius(model, x, y, body):
    z = np.asarray(model(x), np.float64)
    w = np.asarray(model.get_layer("logits").kernel, np.float64)
    pair = np.linalg.norm(w[:, :, None] - w[:, None, :], axis=0)
    rows = np.arange(len(y))
    ratios = (z[rows, y][:, None] - z) / (body * pair[y] + (pair[y] == 0))
    ratios[rows, y] = np.inf                     # only j != y constrain the radius
    radius = np.min(ratios, axis=1)
    return np.where(z.argmax(1) == y, np.maximum(radius, 0.0), 0.0)


def _pgd_l2(model, x, y, eps, steps=60):
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    x = tf.constant(x)
    onehot = tf.one_hot(y, model.output_shape[-1])
    rng = np.random.default_rng(0)
    noise = rng.normal(size=x.shape).astype("float32")
    adv = x + 0.5 * eps * noise / np.linalg.norm(noise, axis=1, keepdims=True)
    for _ in range(steps):
        with tf.GradientTape() as tape:
            tape.watch(adv)
            z = model(adv)
            total = tf.reduce_sum(tf.reduce_max(z - 1e9 * onehot, 1) - tf.reduce_sum(z * onehot, 1))
        g = tape.gradient(total, adv)
        adv = adv + 2.5 * eps / steps * g / (tf.norm(g, axis=1, keepdims=True) + 1e-12)
        delta = adv - x
        adv = x + delta * tf.minimum(1.0, eps / (tf.norm(delta, axis=1, keepdims=True) + 1e-12))
    return adv.numpy()


@pytest.fixture(scope="module")
def trained_mlp():
    x, y = _blobs(1200)
    model = _lipschitz_mlp()
    for layer in model.layers:
        if getattr(layer, "kernel", None) is not None and layer.kernel.constraint is not None:
            layer.kernel.assign(layer.kernel.constraint(layer.kernel))

    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    def body_lipschitz():
        # Differentiable and certified: the exact spectral norms of the current kernels.
        norms = [tf.sqrt(tf.linalg.eigvalsh(tf.matmul(k, k, transpose_a=True))[-1])
                 for k in (model.get_layer("dense1").kernel, model.get_layer("dense2").kernel)]
        return tf.reduce_prod(norms) * (1 + 1e-4)

    loss = losses.LipschitzMarginCrossEntropy(eps=0.5, readout=model.get_layer("logits"),
                                              body_lipschitz=body_lipschitz)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=loss)
    history = model.fit(x, y, batch_size=64, epochs=15, verbose=0)
    return model, history


def test_margin_loss_trains_under_model_fit(trained_mlp):
    model, history = trained_mlp
    losses_seen = history.history["loss"]
    assert np.all(np.isfinite(losses_seen)) and losses_seen[-1] < 0.6 * losses_seen[0]
    x, y = _blobs(400, seed=1)
    radius = _pairwise_radius(model, x, y, _body_bound(model))
    # Certified training certifies a good share of the points at its radius.
    assert np.mean(radius > 0.5) > 0.4


def test_pgd_l2_never_breaks_a_certified_point(trained_mlp):
    model, _ = trained_mlp
    x, y = _blobs(300, seed=2)
    body = _body_bound(model)
    radius = _pairwise_radius(model, x, y, body)
    broke_uncertified = wrong_claims_broken = 0
    # A ten-times-too-small bound claims radii the attack can refute: the
    # check has the power to catch a wrong certificate.
    wrong = _pairwise_radius(model, x, y, body / 10.0)
    for eps in (0.25, 0.5, 1.0, 1.5):
        adv = _pgd_l2(model, x, y, eps)
        assert np.all(np.linalg.norm(adv - x, axis=1) <= eps * (1 + 1e-5))
        robust = np.asarray(model(adv)).argmax(1) == y
        assert not np.any((radius > eps) & ~robust), eps
        broke_uncertified += int(np.sum(~robust & (radius <= eps)))
        wrong_claims_broken += int(np.sum(~robust & (wrong > eps)))
    assert broke_uncertified > 0 and wrong_claims_broken > 0
