"""NeuralODE: any Keras layer as the field; linear fields against the matrix exponential."""

import keras
import numpy as np
import pytest
import scipy.linalg

from contractive_keras.solvers import SolverSpec
from contractive_keras.layers import NeuralODE


def test_linear_field_matches_the_matrix_exponential():
    A = np.array([[-0.5, 1.0, 0.0], [-1.0, -0.2, 0.3], [0.0, -0.3, -0.1]])
    field = keras.layers.Dense(3, use_bias=False, dtype="float64")
    layer = NeuralODE(SolverSpec("rk4", steps=200, t1=1.5), vector_field=field, dtype="float64")
    x = np.random.default_rng(1).standard_normal((4, 3))
    layer.build(x.shape)
    field.kernel.assign(A.T)                       # row form: y' = y A^T
    expected = x @ scipy.linalg.expm(1.5 * A).T
    np.testing.assert_allclose(layer(x).numpy(), expected, rtol=1e-8, atol=1e-9)


def test_time_input_and_trajectory():
    field = keras.layers.Dense(2, kernel_initializer="zeros", bias_initializer="zeros")
    layer = NeuralODE(SolverSpec("euler", steps=4, t1=1.0), vector_field=field, time_input=True,
                      return_trajectory=True)
    x = np.random.default_rng(2).standard_normal((3, 2)).astype("float32")
    traj = layer(x)
    assert traj.shape == (3, 5, 2)
    # Field t * w with w the last kernel row: y(1) = y0 + w * sum_k h * t_k.
    field.kernel.assign(np.array([[0, 0], [0, 0], [1.0, 2.0]], "float32"))
    traj = layer(x).numpy()
    np.testing.assert_allclose(traj[:, -1], x + np.array([1.0, 2.0]) * 0.25 * (0 + .25 + .5 + .75),
                               rtol=1e-6)


def test_keras_file_round_trip_with_a_model_as_field(tmp_path):
    field = keras.Sequential([keras.Input((3,)), keras.layers.Dense(8, activation="tanh"),
                              keras.layers.Dense(3)])
    inputs = keras.Input((3,))
    model = keras.Model(inputs, NeuralODE(SolverSpec("rk4", steps=5, t1=1.0), vector_field=field)(inputs))
    x = np.random.default_rng(3).standard_normal((4, 3)).astype("float32")
    path = str(tmp_path / "n.keras")
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_array_equal(loaded(x).numpy(), model(x).numpy())


def test_bad_arguments_raise_value_error():
    with pytest.raises(ValueError, match="Keras layer"):
        NeuralODE(vector_field=lambda x: x)
    with pytest.raises(ValueError, match="state shape"):
        NeuralODE(vector_field=keras.layers.Dense(2))(np.zeros((1, 3), "float32"))
    with pytest.raises(ValueError, match="solver"):
        NeuralODE("leapfrog", vector_field=keras.layers.Dense(2))
