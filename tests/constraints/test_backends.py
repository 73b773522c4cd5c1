"""The constraints on every Keras backend: guarantees, NumPy float64 references, model.fit.

Backend-neutral (no TensorFlow import): run under KERAS_BACKEND=tensorflow,
jax (jitted train step) and torch.
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
from contractive_keras.bounds.operator_norms import rounding_unit
from contractive_keras.constraints import ConvNormClip
from contractive_keras.constraints import DeltaBarProjection
from contractive_keras.constraints import GammaProjection
from contractive_keras.constraints import SpectralNormClip

pytestmark = pytest.mark.backends

ops = keras.ops


def _np(x):
    return backend.to_numpy(x, np.float64)


def _clip_reference(W, max_norms):
    """The Frobenius projection in NumPy float64 with the constraint's target margin."""
    W = np.asarray(W, np.float64)
    stacked = W[None] if W.ndim == 2 else W
    m, n = stacked.shape[-2:]
    margin = 1.0 - 4.0 * rounding_unit("float32") * np.sqrt(min(m, n))
    if not backend.float64_in_graph():   # float32 computation: its documented extra margin
        margin -= 2.0 * backend_ops.eig_slack("float32", max(m, n), min(m, n))
    out = []
    for w, m in zip(stacked, np.broadcast_to(max_norms, (len(stacked),))):
        u, s, vt = np.linalg.svd(w, full_matrices=False)
        out.append(w if s[0] <= m * margin else (u * np.minimum(s, m * margin)) @ vt)
    return np.stack(out).reshape(W.shape)


def test_spectral_norm_clip_is_the_numpy_float64_projection():
    rng = np.random.default_rng(0)
    W = (3.0 * rng.normal(size=(3, 6, 4))).astype("float32")
    W[1] *= 0.01                                    # one slice inside: unchanged
    got = _np(SpectralNormClip([1.0, 1.0, 2.0])(ops.convert_to_tensor(W)))
    want = _clip_reference(W, [1.0, 1.0, 2.0])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(got[1], W[1])
    norms = np.linalg.norm(got, 2, axis=(-2, -1))
    assert np.all(norms <= [1.0, 1.0, 2.0])


def test_gamma_projection_makes_theorem1_hold():
    rng = np.random.default_rng(1)
    L = 0.3 * rng.normal(size=(2, 4, 4))
    constraint = GammaProjection(kappa=0.5, eps=0.05, gamma=2.0, L=L)
    K = (3.0 * rng.normal(size=(2, 5, 4))).astype("float32")
    got = _np(constraint(ops.convert_to_tensor(K)))
    np.testing.assert_allclose(got, _clip_reference(K, constraint.max_norms), rtol=1e-5, atol=1e-6)
    c1, c2 = theorem1.c1_c2_numpy(got.astype("float32"), L, 0.5, 1.0)
    gap = theorem1.one_minus_alpha_sq(c1, c2)
    assert gap >= theorem1.ratio_threshold(0.05, 1.0, 2.0)       # Theorem 1 for gamma = 2


@pytest.mark.parametrize("input_shape", [None, (6, 6)])
def test_conv_norm_clip_bounds_the_convolution(input_shape):
    rng = np.random.default_rng(2)
    k = rng.normal(size=(3, 3, 2, 3)).astype("float32")
    got = _np(ConvNormClip(0.7, input_shape)(ops.convert_to_tensor(k)))
    if input_shape is None:
        assert 3 * np.linalg.norm(got.reshape(18, 3), 2) <= 0.7
        np.testing.assert_allclose(got.reshape(18, 3), _clip_reference(k.reshape(18, 3), 0.7 / 3),
                                   rtol=1e-5, atol=1e-6)
    else:
        assert conv_operator_norm(got.astype("float32"), input_shape) <= 0.7
        ratio = got / k
        np.testing.assert_allclose(ratio, ratio.flat[0], rtol=1e-6)   # a scaling of k


