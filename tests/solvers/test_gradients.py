"""Gradient methods against central finite differences in float64."""

import numpy as np
import pytest
import tensorflow as tf

from contractive_keras import solvers

GRADIENTS = ["backprop", "checkpoint", "adjoint"]


class _MLPField:
    """fn(t, y) = tanh(y W1 + b1 + t) W2: a small vector field with weights."""

    def __init__(self, dim=3, width=5, seed=0):
        rng = np.random.default_rng(seed)
        self.w1 = tf.Variable(rng.normal(size=(dim, width)) * 0.6)
        self.b1 = tf.Variable(rng.normal(size=(width,)) * 0.3)
        self.w2 = tf.Variable(rng.normal(size=(width, dim)) * 0.6)
        self.variables = [self.w1, self.b1, self.w2]

    def __call__(self, t, y):
        return tf.matmul(tf.tanh(tf.matmul(y, self.w1) + self.b1 + t), self.w2)


_Y0 = np.array([[0.4, -1.0, 0.7], [1.2, 0.3, -0.5]])
_PROJECTION = np.array([[0.3, -1.1, 0.8], [0.5, 0.9, -0.2]])


def _loss(field, y0, t1, **options):
    y1 = solvers.odeint(field, y0, t1, **options)
    return tf.reduce_sum(y1 * _PROJECTION) + 0.5 * tf.reduce_sum(y1 ** 2)


def _analytic(field, gradient, t1=1.2, **options):
    y0 = tf.constant(_Y0)
    t1 = tf.constant(t1, tf.float64)
    with tf.GradientTape() as tape:
        tape.watch([y0, t1])
        loss = _loss(field, y0, t1, gradient=gradient, **options)
    grads = tape.gradient(loss, [y0, t1] + field.variables)
    return [g.numpy() for g in grads]


def _central_differences(field, t1=1.2, eps=1e-6, **options):
    """Central differences of the discrete map (float64, eps ~ cbrt(ulp))."""

    def loss_at(y0=_Y0, t_end=t1):
        return float(_loss(field, tf.constant(y0), t_end, **options))

    grads = [np.zeros_like(_Y0), None]
    for index in np.ndindex(_Y0.shape):
        plus, minus = _Y0.copy(), _Y0.copy()
        plus[index] += eps
        minus[index] -= eps
        grads[0][index] = (loss_at(plus) - loss_at(minus)) / (2 * eps)
    grads[1] = np.array((loss_at(t_end=t1 + eps) - loss_at(t_end=t1 - eps))
                        / (2 * eps))
    for variable in field.variables:
        value = variable.numpy()
        grad = np.zeros_like(value)
        for index in np.ndindex(value.shape):
            shifted = value.copy()
            shifted[index] += eps
            variable.assign(shifted)
            up = loss_at()
            shifted[index] -= 2 * eps
            variable.assign(shifted)
            down = loss_at()
            grad[index] = (up - down) / (2 * eps)
        variable.assign(value)
        grads.append(grad)
    return grads


@pytest.fixture(scope="module")
def finite_differences_rk4_12_steps():
    field = _MLPField()
    return field, _central_differences(field, method="rk4", steps=12)


@pytest.mark.parametrize("gradient", ["backprop", "checkpoint"])
@pytest.mark.parametrize("unroll", [True, False])
def test_discrete_gradients_match_central_differences(
        finite_differences_rk4_12_steps, gradient, unroll):
    field, expected = finite_differences_rk4_12_steps
    got = _analytic(field, gradient, method="rk4", steps=12, unroll=unroll)
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, rtol=1e-7, atol=1e-8)


def test_adjoint_gradient_matches_central_differences_to_scheme_accuracy(
        finite_differences_rk4_12_steps):
    # The continuous adjoint differs from the discrete gradient by O(h^4).
    field, expected = finite_differences_rk4_12_steps
    got = _analytic(field, "adjoint", method="rk4", steps=12)
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-5)


def test_adjoint_gradient_error_shrinks_at_the_scheme_order():
    # Against the discrete gradient of a fine solve, the adjoint's error on
    # the weights falls like h^2 for the midpoint rule.
    field = _MLPField(seed=3)
    reference = _analytic(field, "backprop", method="rk4", steps=200)
    errors = []
    for steps in (10, 20, 40):
        got = _analytic(field, "adjoint", method="midpoint", steps=steps)
        errors.append(max(np.max(np.abs(g - r))
                          for g, r in zip(got[2:], reference[2:])))
    orders = np.log2(np.asarray(errors[:-1]) / np.asarray(errors[1:]))
    assert np.all(np.abs(orders - 2) < 0.2), (errors, orders)


