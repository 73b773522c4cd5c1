"""PiecewiseSmoothness: the reference smoothness penalty and PyTorch-style weight decay."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from contractive_keras.regularizers import PiecewiseSmoothness


def test_value_matches_the_reference_sum():
    rng = np.random.default_rng(0)
    K = rng.normal(size=(5, 3, 3)).astype("float32")
    reg = PiecewiseSmoothness(smoothness=0.3, l2=0.01)
    expected = 0.3 * sum(0.5 * np.sum((K[j + 1] - K[j]) ** 2) for j in range(4)) \
        + 0.01 * np.sum(K ** 2)
    assert float(reg(K)) == pytest.approx(expected, rel=1e-6)
    assert float(PiecewiseSmoothness(smoothness=1.0)(K[:1])) == 0.0   # shared weights


def test_l2_gradient_is_pytorch_weight_decay():
    w = tf.Variable(np.random.default_rng(1).standard_normal((4, 2, 2)))
    wd = 4e-3
    with tf.GradientTape() as tape:
        loss = PiecewiseSmoothness(l2=wd / 2)(w)
    np.testing.assert_allclose(tape.gradient(loss, w).numpy(), wd * w.numpy(), rtol=1e-12)


def test_appears_in_model_losses_and_round_trips():
    reg = PiecewiseSmoothness(smoothness=2e-3, l2=1e-4)
    layer = keras.layers.Dense(3, kernel_regularizer=reg)
    layer(np.zeros((1, 2), "float32"))
    assert len(layer.losses) == 1
    clone = keras.regularizers.deserialize(keras.regularizers.serialize(reg))
    assert isinstance(clone, PiecewiseSmoothness) and clone.get_config() == reg.get_config()
    with pytest.raises(ValueError, match=">= 0"):
        PiecewiseSmoothness(smoothness=-1.0)
