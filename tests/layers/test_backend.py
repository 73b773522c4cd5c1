"""The ODE layers on the Keras backend in use (TensorFlow, JAX or PyTorch).

Every ODE layer's output against a NumPy float64 reference of its equations
(tests/layers/numpy_reference.py: the schemes written out, gamma from
Theorem 1 computed in NumPy), per-step weights selected by a Python int
(unrolled loop) or by a traced int32 index (a loop of 40 steps), and the
gradient of CHNODE with respect to its input and weights against finite
differences (with TensorFlow's import blocked off TensorFlow).  Layer
outputs are float32: they agree with the float64 reference to float32
rounding, which these few steps amplify by at most
||d output / d input|| ~ 1, hence rtol = atol = 2e-5.  Under JAX the
forward passes run through ``jax.jit`` (backend_helpers.forward).
"""

import sys

import keras
import numpy as np
import pytest

from contractive_keras import backend
from contractive_keras.layers import CHNODE, HDNN, NeuralODE, ResNetODE, StabilizedNODE
from contractive_keras.layers import StepwiseIdentity
from contractive_keras.solvers import SolverSpec
from tests.layers import numpy_reference as ref
from tests.layers.backend_helpers import forward, inputs, normal, numpy_of

pytestmark = pytest.mark.backends

TOL = dict(rtol=2e-5, atol=2e-5)


def weights(layer):
    return {w.path.split("/")[-1]: numpy_of(w) for w in layer.weights}


@pytest.mark.parametrize("method, steps", [("rk4", 3), ("euler", 40)])
def test_chnode_auto_gamma_matches_the_numpy_equations(method, steps):
    # 40 steps run in a loop with a traced step index on every backend.
    layer = CHNODE(SolverSpec(method, steps=steps, step_size=0.3 / steps), units=6, kappa=0.1,
                   eps=0.05, kernel_initializer=normal(1, 0.2), bias_initializer=normal(2),
                   discrete_check="ignore")
    x = inputs((2, 3, 4))
    out = forward(layer, x)
    w = weights(layer)
    J = ref.canonical_j(4)
    gamma = layer.theorem1_constants()["gamma"]
    # Theorem 1's gamma rounded up: in float64 where the backend keeps it,
    # else with bounds.theorem1's outward float32 margin; never below.
    exact = ref.theorem1_gamma(w["K"], w["L"], 0.1, 1.0, 0.05, J)
    assert exact <= gamma <= exact * (1 + (1e-6 if backend.float64_in_graph() else 1e-4))
    field = ref.chnode_field(w["K"], w["b"], w["L"], 0.1, gamma, J)
    expected = ref.odeint(field, x.reshape(-1, 4).astype(np.float64), method, steps, 0.3 / steps)
    np.testing.assert_allclose(out, expected.reshape(x.shape), **TOL)


def test_chnode_fixed_gamma_trajectory_matches_the_numpy_equations():
    layer = CHNODE(SolverSpec("midpoint", steps=3, step_size=0.2), gamma=2.0, units=6,
                   dissipation_trainable=False, kernel_initializer=normal(3, 0.2),
                   bias_initializer=normal(4), return_trajectory=True, discrete_check="ignore")
    x = inputs((5, 4), 1)
    out = forward(layer, x)
    assert out.shape == (5, 4, 4)
    w = weights(layer)
    field = ref.chnode_field(w["K"], w["b"], w["L"], 1e-6, 2.0, ref.canonical_j(4))
    expected = ref.odeint(field, x.astype(np.float64), "midpoint", 3, 0.2, trajectory=True)
    np.testing.assert_allclose(out, expected, **TOL)


def test_convolutional_chnode_matches_the_numpy_equations_with_the_transposed_matrix():
    """K^T is the adjoint of the 'same' convolution: the reference uses the dense
    matrix of the convolution and its transpose."""
    layer = CHNODE(SolverSpec("euler", steps=2, step_size=0.1), gamma=2.0, kernel_size=3,
                   units=3, kernel_initializer=normal(5, 0.1), bias_initializer=normal(6),
                   discrete_check="ignore")
    x = inputs((2, 4, 5, 4), 2)
    out = forward(layer, x)
    w = weights(layer)
    # After the projection K is inside Theorem 1's set: call scales it by 1,
    # or by 1 - O(1e-6) where a float32-only backend rounds the set inwards.
    K = numpy_of(layer.effective_weights()[0])
    np.testing.assert_allclose(K, w["K"], rtol=0 if backend.float64_in_graph() else 1e-5)
    field = ref.conv_chnode_field(K, w["b"], w["L"], 1e-6, 2.0, ref.canonical_j(4), (4, 5))
    expected = ref.odeint(field, x.astype(np.float64), "euler", 2, 0.1)
    np.testing.assert_allclose(out, expected, **TOL)