@pytest.mark.parametrize("gradient", GRADIENTS)
def test_gradients_with_step_index_and_output_times(gradient):
    rng = np.random.default_rng(7)
    kernels = tf.Variable(rng.normal(size=(4, 3, 3)) * 0.5)

    def fn(t, y, step):
        return tf.tanh(tf.matmul(y, tf.gather(kernels, step)))

    y0 = tf.constant(_Y0)
    weights = tf.constant(rng.normal(size=(3, 2, 3)))

    def loss(kernel_values, method_gradient):
        kernels.assign(kernel_values)
        ys = solvers.odeint(fn, y0, 1.0, method="midpoint", steps=4,
                            with_step_index=True, times=[0.1, 0.5, 1.0],
                            gradient=method_gradient)
        return tf.reduce_sum(ys * weights)

    value = kernels.numpy()
    with tf.GradientTape() as tape:
        result = loss(value, gradient)
    got = tf.convert_to_tensor(tape.gradient(result, kernels)).numpy()
    eps = 1e-6
    expected = np.zeros_like(value)
    for index in np.ndindex(value.shape):
        plus, minus = value.copy(), value.copy()
        plus[index] += eps
        minus[index] -= eps
        expected[index] = (float(loss(plus, "backprop"))
                           - float(loss(minus, "backprop"))) / (2 * eps)
    kernels.assign(value)
    tolerance = 1e-7 if gradient != "adjoint" else 3e-2
    np.testing.assert_allclose(got, expected, rtol=tolerance,
                               atol=tolerance * np.max(np.abs(expected)))


@pytest.mark.parametrize("gradient", GRADIENTS)
def test_gradients_reach_keras_layer_weights(gradient):
    import keras

    hidden = keras.layers.Dense(6, activation="tanh", dtype="float64")
    output = keras.layers.Dense(3, dtype="float64")
    y0 = tf.constant(_Y0)

    def fn(t, y):
        return output(hidden(y))

    fn(0.0, y0)
    variables = hidden.trainable_variables + output.trainable_variables
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(solvers.odeint(fn, y0, 1.0, steps=30,
                                            gradient=gradient) ** 2)
    got = tape.gradient(loss, variables)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(solvers.odeint(fn, y0, 1.0, steps=30) ** 2)
    expected = tape.gradient(loss, variables)
    tolerance = 1e-12 if gradient == "checkpoint" else 1e-6
    for g, e in zip(got, expected):
        assert g is not None
        np.testing.assert_allclose(np.asarray(g), np.asarray(e),
                                   rtol=tolerance, atol=tolerance)


def test_checkpoint_segments_cover_every_step_once():
    checkpoint = solvers.Checkpoint()
    for start, count in [(0, 1), (0, 10), (3, 17), (0, 100)]:
        segments = checkpoint.segments(start, count)
        covered = [k for first, n in segments for k in range(first, first + n)]
        assert covered == list(range(start, start + count))
        assert len(segments) <= int(np.ceil(np.sqrt(count))) + 1
    with pytest.raises(ValueError, match="segment_steps"):
        solvers.Checkpoint(segment_steps=0)


@pytest.mark.parametrize("gradient", GRADIENTS)
def test_gradients_compile_with_xla_and_match_eager(gradient):
    field = _MLPField(seed=5)

    def value_and_gradients(y0):
        with tf.GradientTape() as tape:
            tape.watch(y0)
            loss = _loss(field, y0, 1.0, steps=6, gradient=gradient)
        return [loss] + tape.gradient(loss, [y0] + field.variables)

    y0 = tf.constant(_Y0)
    eager = value_and_gradients(y0)
    compiled = tf.function(value_and_gradients, jit_compile=True)(y0)
    for e, c in zip(eager, compiled):
        np.testing.assert_allclose(c.numpy(), e.numpy(), rtol=1e-10,
                                   atol=1e-12)


@pytest.mark.parametrize("gradient", ["checkpoint", "adjoint"])
def test_nested_states_get_the_same_gradients_as_backprop(gradient):
    weight = tf.Variable(tf.constant([[0.3, -1.2], [0.8, 0.1]], tf.float64))

    def fn(t, state):
        q, p = state
        return (p, -tf.tanh(tf.matmul(q, weight)))

    state0 = (tf.constant([[1.0, 0.5]], tf.float64),
              tf.constant([[0.0, -0.3]], tf.float64))

    def gradients(method):
        with tf.GradientTape() as tape:
            tape.watch(state0)
            q1, p1 = solvers.odeint(fn, state0, 2.0, steps=40,
                                    gradient=method)
            loss = tf.reduce_sum(q1 ** 2) + tf.reduce_sum(p1)
        return tape.gradient(loss, [state0, weight])

    expected = tf.nest.flatten(gradients("backprop"))
    got = tf.nest.flatten(gradients(gradient))
    tolerance = 1e-12 if gradient == "checkpoint" else 1e-5
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g.numpy(), e.numpy(), rtol=tolerance,
                                   atol=tolerance)
