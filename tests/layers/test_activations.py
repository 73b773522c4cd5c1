"""The slope registry: every named activation's slopes lie in its declared interval."""

import numpy as np
import pytest
import tensorflow as tf

from contractive_keras.layers import activations


@pytest.mark.parametrize("name", sorted(activations.SLOPE_INTERVALS))
def test_secant_slopes_of_every_registered_activation_lie_in_its_interval(name):
    sloped = activations.get(name, negative_slope=0.1 if "leaky" in name else None)
    lo, hi = sloped.slopes
    x = np.sort(np.random.default_rng(0).uniform(-8, 8, 4001))
    y = np.asarray(sloped(tf.constant(x, tf.float64)), np.float64)
    secants = np.diff(y) / np.diff(x)
    assert secants.min() >= lo - 1e-9 and secants.max() <= hi + 1e-9


def test_leaky_relu_keeps_its_slope_exact_in_float64():
    sloped = activations.get("leaky_relu", negative_slope=0.7)
    x = tf.constant([-2.0, -0.5, 0.0, 1.5], tf.float64)
    np.testing.assert_array_equal(sloped(x).numpy(), np.maximum(x.numpy(), 0.7 * x.numpy()))
    assert sloped.slopes == (0.7, 1.0)
    assert activations.get("leaky_relu").slopes == (activations.KERAS_LEAKY_RELU_SLOPE, 1.0)


def test_callables_need_and_may_have_checked_slopes():
    with pytest.raises(ValueError, match="slope interval"):
        activations.get(tf.tanh)
    with pytest.raises(ValueError, match="secant slopes"):
        activations.get(tf.tanh, (0.5, 1.0), check=True)
    assert activations.get(tf.tanh, (0.0, 1.0), check=True).slopes == (0.0, 1.0)
    with pytest.raises(ValueError, match="known names"):
        activations.get("gelu")
