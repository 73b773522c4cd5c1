"""Certificates act on weights: the same certificate whichever Keras backend built the model.

Every test here runs under each backend (``make test`` runs them under
TensorFlow, JAX and torch): certificates against NumPy float64 values
computed in the test from the same weights, radii from a model or from
backend-tensor logits, the differentiable training bound and its gradient,
and a model saved under TensorFlow (``tests/certify/fixture``) giving the
recorded certificate.
"""

import json
import math

import keras
import numpy as np
import pytest
from keras import ops

from contractive_keras import backend
from contractive_keras import certify
from contractive_keras.layers import GroupSort
from contractive_keras.layers import L2NormPooling2D
from tests.certify import fixture
from tests.certify.gradients import variable_gradient

pytestmark = pytest.mark.backends


def _weights(layer):
    return [np.asarray(w, np.float64) for w in layer.get_weights()]


def _dense_model(seed=0):
    """Dense -> GroupSort -> Dense -> GroupSort -> Dense read-out."""
    keras.utils.set_random_seed(seed)
    x_in = keras.Input((6,))
    x = GroupSort(2)(keras.layers.Dense(8, name="d1")(x_in))
    x = GroupSort(2)(keras.layers.Dense(8, name="d2")(x))
    return keras.Model(x_in, keras.layers.Dense(3, name="logits")(x))


def _numpy_forward(model, x):
    """The dense model's logits in float64 NumPy from its weights."""
    def groupsort(h):
        pairs = h.reshape(len(h), -1, 2)
        return np.sort(pairs, axis=-1).reshape(len(h), -1)

    h = x.astype(np.float64)
    for name in ("d1", "d2"):
        kernel, bias = _weights(model.get_layer(name))
        h = groupsort(h @ kernel + bias)
    kernel, bias = _weights(model.get_layer("logits"))
    return h @ kernel + bias


def _pairwise_radius(logits, kernel, body):
    pred = logits.argmax(1)
    radius = np.full(len(logits), np.inf)
    for j in range(logits.shape[1]):
        norm = np.linalg.norm(kernel[:, pred] - kernel[:, [j]], axis=0) * body
        gap = logits[np.arange(len(pred)), pred] - logits[:, j]
        radius = np.where(pred == j, radius, np.minimum(radius, gap / norm))
    return radius


def test_model_certificate_equals_the_numpy_float64_product_of_its_weights():
    model = _dense_model()
    norms = {name: np.linalg.norm(_weights(model.get_layer(name))[0], 2) for name in ("d1", "d2", "logits")}
    whole = certify.lipschitz_bound(model)
    assert whole.value == pytest.approx(norms["d1"] * norms["d2"] * norms["logits"], rel=1e-15)
    body, kernel = certify.body_and_readout(model)
    assert body.value == pytest.approx(norms["d1"] * norms["d2"], rel=1e-15)
    assert kernel.dtype == np.float64
    np.testing.assert_array_equal(kernel, _weights(model.get_layer("logits"))[0])


def test_conv_rescaling_and_pooling_factors_are_numpy_float64():
    from contractive_keras.bounds import conv_operator_norm

    keras.utils.set_random_seed(1)
    x_in = keras.Input((6, 6, 2))
    x = keras.layers.Rescaling(0.5)(x_in)
    conv = keras.layers.Conv2D(3, 3, padding="same")
    x = L2NormPooling2D(2)(GroupSort(3)(conv(x)))
    model = keras.Model(x_in, keras.layers.Dense(2)(keras.layers.Flatten()(x)))
    factors = {kind: value for _, kind, value in certify.lipschitz_bound(model).factors}
    assert factors["rescaling"] == 0.5
    kernel = _weights(conv)[0]
    assert factors["conv2d (circulant bound)"] == conv_operator_norm(kernel, (6, 6))
    # the circulant bound, recomputed here: max over the torus frequencies of ||K_hat||_2
    transfer = np.fft.fft2(kernel, s=(8, 8), axes=(0, 1))
    exact = np.max(np.linalg.norm(transfer, ord=2, axis=(-2, -1)))
    assert factors["conv2d (circulant bound)"] == pytest.approx(exact, rel=1e-12)
    assert factors["l2-norm pooling (disjoint windows)"] == factors["groupsort (a permutation)"] == 1.0


