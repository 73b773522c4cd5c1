"""Dopri5's default gradient (recorded steps, recomputed one at a time).

y' = -c t y has y(t) = y(t0) exp(-c (t^2 - t0^2) / 2), so the gradients in
the initial state, a closed-over tensor c, a variable, and both end times are
known in closed form; they are checked in eager mode, in a graph and under XLA.
"""

import numpy as np
import pytest
import tensorflow as tf

from contractive_keras import solvers

Y0 = np.array([[1.0, -0.5], [0.3, 2.0]])
T0, T1, TIMES = 0.3, 2.0, [1.1, 2.0]


def _losses_and_gradients(t0, t1, y0, scale, weight, gradient="backprop"):
    with tf.GradientTape() as tape:
        tape.watch([t0, t1, y0])
        c = scale * weight          # a tensor the field closes over (not a variable)

        def field(t, y):
            return -c * t * y

        solution = solvers.solve(field, y0, t1, t0=t0, method=solvers.Dopri5(max_steps=300),
                                 rtol=1e-10, atol=1e-10, gradient=gradient,
                                 times=tf.stack([tf.constant(TIMES[0], tf.float64), t1]))
        loss = tf.reduce_sum(solution.ys[0]) + tf.reduce_sum(solution.ys[1] ** 2)
    grads = tape.gradient(loss, [t0, t1, y0, weight])
    return loss, grads, solution.stats


def _expected(c):
    def states(t0, t1, y0, c):
        y_a = y0 * np.exp(-c * (TIMES[0] ** 2 - t0 ** 2) / 2)
        y_b = y0 * np.exp(-c * (t1 ** 2 - t0 ** 2) / 2)
        return y_a, y_b

    y_a, y_b = states(T0, T1, Y0, c)
    # L = sum(y_a) + sum(y_b^2)
    d_t0 = np.sum(y_a * c * T0) + np.sum(2 * y_b ** 2 * c * T0)
    d_t1 = np.sum(2 * y_b ** 2 * (-c * T1))
    d_y0 = np.exp(-c * (TIMES[0] ** 2 - T0 ** 2) / 2) + 2 * y_b * np.exp(
        -c * (T1 ** 2 - T0 ** 2) / 2)
    d_c = (np.sum(y_a * -(TIMES[0] ** 2 - T0 ** 2) / 2)
           + np.sum(2 * y_b ** 2 * -(T1 ** 2 - T0 ** 2) / 2))
    return d_t0, d_t1, d_y0, d_c


@pytest.mark.parametrize("mode", ["eager", "graph", "xla"])
def test_gradients_reach_state_times_closures_and_variables(mode):
    scale = tf.constant(0.5, tf.float64)
    weight = tf.Variable(1.6, dtype=tf.float64)
    run = _losses_and_gradients
    if mode != "eager":
        run = tf.function(run, jit_compile=mode == "xla")
    _, grads, stats = run(tf.constant(T0, tf.float64), tf.constant(T1, tf.float64),
                          tf.constant(Y0), scale, weight)
    d_t0, d_t1, d_y0, d_c = _expected(0.8)
    np.testing.assert_allclose(float(grads[0]), d_t0, rtol=1e-6)
    np.testing.assert_allclose(float(grads[1]), d_t1, rtol=1e-6)
    np.testing.assert_allclose(grads[2].numpy(), d_y0, rtol=1e-6)
    np.testing.assert_allclose(float(grads[3]), d_c * 0.5, rtol=1e-6)
    # Each accepted step is recomputed (6 stages, not the FSAL one) once.
    assert int(stats["num_fn_evals_backward"]) == 6 * int(stats["num_accepted"])
    assert int(stats["num_vjp_evals_backward"]) == 6 * int(stats["num_accepted"])


def test_gradient_equals_backpropagation_through_the_loop_with_rejected_steps():
    # A field that changes fast forces rejected steps; the recorded-step
    # gradient must equal the gradient through the loop's operations.
    weights = tf.Variable([[0.0, 3.0], [-3.0, -0.2]], dtype=tf.float64)
    shift = tf.constant([0.4, -0.1], tf.float64) * 2.0

    def field(t, y):
        return tf.tanh(tf.matmul(y, weights) * (1.0 + 5.0 * tf.sin(4.0 * t)) + shift)

    y0 = tf.constant(Y0)
    method = solvers.Dopri5(max_steps=400)

    with tf.GradientTape() as tape:
        tape.watch(y0)
        solution = solvers.solve(field, y0, 3.0, method=method, rtol=1e-6, atol=1e-6)
        loss = tf.reduce_sum(tf.sin(solution.ys))
    recorded = tape.gradient(loss, [y0, weights])
    assert int(solution.stats["num_rejected"]) > 0

    def untraceable(t, y):  # float(t) cannot be traced: falls back to the loop's gradient
        assert float(t) >= 0.0
        return field(t, y)

    with tf.GradientTape() as tape:
        tape.watch(y0)
        through_loop = solvers.solve(untraceable, y0, 3.0, method=method, rtol=1e-6,
                                     atol=1e-6)
        loss = tf.reduce_sum(tf.sin(through_loop.ys))
    expected = tape.gradient(loss, [y0, weights])
    assert int(through_loop.stats["num_fn_evals_backward"]) == -1
    np.testing.assert_array_equal(through_loop.ys.numpy(), solution.ys.numpy())
    for got, want in zip(recorded, expected):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-9, atol=1e-12)


def test_forward_only_calls_do_not_record_steps():
    solution = tf.function(lambda y: solvers.solve(
        lambda t, y: -y, y, 1.0, method=solvers.Dopri5()))(tf.constant(Y0))
    assert int(solution.stats["num_fn_evals_backward"]) == -1
