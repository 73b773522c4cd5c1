"""CHNODE with a convolutional K (kernel_size): spatial mixing inside the ODE block."""

import itertools

import keras
import numpy as np
import pytest
import tensorflow as tf

from contractive_keras import certify
from contractive_keras.bounds.operator_norms import conv_operator_norm
from contractive_keras.layers import CHNODE, StepwiseIdentity
from contractive_keras.solvers import SolverSpec


def dense_operator(fn, shape):
    """The matrix of a linear map on tensors of ``shape`` (float64)."""
    size = int(np.prod(shape))
    columns = [np.asarray(fn(tf.reshape(tf.one_hot(i, size, dtype=tf.float64), shape)))
               .ravel() for i in range(size)]
    return np.stack(columns, axis=1)


def make_layer(**kwargs):
    arguments = dict(solver=SolverSpec("euler", steps=2, step_size=0.05), kernel_size=3,
                     gamma=2.0, eps=0.3, kappa=0.05,
                     dissipation_initializer=StepwiseIdentity(0.3), discrete_check="ignore",
                     dtype="float64",
                     kernel_initializer=keras.initializers.RandomNormal(stddev=0.3))
    arguments.update(kwargs)
    layer = CHNODE(**arguments)
    layer.build((None, 4, 5, 4))
    return layer


def test_one_euler_step_is_the_dense_formula_with_the_adjoint_convolution():
    keras.utils.set_random_seed(0)
    layer = make_layer(solver=SolverSpec("euler", steps=1, step_size=0.05),
                       bias_initializer=keras.initializers.RandomNormal(stddev=0.5))
    K, b, L, gamma = (np.asarray(w, np.float64) for w in layer.effective_weights())
    conv = dense_operator(lambda x: tf.nn.conv2d(x, K[0], 1, "SAME"), (1, 4, 5, 4))
    pixels = 4 * 5
    A = np.kron(np.eye(pixels), layer.J_matrix - float(gamma) * np.eye(4))
    M = np.kron(np.eye(pixels), L[0].T @ L[0] + layer.kappa * np.eye(4))
    bias = np.tile(b[0], pixels)
    x = np.random.default_rng(1).standard_normal((1, 4, 5, 4))
    xi = x.ravel()
    expected = xi + 0.05 * A @ (conv.T @ np.tanh(conv @ xi + bias) + M @ xi)
    np.testing.assert_allclose(np.asarray(layer(x)).ravel(), expected, rtol=1e-10, atol=1e-12)


def test_theorem1_constants_use_the_convolutions_operator_norm():
    layer = make_layer()
    c = layer.theorem1_constants()
    K = np.asarray(layer.K, np.float64)
    norms = [conv_operator_norm(K[k], (4, 5)) for k in range(2)]
    true = [np.linalg.norm(dense_operator(lambda x, k=k: tf.nn.conv2d(x, K[k], 1, "SAME"),
                                          (1, 4, 5, 4)), 2) for k in range(2)]
    assert all(t <= n * (1 + 1e-9) for t, n in zip(true, norms))
    assert c["c2"] >= 0.05 + 0.09 + max(norms) ** 2 * (1 - 1e-9)
    assert c["gamma"] >= c["gamma_min"]


def test_certified_step_makes_every_step_non_expansive():
    """Below Theorem 1's worst-case step, no pair of states moves apart."""
    keras.utils.set_random_seed(2)
    probe = make_layer()
    h = 0.9 * certify.layer_certificate(probe).details["worst_case_max_step_size"]
    layer = make_layer(solver=SolverSpec("euler", steps=2, step_size=h))
    layer.set_weights(probe.get_weights())
    cert = certify.layer_certificate(layer)
    assert cert.value <= 1.0 and cert.details["how"] == "theorem 1 worst case"
    x = tf.constant(np.random.default_rng(3).standard_normal((8, 4, 5, 4)) * 2)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x)
    jac = tape.batch_jacobian(y, x).numpy().reshape(8, 80, 80)
    assert np.linalg.norm(jac, 2, axis=(1, 2)).max() <= 1.0 + 1e-9


def test_gamma_projection_keeps_the_operator_norm_inside_the_budget_through_fit():
    keras.utils.set_random_seed(4)
    layer = make_layer(dtype="float32",
                       kernel_initializer=keras.initializers.RandomNormal(stddev=2.0))
    model = keras.Sequential([keras.Input((4, 5, 4)), layer, keras.layers.Flatten(),
                              keras.layers.Dense(3)])
    model.compile(keras.optimizers.Adam(0.1),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = np.random.default_rng(5).standard_normal((64, 4, 5, 4)).astype("float32")
    model.fit(x, np.arange(64) % 3, epochs=2, batch_size=16, verbose=0)
    constraint = layer.K.constraint
    K = np.asarray(layer.K, np.float64)
    for k in range(2):
        assert conv_operator_norm(K[k], (4, 5)) <= constraint.max_norms[k] * (1 + 1e-9)
    c = layer.theorem1_constants()
    assert c["gamma"] == 2.0 and c["gamma_min"] <= 2.0


def test_config_round_trip_and_bad_arguments():
    layer = make_layer()
    clone = CHNODE.from_config(layer.get_config())
    clone.build((None, 4, 5, 4))
    clone.set_weights(layer.get_weights())
    x = np.random.default_rng(6).standard_normal((2, 4, 5, 4))
    np.testing.assert_allclose(clone(x), layer(x))
    with pytest.raises(ValueError, match="odd"):
        CHNODE(kernel_size=2)
    with pytest.raises(ValueError, match="feature maps"):
        CHNODE(kernel_size=3, discrete_check="ignore").build((None, 8))
