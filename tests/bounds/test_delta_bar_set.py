"""delta_bar_set's cheap certified test: the trace-power bound and certified_inside."""

import numpy as np
import pytest
import tensorflow as tf

from contractive_keras.bounds import delta_bar_set

P = 2 ** delta_bar_set.TRACE_POWER_SQUARINGS


def _psd(d, top, multiplicity, rng, scale=1.0):
    """A PSD matrix with ``multiplicity`` eigenvalues equal to ``top`` (the largest)."""
    Q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    values = np.concatenate([np.full(multiplicity, top), rng.uniform(0, top, d - multiplicity)])
    return scale * (Q * values) @ Q.T


@pytest.mark.parametrize("d", [2, 8, 64, 128])
@pytest.mark.parametrize("multiplicity", [1, 2, "all"])
@pytest.mark.parametrize("scale", [1e-150, 1.0, 1e150])
def test_trace_power_bound_lies_between_lambda_max_and_d_to_the_1_over_p_times_it(
        d, multiplicity, scale):
    rng = np.random.default_rng(d)
    k = d if multiplicity == "all" else multiplicity
    G = _psd(d, 1.0, k, rng, scale)
    lam = np.linalg.eigvalsh(G)[-1]
    bound = float(delta_bar_set.trace_power_bound(tf.constant(G)))
    assert lam * (1 - 1e-12) <= bound <= lam * d ** (1.0 / P) * (1 + 1e-9)
    if multiplicity == "all":        # G = scale I: the bound is d^(1/p) lambda
        assert bound == pytest.approx(lam * d ** (1.0 / P), rel=1e-9)


@pytest.mark.parametrize("mode", ["flow", "euler"])
def test_certified_inside_only_for_kernels_whose_ball_norm_is_at_most_one(mode):
    rng = np.random.default_rng(3)
    d = 64
    geometry = delta_bar_set.Geometry(0.1, 0.0, None if mode == "flow" else 0.1)
    t = tf.constant(rng.uniform(0.5, 2.0, d))
    L, W, B0, _ = (x.numpy() for x in geometry.ball(t))
    direction = rng.standard_normal((d, d))
    sigma_direction = np.linalg.norm(direction, 2)
    for radius in (0.5, 0.95, 0.98, 0.999, 1.0 - 1e-11, 1.0, 1.001, 1.1):
        # Y = radius * direction / ||direction||_2, i.e. ||L (A - B0) W||_2 = radius.
        Y = radius * direction / sigma_direction
        A = Y / L[:, None] / W[None, :] + np.diag(B0)
        sigma = np.linalg.norm(L[:, None] * (A - np.diag(B0)) * W[None, :], 2)
        inside = bool(delta_bar_set.certified_inside(geometry, tf.constant(A), t))
        if inside:
            assert sigma <= 1.0 - 1e-12, (radius, sigma)
        if radius <= 0.98:      # the bound is tight to 64^(1/256) = 1.0164
            assert inside, radius


def test_projection_keeps_a_certified_kernel_without_projecting():
    rng = np.random.default_rng(5)
    geometry = delta_bar_set.Geometry(0.2, 0.5)
    A = tf.constant(0.05 * rng.standard_normal((16, 16)) - np.eye(16))
    B, t, projected = delta_bar_set.projection(geometry, A, tf.ones([16], tf.float64),
                                               tf.float32, initialized=False)
    assert bool(projected)                   # no warm start: the full path
    B2, t2, projected2 = delta_bar_set.projection(geometry, B, t, tf.float32, initialized=True)
    assert not bool(projected2)
    np.testing.assert_array_equal(B2.numpy(), B.numpy())
    np.testing.assert_array_equal(t2.numpy(), t.numpy())
