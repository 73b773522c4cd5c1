"""bounds/ on every Keras backend: the in-graph functions against NumPy float64.

Backend-neutral (no TensorFlow import): run under KERAS_BACKEND=tensorflow,
jax and torch.  In float64 (TensorFlow, PyTorch, JAX with x64) the graph
values equal the NumPy float64 references to float64 rounding; in float32
(JAX without x64) they are outward: c1 below, c2 / gamma / norms above.
"""

import keras
import numpy as np
import pytest

from contractive_keras import backend
from contractive_keras.bounds import backend_ops
from contractive_keras.bounds import delta_bar_set
from contractive_keras.bounds import theorem1
from contractive_keras.bounds.delta import delta
from contractive_keras.bounds.operator_norms import conv_operator_norm
from contractive_keras.bounds.operator_norms import conv_operator_norm_tf
from contractive_keras.bounds.operator_norms import spectral_norm
from contractive_keras.bounds.operator_norms import spectral_norm_tf
from contractive_keras.bounds.orthonormalization import bjorck_orthonormalize

pytestmark = pytest.mark.backends

ops = keras.ops
WIDE64 = backend.float64_in_graph()


def _np(x):
    return backend.to_numpy(x, np.float64)


def _upper(graph, reference, rtol64=1e-12, rtol32=2e-3):
    """graph is reference to float64 rounding, or (float32) above it and close."""
    graph, reference = _np(graph), np.asarray(reference, np.float64)
    if WIDE64:
        np.testing.assert_allclose(graph, reference, rtol=rtol64)
    else:
        assert np.all(graph >= reference)
        np.testing.assert_allclose(graph, reference, rtol=rtol32)


def _weights(seed=0, steps=3, m=5, n=4, p=4):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(steps, m, n)).astype("float32"),
            rng.normal(size=(steps, p, n)).astype("float32"))


def test_c1_c2_in_the_graph_match_numpy_float64_outward():
    K, L = _weights()
    c1, c2 = theorem1.c1_c2(ops.convert_to_tensor(K), ops.convert_to_tensor(L), 0.5, 1.0)
    r1, r2 = theorem1.c1_c2_numpy(K, L, 0.5, 1.0)
    _upper(c2, r2)
    if WIDE64:
        np.testing.assert_allclose(_np(c1), r1, rtol=1e-12)
    else:
        assert _np(c1) <= r1 and np.isclose(_np(c1), r1, rtol=2e-3)
    # Exact eigenvalues in float64 lie inside [c1, c2].
    eig_l = np.linalg.eigvalsh(np.einsum("kpi,kpj->kij", L * 1.0, L * 1.0))
    eig_k = np.linalg.eigvalsh(np.einsum("kpi,kpj->kij", K * 1.0, K * 1.0))
    assert _np(c1) <= 0.5 + eig_l[:, 0].min()
    assert _np(c2) >= 0.5 + (eig_l[:, -1] + eig_k[:, -1]).max()


def test_theorem1_gamma_on_tensors_is_the_float_value_rounded_up():
    for c1, c2, eps in [(0.5, 3.0, 0.05), (1.0, 1.5, 0.3), (0.2, 40.0, 0.01)]:
        wide = backend_ops.wide()
        graph = theorem1.theorem1_gamma(ops.convert_to_tensor(c1, wide),
                                        ops.convert_to_tensor(c2, wide), eps)
        exact = theorem1.theorem1_gamma(c1, c2, eps)
        # Theorem 1 holds for the graph's gamma, checked in float64.
        gap = 4 * c1 * c2 / (c1 + c2) ** 2
        g = float(_np(graph))
        assert g * g >= (1 - gap + eps) / (gap - eps)
        _upper(graph, exact)
        rounded = theorem1.round_up(graph, "float32")
        assert backend_ops.dtype_name(rounded.dtype) == "float32"
        r = float(_np(rounded))
        assert r >= g and r <= float(np.nextafter(np.float32(g), np.float32(np.inf)))


def test_round_up_steps_one_ulp_exactly_when_the_cast_rounds_down():
    if not WIDE64:
        pytest.skip("round_up of a float32 value is the value itself")
    values = np.array([1.0, 1.0 + 1e-12, 0.1, 3.0 - 1e-13, 1e-30, 7.0], np.float64)
    got = _np(theorem1.round_up(ops.convert_to_tensor(values, "float64"), "float32"))
    low = values.astype(np.float32)
    want = np.where(low.astype(np.float64) < values, np.nextafter(low, np.float32(np.inf)), low)
    np.testing.assert_array_equal(got, want.astype(np.float64))
    assert np.all(got >= values)


