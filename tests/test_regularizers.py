"""PiecewiseSmoothness: the reference smoothness penalty and PyTorch-style weight decay.

Every test runs under each Keras backend (gradients by the backend's own
autodiff, ``tests/certify/gradients``).
"""

import keras
import numpy as np
import pytest

from contractive_keras import backend
from contractive_keras.regularizers import PiecewiseSmoothness
from tests.certify.gradients import gradients

pytestmark = pytest.mark.backends


def test_value_matches_the_reference_sum():
    rng = np.random.default_rng(0)
    K = rng.normal(size=(5, 3, 3)).astype("float32")
    reg = PiecewiseSmoothness(smoothness=0.3, l2=0.01)
    expected = 0.3 * sum(0.5 * np.sum((K[j + 1] - K[j]) ** 2) for j in range(4)) \
        + 0.01 * np.sum(K ** 2)
    assert float(reg(K)) == pytest.approx(expected, rel=1e-6)
    assert float(PiecewiseSmoothness(smoothness=1.0)(K[:1])) == 0.0   # shared weights


@pytest.mark.skipif(not backend.float64_in_graph(), reason="float64 gradients; JAX without x64")
def test_l2_gradient_is_pytorch_weight_decay():
    w = np.random.default_rng(1).standard_normal((4, 2, 2))
    wd = 4e-3
    (grad,) = gradients(PiecewiseSmoothness(l2=wd / 2), w)
    np.testing.assert_allclose(grad, wd * w, rtol=1e-12)


def test_gradient_matches_the_closed_form_in_float32():
    """d/dW_j of s/2 sum ||W_{j+1} - W_j||^2 + l2 ||W||^2 = s (2 W_j - W_{j-1} - W_{j+1}) + 2 l2 W_j
    (one neighbour at the ends)."""
    w = np.random.default_rng(2).standard_normal((5, 3, 2)).astype("float32")
    smoothness, l2 = 0.3, 0.02
    (grad,) = gradients(PiecewiseSmoothness(smoothness=smoothness, l2=l2), w)
    w64 = w.astype(np.float64)
    diff = np.zeros_like(w64)
    diff[:-1] += w64[:-1] - w64[1:]
    diff[1:] += w64[1:] - w64[:-1]
    np.testing.assert_allclose(grad, smoothness * diff + 2 * l2 * w64, rtol=1e-5, atol=1e-6)


def test_appears_in_model_losses_and_round_trips():
    reg = PiecewiseSmoothness(smoothness=2e-3, l2=1e-4)
    layer = keras.layers.Dense(3, kernel_regularizer=reg)
    layer(np.zeros((1, 2), "float32"))
    assert len(layer.losses) == 1
    clone = keras.regularizers.deserialize(keras.regularizers.serialize(reg))
    assert isinstance(clone, PiecewiseSmoothness) and clone.get_config() == reg.get_config()
    with pytest.raises(ValueError, match=">= 0"):
        PiecewiseSmoothness(smoothness=-1.0)
