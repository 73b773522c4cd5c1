"""Adapters for tfp's DormandPrince and BDF: accuracy, gradients, errors."""

import numpy as np
import pytest
import scipy.linalg
import tensorflow as tf
import tensorflow_probability as tfp

from contractive_keras import solvers
from tests.solvers import oracles

_COTANGENT = np.array([[0.7, -0.2, 1.1], [-0.4, 0.9, 0.3]])


@pytest.mark.parametrize("method", ["tfp_dopri5", "bdf"])
def test_adaptive_solution_is_within_tolerance_of_the_exact_one(method):
    y0 = tf.constant(oracles.LINEAR_Y0)
    exact = oracles.linear_exact(2.0)
    errors = []
    for tolerance in (1e-5, 1e-8):
        # In a tf.function: tfp's BDF is slow op by op (Jacobians by pfor).
        y1 = tf.function(lambda y: solvers.odeint(
            oracles.linear_field(), y, 2.0, method=method, rtol=tolerance,
            atol=tolerance))(y0)
        error = np.abs(y1.numpy() - exact)
        # Global error within a small multiple of the local tolerance.
        assert np.all(error <= 20 * tolerance * (1 + np.abs(exact))), error
        errors.append(np.max(error))
    assert errors[1] < errors[0] / 50


def test_bdf_solves_a_stiff_problem():
    # y' = -1000 (y - cos t): explicit steps would need h < 2e-3.
    def fn(t, y):
        return -1000.0 * (y - tf.cos(t))

    solution = tf.function(lambda y: solvers.solve(
        fn, y, 1.0, method="bdf", rtol=1e-6, atol=1e-8))(
            tf.constant([0.0], tf.float64))
    # Exact: y = (1000^2 cos t + 1000 sin t)/(1000^2+1) + C exp(-1000 t).
    t = 1.0
    exact = (1e6 * np.cos(t) + 1e3 * np.sin(t)) / (1e6 + 1)
    np.testing.assert_allclose(solution.ys.numpy(), [exact], rtol=1e-5)
    assert int(solution.stats["num_fn_evals"]) < 2000


@pytest.mark.parametrize("gradient", ["adjoint", "backprop"])
def test_dopri5_gradients_match_the_exact_sensitivities(gradient):
    # y' = y W, y(T) = y0 expm(W T); the exact gradient of
    # L = sum(c * y(T)) in W comes from central differences of expm.
    matrix = oracles.LINEAR_MATRIX.T
    weights = tf.Variable(matrix)
    y0 = tf.constant(oracles.LINEAR_Y0)
    t1 = 1.5
    with tf.GradientTape() as tape:
        tape.watch(y0)
        y1 = solvers.odeint(lambda t, y: tf.matmul(y, weights), y0, t1,
                            method="tfp_dopri5", rtol=1e-9, atol=1e-9,
                            gradient=gradient)
        loss = tf.reduce_sum(y1 * _COTANGENT)
    grad_y0, grad_weights = tape.gradient(loss, [y0, weights])

    def exact_loss(w):
        return np.sum(oracles.LINEAR_Y0 @ scipy.linalg.expm(w * t1)
                      * _COTANGENT)

    expected_weights = np.zeros_like(matrix)
    eps = 1e-6
    for index in np.ndindex(matrix.shape):
        plus, minus = matrix.copy(), matrix.copy()
        plus[index] += eps
        minus[index] -= eps
        expected_weights[index] = (exact_loss(plus) - exact_loss(minus)) / (
            2 * eps)
    expected_y0 = _COTANGENT @ scipy.linalg.expm(matrix * t1).T
    np.testing.assert_allclose(grad_y0.numpy(), expected_y0, atol=1e-6)
    np.testing.assert_allclose(grad_weights.numpy(), expected_weights,
                               atol=1e-6)


def test_output_times_and_statistics_of_dopri5():
    calls = []

    def fn(t, y):
        calls.append(float(t))
        return -y

    times = [0.25, 1.0, 2.0]
    solution = solvers.solve(fn, tf.constant([1.0], tf.float64), 2.0,
                             method="tfp_dopri5", times=times)
    np.testing.assert_allclose(solution.ys[:, 0].numpy(), np.exp(-np.array(
        times)), rtol=1e-5)
    np.testing.assert_allclose(solution.ts.numpy(), times)
    assert int(solution.stats["num_fn_evals"]) == len(calls)
    assert int(solution.stats["num_steps"]) * 6 + 1 == len(calls)


def test_tfp_solver_instances_keep_their_own_settings():
    solver = tfp.math.ode.DormandPrince(rtol=1e-3, atol=1e-3)
    assert solvers.get(solver) is solver
    loose = solvers.solve(lambda t, y: -y, tf.constant([1.0], tf.float64),
                          3.0, method=solver)
    tight = solvers.solve(lambda t, y: -y, tf.constant([1.0], tf.float64),
                          3.0, method="tfp_dopri5", rtol=1e-9, atol=1e-9)
    assert int(loose.stats["num_fn_evals"]) < int(tight.stats["num_fn_evals"])


@pytest.mark.parametrize("kwargs, message", [
    (dict(with_step_index=True), "with_step_index=True needs a fixed-step"),
    (dict(steps=10), "steps/step_size apply to fixed-step methods"),
    (dict(gradient="checkpoint"), "gradient='checkpoint' is for fixed-step"),
    (dict(rtol=0.0), "rtol must be > 0"),
])
def test_adaptive_methods_reject_fixed_step_options(kwargs, message):
    with pytest.raises(ValueError, match=message):
        solvers.odeint(lambda t, y: -y, tf.ones([2]), 1.0, method="tfp_dopri5",
                       **kwargs)