@pytest.mark.parametrize("step_size", [None, 0.25])
def test_delta_bar_projection_certifies_delta_bar(step_size):
    rng = np.random.default_rng(3)
    A = rng.normal(size=(6, 6)).astype("float32")
    constraint = DeltaBarProjection(min_slope=0.2, delta_bar=0.1, step_size=step_size)
    B = _np(constraint(ops.convert_to_tensor(A))).astype("float32")
    assert constraint.scaling() is not None
    scaling = constraint.scaling() if step_size is None else None
    assert delta(B, 0.2, "upper", scaling=scaling).value <= 0.1 + 1e-9
    again = _np(constraint(ops.convert_to_tensor(B)))                # warm state keeps it
    np.testing.assert_array_equal(again, B)


def test_delta_bar_projection_is_the_numpy_float64_projection_onto_the_warm_ball():
    """A kernel just outside the ball of a warm-started T is projected onto that ball:
    the weighted singular-value clip, recomputed here in NumPy float64."""
    rng = np.random.default_rng(6)
    d, alpha, delta_bar = 6, 0.3, 0.2
    t = rng.uniform(0.5, 2.0, d)
    c, r = (1 + alpha) / 2, (1 - alpha) / 2
    Lv, R, B0 = np.sqrt(r / (2 * t)), delta_bar + alpha * t / (2 * r), -(c / r) * t
    Wv = 1 / np.sqrt(R)
    Y0 = rng.normal(size=(d, d))
    Y0 *= 1.005 / np.linalg.norm(Y0, 2)           # outside by 0.5 %: projected, not re-optimised
    A = (np.diag(B0) + Y0 / Lv[:, None] / Wv[None, :]).astype("float32")
    constraint = DeltaBarProjection(min_slope=alpha, delta_bar=delta_bar)
    constraint.build((d, d))
    constraint.warm_start(t)
    got = _np(constraint(ops.convert_to_tensor(A)))
    # The reference: clip the singular values of Y = L (A - B0) W at the aimed radius.
    Y = Lv[:, None] * (A.astype(np.float64) - np.diag(B0)) * Wv[None, :]
    eps = np.finfo(np.float32).eps
    tol = 1e-12 if backend.float64_in_graph() else delta_bar_set.tolerance("float32", d)
    radius = 1 - (2 * eps * Lv.max() * Wv.max() * (np.linalg.norm(A) + np.linalg.norm(B0)) + tol)
    u, sv, vt = np.linalg.svd(Y)
    want = np.diag(B0) + (u * np.minimum(sv, radius)) @ vt / Lv[:, None] / Wv[None, :]
    np.testing.assert_allclose(got, want, rtol=2e-6, atol=2e-6)
    assert delta(got.astype("float32"), alpha, "upper", scaling=t).value <= delta_bar


def _fit(constraint, make_layer, epochs=2):
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(4)
    x = rng.normal(size=(32, 6)).astype("float32")
    y = (5.0 * x @ rng.normal(size=(6, 6))).astype("float32")
    layer = make_layer(constraint)
    model = keras.Sequential([keras.Input((6,)), layer])
    model.compile(optimizer=keras.optimizers.SGD(1.0), loss="mse")
    before = _np(layer.kernel).copy()
    model.fit(x, y, batch_size=16, epochs=epochs, verbose=0)
    after = _np(layer.kernel)
    assert not np.array_equal(before, after)
    return after


def _dense(constraint):
    return keras.layers.Dense(6, use_bias=False, kernel_constraint=constraint)


def _einsum(constraint):
    return keras.layers.EinsumDense("bi,ij->bj", output_shape=6, kernel_constraint=constraint)


@pytest.mark.parametrize("make_layer", [_dense, _einsum])
def test_fit_applies_the_norm_clip_after_every_step(make_layer):
    kernel = _fit(SpectralNormClip(0.5), make_layer)
    assert np.linalg.norm(kernel, 2) <= 0.5


def test_fit_applies_the_delta_bar_projection_after_every_step():
    constraint = DeltaBarProjection(min_slope=0.3, delta_bar=0.0, reoptimize_iterations=20)
    kernel = _fit(constraint, _dense, epochs=1)
    # The projected matrix is the kernel as stored, certified with the constraint's T
    # (kept on the host through JAX's jitted step).
    scaling = constraint.scaling()
    assert scaling is not None                      # the state persisted through the step
    assert delta(kernel.astype("float32"), 0.3, "upper", scaling=scaling).value <= 1e-9