def test_certified_radius_from_a_model_and_from_backend_tensor_logits():
    model = _dense_model(seed=2)
    x = np.random.default_rng(3).normal(size=(37, 6)).astype("float32")
    body, kernel = certify.body_and_readout(model)
    expected = np.maximum(_pairwise_radius(_numpy_forward(model, x), kernel, body.value), 0.0)
    result = certify.certified_radius(model, x, batch_size=16)      # batches of 16, 16, 5
    assert result.bound == "pairwise" and result.correct.all()
    np.testing.assert_allclose(result.radius, expected, rtol=1e-4, atol=1e-6)
    # logits computed by the backend and passed as its own tensors
    logits = model(ops.convert_to_tensor(x))
    from_tensors = certify.certified_radius(logits=logits, body_bound=body.value,
                                            readout_kernel=model.get_layer("logits").kernel,
                                            labels=ops.convert_to_tensor(result.radius * 0, "int32"))
    from_numpy = certify.certified_radius(logits=ops.convert_to_numpy(logits), body_bound=body.value,
                                          readout_kernel=kernel)
    np.testing.assert_array_equal(from_tensors.radius[from_tensors.correct],
                                  from_numpy.radius[from_tensors.correct])
    # inputs as backend tensors: the same radii as NumPy inputs
    again = certify.certified_radius(model, ops.convert_to_tensor(x), batch_size=16)
    np.testing.assert_array_equal(again.radius, result.radius)
    whole = certify.certified_radius(logits=logits, lipschitz_constant=certify.lipschitz_bound(model).value)
    assert whole.bound == "global" and np.all(whole.radius <= from_numpy.radius + 1e-12)


def test_bsm_power_method_refuses_in_one_line_off_tensorflow():
    if backend.is_tensorflow():
        pytest.skip("bsm_norms' power method runs on TensorFlow")

    class Wide:                     # "auto" picks the power method above 64 units
        state_size = 65

    for method in ("power", "auto"):
        with pytest.raises(NotImplementedError, match="KERAS_BACKEND=tensorflow") as error:
            certify.bsm_norms(Wide(), np.zeros((1, 65)), method=method)
        assert "\n" not in str(error.value) and backend.name() in str(error.value)
    with pytest.raises(ValueError, match="method must be"):
        certify.bsm_norms(Wide(), np.zeros((1, 65)), method="svd")


def test_bsm_exact_norms_match_finite_differences_and_obey_theorem2():
    from contractive_keras.layers import CHNODE
    from contractive_keras.solvers import SolverSpec

    keras.utils.set_random_seed(7)
    layer = CHNODE(SolverSpec("rk4", steps=2, t1=0.5), kappa=0.2, eps=0.05, discrete_check="ignore",
                   kernel_initializer=keras.initializers.RandomNormal(stddev=0.3),
                   bias_initializer=keras.initializers.RandomNormal(stddev=1.0))
    x = np.random.default_rng(8).normal(size=(4, 4)).astype("float32") * 2
    layer(x)
    exact = certify.bsm_norms(layer, x, method="exact", per_row=True)
    assert exact.shape == (3, 4) and np.all(exact[-1] == 1.0)
    c = certify.contraction_constants(layer)
    sharper = np.exp(certify.log_norm_bound(c["c1"], c["c2"], c["gamma"]) * (0.5 - np.linspace(0, 0.5, 3)))
    assert np.all(exact.max(axis=1) <= sharper * (1 + 1e-5))
    assert exact[0].max() <= certify.layer_certificate(layer).value * (1 + 1e-5)
    # the whole block's Jacobian by central differences of the layer, per row
    h, e = 1e-2, np.eye(4, dtype="float32")
    shifted = ops.convert_to_numpy(layer(np.concatenate([x[:, None] + h * e, x[:, None] - h * e]).reshape(-1, 4)))
    up, down = shifted.reshape(2, 4, 4, 4).astype(np.float64)           # (sign, row, column, output)
    numeric = np.linalg.norm(np.swapaxes((up - down) / (2 * h), 1, 2), 2, axis=(1, 2))
    np.testing.assert_allclose(exact[0], numeric, rtol=2e-3)


def test_training_bound_is_the_certificate_and_its_gradient_the_top_singular_pair():
    model = _dense_model(seed=4)
    bound = certify.body_bound_fn(model)
    certified = certify.body_and_readout(model)[0].value
    value = float(ops.convert_to_numpy(bound()))
    # float64: tight to 1e-6; in float32 (JAX without x64) the eigenvalues' and the
    # products' rounding is covered outwards (bounds.backend_ops.eig_slack, body_bound_fn)
    assert certified <= value <= certified * (1 + (1e-6 if backend.float64_in_graph() else 1e-4))
    d1 = model.get_layer("d1")
    grad = variable_gradient(bound, d1.kernel)
    w1, w2 = _weights(d1)[0], _weights(model.get_layer("d2"))[0]
    u, s, vt = np.linalg.svd(w1)
    # d ||W1||_2 ||W2||_2 / d W1 = ||W2||_2 u1 v1^T
    np.testing.assert_allclose(grad, np.linalg.norm(w2, 2) * np.outer(u[:, 0], vt[0]),
                               rtol=1e-3, atol=1e-5)


