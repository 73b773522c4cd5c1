"""HDNN: the H_1-DNN field, its Jacobian structure, serialization."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from contractive_keras.solvers import SolverSpec
from contractive_keras.layers import HDNN


def canonical_J(n):
    half = n // 2
    eye, zero = np.eye(half), np.zeros((half, half))
    return np.block([[zero, eye], [-eye, zero]])


def test_euler_steps_match_the_formula():
    layer = HDNN(SolverSpec("euler", steps=3, step_size=0.1), dtype="float64",
                 kernel_initializer=keras.initializers.RandomNormal(stddev=0.7),
                 bias_initializer=keras.initializers.RandomNormal(stddev=0.5))
    x = np.random.default_rng(1).standard_normal((5, 4))
    out = layer(x).numpy()
    K, b = layer.K.numpy(), layer.b.numpy()
    J = canonical_J(4)
    y = x.copy()
    for k in range(3):
        y = y + 0.1 * np.stack([J @ K[k].T @ np.tanh(K[k] @ v + b[k]) for v in y])
    np.testing.assert_allclose(out, y, rtol=1e-12, atol=1e-12)


def test_jacobian_structure_reproduces_the_autodiff_jacobian_of_the_field():
    layer = HDNN(SolverSpec("euler", steps=2, step_size=0.5), dtype="float64", units=6,
                 kernel_initializer=keras.initializers.RandomNormal(stddev=0.7))
    layer.build((None, 4))
    structure = layer.jacobian_structure()
    A0, U, V, S = structure.offset, structure.left, structure.right, structure.slopes[1]
    field = layer.field_closure()
    xi = tf.constant(np.random.default_rng(2).standard_normal((4, 1)))
    with tf.GradientTape() as tape:
        tape.watch(xi)
        f = field(0.0, xi, 1)
    jac = tape.jacobian(f, xi).numpy().reshape(4, 4)
    s = 1 - np.tanh(layer.K.numpy()[1] @ xi.numpy()[:, 0] + layer.b.numpy()[1]) ** 2
    np.testing.assert_allclose(jac, A0[1] + U[1] @ np.diag(s) @ V[1].T, rtol=1e-10, atol=1e-12)
    assert S == 1.0


def test_feature_maps_trajectory_and_config_round_trip(tmp_path):
    layer = HDNN(SolverSpec("euler", steps=2, step_size=0.2), return_trajectory=True,
                 time_varying=False, kernel_regularizer=keras.regularizers.L2(1e-3))
    maps = np.random.default_rng(3).standard_normal((2, 3, 3, 4)).astype("float32")
    traj = layer(maps)
    assert traj.shape == (2, 3, 3, 3, 4)
    np.testing.assert_array_equal(traj[:, 0], maps)
    assert layer.K.shape == (1, 4, 4)
    clone = HDNN.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    inputs = keras.Input((3, 3, 4))
    model = keras.Model(inputs, HDNN(SolverSpec("euler", steps=2, step_size=0.5))(inputs))
    path = str(tmp_path / "h.keras")
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_array_equal(loaded(maps).numpy(), model(maps).numpy())


def test_bad_arguments_raise_value_error():
    with pytest.raises(ValueError, match="even state size"):
        HDNN()(np.zeros((1, 3), "float32"))
    with pytest.raises(ValueError, match="skew-symmetric"):
        HDNN(structure_matrix=np.eye(2))
    with pytest.raises(ValueError, match="no known slope bound"):
        HDNN(activation="swish")
