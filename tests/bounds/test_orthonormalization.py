"""bjorck_orthonormalize: converges to the polar factor, differentiable, refuses bad input."""

import numpy as np
import pytest
import tensorflow as tf

from contractive_keras.bounds.orthonormalization import bjorck_orthonormalize


@pytest.mark.parametrize("shape", [(12, 5), (5, 12), (7, 7)])
def test_converges_to_the_polar_factor(shape):
    rng = np.random.default_rng(0)
    u, _, vt = np.linalg.svd(rng.normal(size=shape), full_matrices=False)
    # Singular values in [0.2, 3]: after scaling by 1/3 the smallest is 1/15,
    # which the iteration brings to 1 (x 1.5 per step while small) well within 30 steps.
    w = u @ np.diag(np.linspace(0.2, 3.0, min(shape))) @ vt
    out = bjorck_orthonormalize(tf.constant(w), 30).numpy()
    np.testing.assert_allclose(out, u @ vt, atol=1e-9)


def test_singular_values_increase_monotonically_to_one():
    rng = np.random.default_rng(1)
    w = rng.normal(size=(20, 6)) @ np.diag([1.0, 0.5, 0.3, 0.1, 0.05, 0.02])
    previous = np.linalg.svd(bjorck_orthonormalize(w, 0).numpy(), compute_uv=False)
    assert previous.max() == pytest.approx(1.0, abs=1e-12)
    for k in range(1, 25):
        s = np.linalg.svd(bjorck_orthonormalize(w, k).numpy(), compute_uv=False)
        assert np.all(s >= previous - 1e-12) and np.all(s <= 1 + 1e-12)
        previous = s
    np.testing.assert_allclose(previous, 1.0, atol=1e-6)


def test_gradient_matches_finite_differences():
    rng = np.random.default_rng(2)
    w = tf.Variable(rng.normal(size=(6, 4)))
    probe = tf.constant(rng.normal(size=(6, 4)))

    def objective(matrix):
        return tf.reduce_sum(bjorck_orthonormalize(matrix, 8) * probe)

    with tf.GradientTape() as tape:
        value = objective(w)
    grad = tape.gradient(value, w).numpy()
    direction = rng.normal(size=(6, 4))
    h = 1e-6
    numeric = (objective(w + h * direction) - objective(w - h * direction)).numpy() / (2 * h)
    assert np.sum(grad * direction) == pytest.approx(numeric, rel=1e-6)


def test_bad_input_raises():
    with pytest.raises(ValueError, match="matrix"):
        bjorck_orthonormalize(np.ones((2, 2, 2)))
    with pytest.raises(ValueError, match="iterations"):
        bjorck_orthonormalize(np.eye(2), -1)
