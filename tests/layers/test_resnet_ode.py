"""ResNetODE: residual steps, Jacobian structure, serialization."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from contractive_keras.solvers import SolverSpec
from contractive_keras.layers import ResNetODE


def test_euler_steps_are_residual_blocks():
    layer = ResNetODE(SolverSpec("euler", steps=3, step_size=0.5), dtype="float64",
                      kernel_initializer=keras.initializers.RandomNormal(stddev=0.7),
                      bias_initializer=keras.initializers.RandomNormal(stddev=0.5))
    x = np.random.default_rng(1).standard_normal((5, 3))
    out = layer(x).numpy()
    K, b = layer.K.numpy(), layer.b.numpy()
    y = x.copy()
    for k in range(3):
        y = y + 0.5 * np.tanh(y @ K[k] + b[k])      # xi + h sigma(K^T xi + b), row form
    np.testing.assert_allclose(out, y, rtol=1e-12, atol=1e-12)


def test_jacobian_structure_reproduces_the_autodiff_jacobian_of_the_field():
    layer = ResNetODE(SolverSpec("euler", steps=2, step_size=0.5), dtype="float64",
                      kernel_initializer=keras.initializers.RandomNormal(stddev=0.7))
    layer.build((None, 3))
    structure = layer.jacobian_structure()
    A0, U, V, S = structure.offset, structure.left, structure.right, structure.slopes[1]
    xi = tf.constant(np.random.default_rng(2).standard_normal((3, 1)))
    with tf.GradientTape() as tape:
        tape.watch(xi)
        f = layer.field_closure()(0.0, xi, 0)
    jac = tape.jacobian(f, xi).numpy().reshape(3, 3)
    s = 1 - np.tanh(layer.K.numpy()[0].T @ xi.numpy()[:, 0] + layer.b.numpy()[0]) ** 2
    np.testing.assert_allclose(jac, A0[0] + U[0] @ np.diag(s) @ V[0].T, rtol=1e-10, atol=1e-12)


def test_odd_state_sizes_feature_maps_and_keras_round_trip(tmp_path):
    maps = np.random.default_rng(3).standard_normal((2, 4, 4, 5)).astype("float32")
    inputs = keras.Input((4, 4, 5))
    model = keras.Model(inputs, ResNetODE(SolverSpec("rk4", steps=2, step_size=0.5))(inputs))
    expected = model(maps).numpy()
    path = str(tmp_path / "r.keras")
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_array_equal(loaded(maps).numpy(), expected)
    layer = model.layers[-1]
    assert ResNetODE.from_config(layer.get_config()).get_config() == layer.get_config()


def test_bad_arguments_raise_value_error():
    with pytest.raises(ValueError, match="no known slope bound"):
        ResNetODE(activation="gelu")
    with pytest.raises(ValueError, match="time_varying=False"):
        ResNetODE(solver="bdf")
