"""ConvNormClip: the im2col bound makes a convolution max_norm-Lipschitz; whole-model certificates."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from contractive_keras.bounds import conv_operator_norm
from contractive_keras import certify, models
from contractive_keras.constraints import ConvNormClip
from contractive_keras.layers import StepwiseIdentity


@pytest.mark.parametrize("shape, padding, strides", [
    ((3, 3, 1, 8), "same", 1), ((3, 3, 4, 6), "valid", 1), ((5, 3, 2, 3), "same", 2)])
def test_clipped_convolution_is_max_norm_lipschitz(shape, padding, strides):
    rng = np.random.default_rng(0)
    kernel = ConvNormClip(0.7)(rng.normal(size=shape).astype("float32") * 3).numpy()
    kh, kw, cin, cout = shape
    assert np.sqrt(kh * kw) * np.linalg.norm(kernel.reshape(-1, cout).astype(np.float64), 2) <= 0.7
    if strides == 1:    # the exact operator norm (circulant embedding) is below the bound
        assert conv_operator_norm(kernel.astype(np.float64), (12, 12)) <= 0.7
    # ...and so is every ratio, including one driven up by power iteration on conv^T conv.
    conv = lambda x: tf.nn.conv2d(x, kernel, strides, padding.upper())
    x = tf.constant(rng.normal(size=(1, 12, 12, cin)), tf.float32)
    for _ in range(50):
        with tf.GradientTape() as tape:
            tape.watch(x)
            energy = 0.5 * tf.reduce_sum(conv(x) ** 2)
        x = tape.gradient(energy, x)
        x = x / tf.norm(x)
    assert 0.0 < float(tf.norm(conv(x))) <= 0.7 * (1 + 1e-6)


def test_kernel_inside_is_unchanged_and_config_round_trips():
    kernel = np.full((3, 3, 1, 2), 0.01, "float32")
    np.testing.assert_array_equal(ConvNormClip(1.0)(kernel).numpy(), kernel)
    clip = ConvNormClip.from_config(ConvNormClip(2.5).get_config())
    assert clip.max_norm == 2.5
    with pytest.raises(ValueError, match="max_norm must be > 0"):
        ConvNormClip(0.0)
    with pytest.raises(ValueError, match="Conv2D kernel"):
        ConvNormClip(1.0)(np.ones((3, 3), "float32"))


def test_norm_bounded_chnode_model_keeps_a_certified_whole_model_bound_under_fit():
    """Lift, certified block and read-out: the logits stay (1 / 0.3081) * 1 * 1 * 2-Lipschitz."""
    keras.utils.set_random_seed(1)
    model = models.build("chnode", depth=2, gamma=2.0, eps=0.3, lift_max_norm=1.0,
                         readout_max_norm=2.0, discrete_check="ignore",
                         dissipation_initializer=StepwiseIdentity(0.3))
    model.compile(keras.optimizers.Adam(0.5), keras.losses.SparseCategoricalCrossentropy(True))
    x = np.random.rand(64, 28, 28, 1).astype("float32")
    y = np.random.randint(0, 10, 64)
    model.fit(x, y, epochs=3, batch_size=16, verbose=0)
    bound = certify.lipschitz_bound(model)
    factors = {name: factor for name, _, factor in bound.factors}
    assert factors["lift"] <= 1.0 and factors["logits"] <= 2.0 and factors["chnode"] <= 1.0
    assert bound.value <= 2.0 / 0.3081 * (1 + 1e-6)
    delta = np.random.randn(64, 28, 28, 1).astype("float32") * 0.01
    ratios = (np.linalg.norm(model(x + delta) - model(x), axis=1)
              / np.linalg.norm(delta.reshape(64, -1), axis=1))
    assert ratios.max() <= bound.value


def test_norm_bounded_stable_node_model_keeps_its_bounds_under_fit():
    keras.utils.set_random_seed(2)
    model = models.build("stable_node", width=8, lift_max_norm=1.0, readout_max_norm=2.0)
    model.compile(keras.optimizers.Adam(0.5), keras.losses.SparseCategoricalCrossentropy(True))
    x = np.random.rand(64, 28, 28, 1).astype("float32")
    model.fit(x, np.random.randint(0, 10, 64), epochs=2, batch_size=16, verbose=0)
    factors = {name: factor for name, _, factor in certify.lipschitz_bound(model).factors}
    assert factors["lift"] <= 1.0 and factors["logits"] <= 2.0
    assert factors["stabilized_node"] <= 1.0 + 1e-6      # delta_bar = 0: non-expansive


def test_circulant_mode_bounds_the_exact_norm_and_certifies_more():
    """With the input grid known, the clip uses the tight circulant norm."""
    rng = np.random.default_rng(11)
    kernel = rng.standard_normal((3, 3, 2, 4)).astype("float32")
    tight = ConvNormClip(1.0, input_shape=(8, 8))
    clipped = np.asarray(tight(kernel), np.float64)
    assert conv_operator_norm(clipped, (8, 8)) <= 1.0
    loose = np.asarray(ConvNormClip(1.0)(kernel), np.float64)
    assert conv_operator_norm(loose, (8, 8)) < conv_operator_norm(clipped, (8, 8))
    inside = clipped * 0.5
    np.testing.assert_array_equal(np.asarray(tight(inside.astype("float32"))),
                                  inside.astype("float32"))
    assert ConvNormClip.from_config(tight.get_config()).input_shape == [8, 8]