def test_a_model_saved_under_tensorflow_gives_the_recorded_certificate():
    from contractive_keras import saving

    with open(fixture.RECORD, encoding="utf-8") as handle:
        recorded = json.load(handle)
    model = saving.load_keras_file(fixture.MODEL)
    got = fixture.certificate_record(model)
    assert got["lipschitz_bound"] == pytest.approx(recorded["lipschitz_bound"], rel=1e-14)
    assert got["body_bound"] == pytest.approx(recorded["body_bound"], rel=1e-14)
    assert [f[:2] for f in got["factors"]] == [f[:2] for f in recorded["factors"]]
    np.testing.assert_allclose([f[2] for f in got["factors"]], [f[2] for f in recorded["factors"]],
                               rtol=1e-14)
    assert got["bound"] == recorded["bound"] == "pairwise"
    # the radii come from float32 logits of each backend's kernels: float32 agreement
    np.testing.assert_allclose(got["radius"], recorded["radius"], rtol=1e-4, atol=1e-6)
    assert math.isfinite(got["lipschitz_bound"])


@pytest.fixture(scope="module")
def ode_classifier():
    """The ODE classifier saved under TensorFlow, loaded once, and its record."""
    from contractive_keras import saving

    with open(fixture.ODE_RECORD, encoding="utf-8") as handle:
        recorded = json.load(handle)
    return saving.load_keras_file(fixture.ODE_MODEL), recorded


def test_ode_blocks_saved_under_tensorflow_give_the_recorded_certificates(ode_classifier):
    """A CH-NODE and a stabilized NODE: map and flow certificates, guarantees, summary, model bound."""
    model, recorded = ode_classifier
    got = fixture.ode_record(model)
    for name in ("chnode", "stabilized"):
        for certifies in ("map", "flow", "guarantee"):
            assert got[name][certifies] == pytest.approx(recorded[name][certifies], rel=1e-13), \
                (name, certifies)
    assert got["summary"].keys() == recorded["summary"].keys()
    for key, value in recorded["summary"].items():
        assert got["summary"][key] == pytest.approx(value, rel=1e-13, abs=1e-300), key
    assert got["lipschitz_bound"] == pytest.approx(recorded["lipschitz_bound"], rel=1e-13)
    assert got["body_bound"] == pytest.approx(recorded["body_bound"], rel=1e-13)
    # the ODE layers' float32 forward passes on each backend: float32 agreement of the radii
    np.testing.assert_allclose(got["radius"], recorded["radius"], rtol=1e-4, atol=1e-6)


def test_certified_training_under_model_fit_with_the_in_graph_bound():
    """The margin loss against body_bound_fn trains in Keras's own step (jit on JAX)."""
    from contractive_keras import losses

    model = _dense_model(seed=5)
    loss = losses.LipschitzMarginCrossEntropy(eps=0.3, readout=model.get_layer("logits"),
                                              body_lipschitz=certify.body_bound_fn(model))
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=loss)
    rng = np.random.default_rng(6)
    x = rng.normal(size=(64, 6)).astype("float32")
    y = (x[:, 0] > 0).astype("int32")
    history = model.fit(x, y, batch_size=16, epochs=3, verbose=0).history["loss"]
    assert np.all(np.isfinite(history)) and history[-1] < history[0]
    bound = float(ops.convert_to_numpy(certify.body_bound_fn(model)()))
    assert bound >= certify.body_and_readout(model)[0].value


def test_ode_guarantees_bound_the_computed_map_on_every_backend(ode_classifier):
    """StabilizedNODE with a DeltaBarProjection and a fixed-gamma CHNODE, as in the TF tests."""
    model, _ = ode_classifier
    block, chnode = model.get_layer("stabilized"), model.get_layer("chnode")
    assert certify.ode_guarantee(block) == pytest.approx((1 - 0.25 * 0.2) ** 4)
    assert certify.layer_certificate(block).value <= certify.ode_guarantee(block) * (1 + 1e-9)
    assert certify.ode_guarantee(chnode) == 1.0
    assert certify.layer_certificate(chnode).value <= 1.0 + 1e-12
    value = float(ops.convert_to_numpy(certify.body_bound_fn(model)()))
    assert value >= certify.body_and_readout(model)[0].value
