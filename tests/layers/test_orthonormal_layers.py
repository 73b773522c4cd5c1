"""OrthonormalDense / OrthonormalConv2D: norm-1 applied kernels, certified, serializable."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from contractive_keras import certify
from contractive_keras.bounds.operator_norms import conv_operator_norm
from contractive_keras.layers import OrthonormalConv2D, OrthonormalDense


def test_dense_applies_an_orthonormal_kernel_and_matches_dense():
    layer = OrthonormalDense(6, kernel_initializer="glorot_uniform")
    x = np.random.default_rng(0).normal(size=(4, 10)).astype("float32")
    out = layer(x).numpy()
    w = layer.applied_kernel().numpy()
    np.testing.assert_allclose(w.T @ w, np.eye(6), atol=1e-4)
    np.testing.assert_allclose(out, x @ w + layer.bias.numpy(), rtol=1e-5, atol=1e-6)


def test_conv_has_operator_norm_one_and_matches_conv2d():
    layer = OrthonormalConv2D(6, 3, padding="same", kernel_initializer="glorot_uniform")
    x = np.random.default_rng(1).normal(size=(2, 9, 7, 4)).astype("float32")
    out = layer(x).numpy()
    kernel = layer.applied_kernel().numpy()
    assert conv_operator_norm(kernel.astype("float64"), (9, 7)) == pytest.approx(1.0, abs=1e-5)
    reference = tf.nn.conv2d(x, kernel, 1, "SAME").numpy() + layer.bias.numpy()
    np.testing.assert_allclose(out, reference, rtol=1e-5, atol=1e-5)


def test_conv_is_1_lipschitz_on_random_pairs():
    layer = OrthonormalConv2D(8, 3, padding="same", kernel_initializer="glorot_uniform")
    rng = np.random.default_rng(2)
    x = rng.normal(size=(64, 8, 8, 3)).astype("float32")
    y = x + rng.normal(size=x.shape).astype("float32")
    num = np.linalg.norm((layer(x) - layer(y)).numpy().reshape(64, -1), axis=1)
    den = np.linalg.norm((x - y).reshape(64, -1), axis=1)
    assert np.all(num <= den * (1 + 1e-5))


def test_certify_bounds_the_applied_kernels():
    model = keras.Sequential([
        keras.Input((8, 8, 1)), OrthonormalConv2D(4, 3, padding="same", name="conv"),
        keras.layers.Flatten(), OrthonormalDense(6, name="hidden"), keras.layers.Dense(3)])
    body, readout = certify.body_and_readout(model)
    assert body.value == pytest.approx(1.0, abs=1e-5)
    assert readout.shape == (6, 3)
    exact = certify.body_bound_fn(model)
    assert float(exact()) >= body.value and float(exact()) == pytest.approx(1.0, abs=1e-5)
    # The parametrisation's guarantee (1 + float32 rounding) bounds the current kernels.
    guaranteed = float(certify.body_bound_fn(model, mode="constraint")())
    assert body.value <= guaranteed <= 1.0 + 3e-5


def test_gradient_reaches_the_raw_kernel():
    layer = OrthonormalDense(3)
    x = tf.constant(np.random.default_rng(3).normal(size=(5, 4)).astype("float32"))
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(layer(x)[:, 0])
    grad = tape.gradient(loss, layer.kernel)
    assert grad is not None and float(tf.norm(grad)) > 0


def test_keras_file_round_trip(tmp_path):
    model = keras.Sequential([
        keras.Input((6, 6, 2)), OrthonormalConv2D(4, 3, padding="same", iterations=10),
        keras.layers.Flatten(), OrthonormalDense(4, iterations=12)])
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    x = np.random.default_rng(4).normal(size=(2, 6, 6, 2)).astype("float32")
    np.testing.assert_allclose(loaded(x).numpy(), model(x).numpy(), rtol=1e-6, atol=1e-6)
    assert [l.iterations for l in loaded.layers if hasattr(l, "iterations")] == [10, 12]


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="kernel_constraint"):
        OrthonormalDense(3, kernel_constraint=keras.constraints.MaxNorm(1.0))
    with pytest.raises(ValueError, match="strides"):
        OrthonormalConv2D(3, 3, strides=2)
    with pytest.raises(ValueError, match="iterations"):
        OrthonormalDense(3, iterations=-1)
    with pytest.raises(ValueError, match="spatial"):
        OrthonormalConv2D(3, 3)(keras.Input((None, None, 2)))
