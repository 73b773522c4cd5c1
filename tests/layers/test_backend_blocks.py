"""The 1-Lipschitz blocks, the activations, configs and .keras files on the
Keras backend in use (TensorFlow, JAX or PyTorch).

NumPy references for GroupSort, L2NormPooling2D, OrthonormalDense and
OrthonormalConv2D (the applied kernels orthonormal / of operator norm 1 in
float64); every layer's get_config / from_config round trip, and a .keras
file saved and loaded on this backend gives the same outputs; a float64
layer stays float64 wherever the backend keeps float64.
"""

import keras
import numpy as np
import pytest

from contractive_keras import backend
from contractive_keras import saving
from contractive_keras.layers import CHNODE, HDNN, GroupSort, L2NormPooling2D, NeuralODE
from contractive_keras.layers import OrthonormalConv2D, OrthonormalDense, ResNetODE
from contractive_keras.layers import StabilizedNODE, activations
from contractive_keras.solvers import SolverSpec
from tests.layers import numpy_reference as ref
from tests.layers.backend_helpers import forward, inputs, numpy_of

pytestmark = pytest.mark.backends


@pytest.mark.parametrize("group_size", [2, 3])
def test_group_sort_sorts_each_group(group_size):
    x = inputs((4, 6), 1)
    out = numpy_of(GroupSort(group_size)(x))
    expected = np.sort(x.reshape(4, -1, group_size), -1).reshape(4, 6)
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("padding", ["valid", "same"])
def test_l2_norm_pooling_is_the_norm_of_each_window(padding):
    x = inputs((2, 5, 4, 3), 2)
    out = numpy_of(L2NormPooling2D(2, padding=padding)(x))
    padded = np.pad(x, ((0, 0), (0, 1), (0, 0), (0, 0))) if padding == "same" else x[:, :4]
    windows = padded.astype(np.float64).reshape(2, padded.shape[1] // 2, 2, 2, 2, 3)
    expected = np.sqrt(np.sum(windows ** 2, axis=(2, 4)) + 1e-12)
    np.testing.assert_allclose(out, expected, rtol=1e-6)


def test_orthonormal_dense_applies_an_orthonormal_kernel():
    layer = OrthonormalDense(3, bias_initializer="ones")
    x = inputs((5, 6), 3)
    out = forward(layer, x)
    W = numpy_of(layer.applied_kernel())
    np.testing.assert_allclose(W.T @ W, np.eye(3), atol=1e-5)
    np.testing.assert_allclose(out, x @ W + 1.0, rtol=1e-5, atol=1e-5)


def test_orthonormal_conv2d_applies_a_kernel_of_operator_norm_one():
    layer = OrthonormalConv2D(3, 3, padding="same")
    x = inputs((2, 6, 5, 2), 4)
    out = forward(layer, x)
    kernel = numpy_of(layer.applied_kernel())
    # The circulant bound normalises; the zero-padded operator is at most 1.
    norm = np.linalg.norm(ref.conv_matrix(kernel, (6, 5)), 2)
    assert 0.5 < norm <= 1.0 + 1e-5
    expected = ref.conv_same(x.astype(np.float64), kernel) + numpy_of(layer.bias)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


def test_activations_have_their_slopes_on_this_backend():
    x = np.array([-2.0, -0.5, 0.0, 1.5])
    leaky = activations.get("leaky_relu", negative_slope=0.3)
    np.testing.assert_allclose(numpy_of(leaky(keras.ops.convert_to_tensor(x, "float32"))),
                               np.maximum(x, 0.3 * x), rtol=1e-7)
    smooth = activations.get("smooth_leaky_relu", negative_slope=0.3)
    np.testing.assert_allclose(numpy_of(smooth(keras.ops.convert_to_tensor(x, "float32"))),
                               0.3 * x + 0.7 * (np.logaddexp(x, 0.0) - np.log(2.0)), atol=1e-6)
    tanh = keras.activations.tanh
    assert activations.get(tanh, (0.0, 1.0), check=True).slopes == (0.0, 1.0)
    with pytest.raises(ValueError, match="secant slopes"):
        activations.get(tanh, (0.5, 1.0), check=True)


def every_layer(normal):
    """One layer of each class of the package, with non-default settings."""
    return {
        "chnode_conv": CHNODE(SolverSpec("euler", steps=2, step_size=0.1), gamma=2.0,
                              kernel_size=3, kernel_initializer=normal, discrete_check="ignore"),
        "orthonormal_conv": OrthonormalConv2D(4, 3, padding="same"),
        "pool": L2NormPooling2D(2),
        "orthonormal_dense": OrthonormalDense(4),
        "group_sort": GroupSort(2),
        "chnode": CHNODE(SolverSpec("midpoint", steps=3, step_size=0.1), kappa=0.2, eps=0.1,
                         units=6, kernel_initializer=normal, bias_initializer="ones",
                         dissipation_trainable=True, discrete_check="ignore"),
        "hdnn": HDNN(SolverSpec("rk4", steps=2, t1=0.4), units=5, kernel_initializer=normal),
        "resnet": ResNetODE(SolverSpec("euler", steps=3, step_size=0.2), time_varying=False,
                            kernel_initializer=normal),
        "node": NeuralODE(SolverSpec("euler", steps=4, t1=0.8),
                          vector_field=keras.layers.Dense(4, activation="tanh")),
        "stabilized": StabilizedNODE(SolverSpec("rk4", steps=5, t1=0.5), min_slope=0.3,
                                     delta_bar=0.1, kernel_initializer=normal),
    }


def test_every_layer_round_trips_through_its_config_and_a_keras_file(tmp_path):
    """get_config / from_config give the same config; a .keras file of a model
    holding every layer, saved and loaded on this backend, computes the same."""
    layers = every_layer(keras.initializers.RandomNormal(stddev=0.2, seed=4))
    for name, layer in layers.items():
        config = layer.get_config()
        assert layer.__class__.from_config(config).get_config() == config, name
    # The convolutional layers' outputs are checked against NumPy above and
    # in test_backend.py; the model keeps to vectors (one XLA compilation
    # less costly under JAX).
    x = keras.Input((6,))
    h = layers["group_sort"](layers["orthonormal_dense"](x))
    for name in ("chnode", "hdnn", "resnet", "node", "stabilized"):
        h = layers[name](h)
    model = keras.Model(x, keras.layers.Dense(3)(h))
    batch = inputs((2, 6), 6)
    expected = forward(model, batch)
    model.save(str(tmp_path / "m.keras"))
    loaded = saving.load_keras_file(str(tmp_path / "m.keras"))
    np.testing.assert_array_equal(forward(loaded, batch), expected)


@pytest.mark.skipif(not backend.float64_in_graph(), reason="float64 is float32 here")
def test_a_float64_layer_computes_in_float64():
    """(Keras's matmul, maximum and minimum return float32 for float64 on
    PyTorch: layers.dispatch keeps float64.)"""
    layers = every_layer(keras.initializers.RandomNormal(stddev=0.2, seed=4))
    model = keras.Sequential([keras.Input((4,), dtype="float64")] + [
        layers[name].__class__.from_config(dict(layers[name].get_config(), dtype="float64"))
        for name in ("orthonormal_dense", "group_sort", "chnode", "hdnn", "resnet",
                     "stabilized")])
    out = model(inputs((3, 4), 7).astype(np.float64))
    assert keras.backend.standardize_dtype(out.dtype) == "float64"