def test_conv_transpose_is_the_adjoint_of_conv():
    rng = np.random.default_rng(7)
    kernel = rng.normal(size=(3, 3, 4, 3)).astype("float32")
    y = rng.normal(size=(2, 4, 5, 4)).astype("float32")
    z = rng.normal(size=(2, 4, 5, 3)).astype("float32")
    forward = keras.ops.convert_to_numpy(keras.ops.conv(y, kernel, strides=1, padding="same"))
    back = keras.ops.convert_to_numpy(
        keras.ops.conv_transpose(z, kernel, strides=1, padding="same"))
    np.testing.assert_allclose(np.sum(forward * z), np.sum(y * back), rtol=1e-5)


@pytest.mark.parametrize("steps", [2, 40])
def test_hdnn_matches_the_numpy_equations(steps):
    J = [[0.0, 1.0, 0.0, 0.0], [-1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 2.0],
         [0.0, 0.0, -2.0, 0.0]]
    layer = HDNN(SolverSpec("rk4", steps=steps, t1=0.4), structure_matrix=J, units=5,
                 kernel_initializer=normal(8), bias_initializer=normal(9))
    x = inputs((3, 4), 3)
    out = forward(layer, x)
    w = weights(layer)
    expected = ref.odeint(ref.hdnn_field(w["K"], w["b"], np.asarray(J)), x.astype(np.float64),
                          "rk4", steps, 0.4 / steps)
    np.testing.assert_allclose(out, expected, **TOL)


@pytest.mark.parametrize("time_varying", [True, False])
def test_resnet_ode_matches_the_numpy_equations(time_varying):
    layer = ResNetODE(SolverSpec("euler", steps=3, step_size=0.2), time_varying=time_varying,
                      kernel_initializer=normal(10), bias_initializer=normal(11))
    x = inputs((4, 5), 4)
    out = forward(layer, x)
    w = weights(layer)
    assert w["K"].shape == ((3 if time_varying else 1), 5, 5)
    expected = ref.odeint(ref.resnet_field(w["K"], w["b"]), x.astype(np.float64), "euler", 3, 0.2)
    np.testing.assert_allclose(out, expected, **TOL)


@pytest.mark.parametrize("time_input", [False, True])
def test_neural_ode_matches_the_numpy_equations(time_input):
    dense = keras.layers.Dense(3, activation="tanh", kernel_initializer=normal(12, 0.5),
                               bias_initializer=normal(13))
    layer = NeuralODE(SolverSpec("rk4", steps=4, t1=0.8), vector_field=dense,
                      time_input=time_input)
    x = inputs((2, 3), 5)
    out = forward(layer, x)
    kernel, bias = numpy_of(dense.kernel), numpy_of(dense.bias)

    def field(t, y, k):
        if time_input:
            y = np.concatenate([y, np.full((len(y), 1), t)], -1)
        return np.tanh(y @ kernel + bias)
    expected = ref.odeint(field, x.astype(np.float64), "rk4", 4, 0.2)
    np.testing.assert_allclose(out, expected, **TOL)


@pytest.mark.parametrize("activation", ["leaky_relu", "smooth_leaky_relu"])
def test_stabilized_node_matches_the_numpy_equations(activation):
    layer = StabilizedNODE(SolverSpec("euler", steps=5, t1=0.5), min_slope=0.3, delta_bar=0.1,
                           activation=activation, kernel_initializer=normal(14),
                           bias_initializer=normal(15))
    x = inputs((3, 6), 6)
    out = forward(layer, x)
    A, b = numpy_of(layer.kernel), numpy_of(layer.bias)
    if activation == "leaky_relu":
        sigma = lambda z: ref.leaky_relu(z, 0.3)  # noqa: E731
    else:
        sigma = lambda z: 0.3 * z + 0.7 * (np.logaddexp(z, 0.0) - np.log(2.0))  # noqa: E731
    expected = ref.odeint(lambda t, u, k: sigma(u @ A.T + b), x.astype(np.float64), "euler",
                          5, 0.1)
    np.testing.assert_allclose(out, expected, **TOL)