@pytest.mark.parametrize("spatial", [None, (6, 6)])
def test_k_scale_to_cap_brings_the_rounded_weights_under_the_cap(spatial):
    rng = np.random.default_rng(3)
    if spatial is None:
        K = (4.0 * rng.normal(size=(3, 5, 4))).astype("float32")
    else:
        K = (2.0 * rng.normal(size=(3, 3, 3, 4, 2))).astype("float32")
    L = (0.3 * rng.normal(size=(3, 4, 4))).astype("float32")
    kappa, q_max = 0.5, 6.0
    factor, (c1, c2) = theorem1.K_scale_to_cap(
        ops.convert_to_tensor(K), ops.convert_to_tensor(L), kappa, 1.0, q_max, "float32",
        spatial)
    scaled = _np(ops.convert_to_tensor(K) * factor).astype(np.float32)   # the product the layer uses
    r1, r2 = theorem1.c1_c2_numpy(scaled, L, kappa, 1.0, spatial)
    # Against the same float64 NumPy bounds of the rounded product (to float64 rounding).
    assert float(_np(c1)) <= r1 * (1 + 1e-12) and float(_np(c2)) >= r2 * (1 - 1e-12)
    assert float(_np(c2)) <= q_max * float(_np(c1)) * (1 + 1e-6)
    assert np.all(_np(factor) < 1.0)


def test_spectral_and_convolution_norms_match_numpy_float64():
    rng = np.random.default_rng(1)
    for shape in [(6, 4), (3, 7)]:
        w = rng.normal(size=shape).astype("float32")
        _upper(spectral_norm_tf(ops.convert_to_tensor(w)), spectral_norm(w) / (1 + 1e-13))
    # A stack with cin > cout on a non-square grid, and one kernel with min(cin, cout) = 1.
    k = rng.normal(size=(3, 3, 3, 2)).astype("float32")
    stack = np.stack([k, 0.5 * k])
    got = _np(conv_operator_norm_tf(ops.convert_to_tensor(stack), (5, 6)))
    _upper(got, [conv_operator_norm(x, (5, 6)) for x in stack])
    k = rng.normal(size=(2, 2, 1, 3)).astype("float32")
    _upper(conv_operator_norm_tf(ops.convert_to_tensor(k), (4, 4)), conv_operator_norm(k, (4, 4)))


def test_bjorck_converges_to_the_polar_factor():
    rng = np.random.default_rng(2)
    for shape in [(6, 3), (3, 5)]:
        w = rng.normal(size=shape)
        u, _, vt = np.linalg.svd(w, full_matrices=False)
        got = _np(bjorck_orthonormalize(ops.convert_to_tensor(w.astype("float32")), 30))
        np.testing.assert_allclose(got, u @ vt, atol=2e-4)


def test_trace_power_bound_and_certified_inside():
    rng = np.random.default_rng(4)
    X = rng.normal(size=(8, 8))
    G = X.T @ X
    bound = float(_np(delta_bar_set.trace_power_bound(ops.convert_to_tensor(G, backend_ops.wide()))))
    top = np.linalg.eigvalsh(G)[-1]
    assert top * (1 - 1e-6) <= bound <= top * 8 ** (1 / 128) * (1 + 1e-5)
    geometry = delta_bar_set.Geometry(0.2, 0.0)
    A = ops.convert_to_tensor(0.05 * rng.standard_normal((8, 8)) - np.eye(8), backend_ops.wide())
    t = ops.convert_to_tensor(np.ones(8), backend_ops.wide())
    assert bool(_np(delta_bar_set.certified_inside(geometry, A, t)))
    far = ops.convert_to_tensor(3.0 * np.eye(8), backend_ops.wide())
    assert not bool(_np(delta_bar_set.certified_inside(geometry, far, t)))


def test_certificates_from_numpy_and_from_backend_tensors_are_equal():
    rng = np.random.default_rng(5)
    A = rng.normal(size=(5, 5)).astype("float32")
    tensor = ops.convert_to_tensor(A)
    variable = keras.Variable(A, trainable=False)
    for value in (tensor, variable):
        assert delta(value, 0.3, "upper").value == delta(A, 0.3, "upper").value
        assert spectral_norm(value) == spectral_norm(A)
    k = rng.normal(size=(3, 3, 2, 2)).astype("float32")
    assert conv_operator_norm(ops.convert_to_tensor(k), (5, 5)) == conv_operator_norm(k, (5, 5))
    K, L = _weights(6)
    a = theorem1.constants(K, L, 0.5, 1.0, 0.05, 1.0, 2.0)
    b = theorem1.constants(ops.convert_to_tensor(K), keras.Variable(L), 0.5, 1.0, 0.05, 1.0, 2.0)
    assert a == b