def test_stepwise_identity_gives_gain_times_identity_in_every_slice():
    value = keras.ops.convert_to_numpy(StepwiseIdentity(0.02)((3, 2, 4)))
    np.testing.assert_array_equal(value, np.broadcast_to(0.02 * np.eye(2, 4), (3, 2, 4)).astype(
        np.float32))


# -- gradients ----------------------------------------------------------------
def loss_and_gradients(layer, x, direction):
    """sum(direction * layer(x)) and its gradient with respect to x and the
    trainable variables (through ``stateless_call``), with the backend's autodiff."""
    trainable = [keras.ops.convert_to_tensor(v) for v in layer.trainable_variables]
    fixed = [keras.ops.convert_to_tensor(v) for v in layer.non_trainable_variables]
    direction = keras.ops.convert_to_tensor(direction, layer.compute_dtype)

    def loss(x, trainable):
        out, _ = layer.stateless_call(trainable, fixed, x)
        return keras.ops.sum(out * direction)

    x = keras.ops.convert_to_tensor(x, layer.compute_dtype)
    name = backend.name()
    if name == "jax":
        import jax
        value, (gx, gw) = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))(x, trainable)
        grads = [gx] + list(gw)
        loss = jax.jit(loss)
    elif name == "torch":
        import torch
        args = [t.detach().clone().requires_grad_(True) for t in [x] + trainable]
        value = loss(args[0], args[1:])
        grads = torch.autograd.grad(value, args)
    else:
        import tensorflow as tf
        args = [tf.identity(t) for t in [x] + trainable]
        with tf.GradientTape() as tape:
            tape.watch(args)
            value = loss(args[0], args[1:])
        grads = tape.gradient(value, args)
    return float(value), [numpy_of(g) for g in grads], loss, [x] + trainable


def test_chnode_gradients_match_finite_differences(monkeypatch, steps=40):
    """Fixed gamma, K inside Theorem 1's set (kappa = 0.1 leaves room): the
    layer is a smooth function of x, K and b; 40 steps: the per-step weights
    are taken by a traced step index inside the solver's loop.  Off
    TensorFlow, this runs with TensorFlow's import blocked.  Central
    differences in float64 where the backend keeps it (h = 1e-6), else
    float32 (JAX without x64: h = 1e-2, rtol 1e-2)."""
    if not backend.is_tensorflow():      # off TensorFlow nothing here imports it
        for name in ("tensorflow", "tensorflow_probability"):
            monkeypatch.setitem(sys.modules, name, None)
    wide = backend.float64_in_graph()
    layer = CHNODE(SolverSpec("rk4", steps=steps, step_size=0.6 / steps), gamma=2.0, units=6,
                   kappa=0.1, kernel_initializer=normal(16, 0.2), bias_initializer=normal(17),
                   discrete_check="ignore", dtype="float64" if wide else "float32")
    x = inputs((3, 4), 8)
    layer.build(x.shape)
    direction = inputs((3, 4), 9)
    value, grads, loss, args = loss_and_gradients(layer, x, direction)
    assert [g.shape for g in grads] == [(3, 4), (steps, 6, 4), (steps, 6)]
    h, rtol = (1e-6, 1e-6) if wide else (1e-2, 1e-2)
    rng = np.random.default_rng(10)
    for i, (arg, grad) in enumerate(zip(args, grads)):
        assert np.any(grad != 0.0)
        v = rng.normal(size=grad.shape)
        base = [numpy_of(a) for a in args]

        def at(sign, i=i, v=v, base=base):
            moved = [keras.ops.convert_to_tensor(a + (sign * h * v if j == i else 0.0),
                                                 layer.compute_dtype) for j, a in enumerate(base)]
            return float(keras.ops.convert_to_numpy(loss(moved[0], moved[1:])))
        numeric = (at(1.0) - at(-1.0)) / (2 * h)
        np.testing.assert_allclose(np.sum(grad * v), numeric, rtol=rtol, atol=rtol)
    layer.jacobian_structure()    # the description reads the weights without TensorFlow
