"""This package's Dormand-Prince pair and its adaptive loop."""

import numpy as np
import pytest
import tensorflow as tf

from contractive_keras import solvers
from contractive_keras.solvers.step_size_control import IController
from tests.solvers import oracles


def test_dopri5_tableau_has_orders_five_and_four():
    # Order conditions on a linear problem: one step multiplies y by a
    # polynomial R(z) equal to exp(z) up to z^5 (z^4 for the embedded one).
    scheme = solvers.Dopri5()
    for h in (0.1, 0.05):
        y1, _, error = scheme.step_with_error(
            lambda t, y: y, tf.constant(0.0, tf.float64),
            tf.constant(1.0, tf.float64), tf.constant(h, tf.float64),
            tf.constant(1.0, tf.float64))
        # R(h) - exp(h) = O(h^6), error estimate = O(h^5).
        assert abs(float(y1) - np.exp(h)) < 2e-3 * h ** 6
        assert 1e-4 * h ** 5 < abs(float(error)) < 1e-2 * h ** 5


def test_solution_is_within_tolerance_and_statistics_count_every_call():
    calls = []
    field = oracles.linear_field()

    def fn(t, y):
        calls.append(1)
        return field(t, y)

    exact = oracles.linear_exact(2.0)
    errors = []
    for tolerance in (1e-5, 1e-9):
        calls.clear()
        solution = solvers.solve(fn, tf.constant(oracles.LINEAR_Y0), 2.0,
                                 method=solvers.Dopri5(), rtol=tolerance,
                                 atol=tolerance)
        error = np.abs(solution.ys.numpy() - exact)
        assert np.all(error <= 20 * tolerance * (1 + np.abs(exact))), error
        errors.append(np.max(error))
        stats = {k: int(v) for k, v in solution.stats.items()}
        assert stats["num_fn_evals"] == len(calls)
        assert stats["num_accepted"] + stats["num_rejected"] == stats[
            "num_steps"]
    assert errors[1] < errors[0] / 1000


def test_rejected_steps_are_counted_and_recovered_from():
    # A sharp pulse near t = 1 forces rejections after large steps.
    from scipy.special import erf

    def fn(t, y):
        return -y + 50.0 * tf.exp(-400.0 * (t - 1.0) ** 2)

    solution = solvers.solve(fn, tf.constant([0.0], tf.float64), 3.0,
                             method=solvers.Dopri5(), rtol=1e-7, atol=1e-9)
    assert int(solution.stats["num_rejected"]) > 0
    # y(3) = 50 e^-3 int_0^3 e^s e^(-400 (s-1)^2) ds, by completing the square.
    shift = 1.0 + 1.0 / 800.0
    exact = 50.0 * np.exp(-3.0 + 1.0 + 1.0 / 1600.0) * np.sqrt(np.pi) / 40.0 * (
        erf(20.0 * (3.0 - shift)) - erf(20.0 * (0.0 - shift)))
    np.testing.assert_allclose(solution.ys.numpy(), [exact], rtol=1e-6)


def test_output_times_are_hit_exactly_and_include_t0():
    times = [0.0, 0.3, 1.7, 2.0]
    solution = solvers.solve(lambda t, y: -y, tf.constant([2.0], tf.float64),
                             2.0, method=solvers.Dopri5(), times=times,
                             rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(solution.ys[:, 0].numpy(),
                               2.0 * np.exp(-np.array(times)), rtol=1e-9)


def test_exhausted_step_budget_gives_nan_not_a_wrong_number():
    y1 = solvers.odeint(lambda t, y: -y, tf.constant([1.0], tf.float64), 10.0,
                        method=solvers.Dopri5(max_steps=3), rtol=1e-10,
                        atol=1e-10)
    assert np.all(np.isnan(y1.numpy()))
    with pytest.raises(ValueError, match="max_steps must be a positive int"):
        solvers.Dopri5(max_steps=0)


@pytest.mark.parametrize("gradient", ["backprop", "adjoint"])
def test_gradients_match_the_exact_sensitivities(gradient):
    import scipy.linalg

    matrix = oracles.LINEAR_MATRIX.T
    weights = tf.Variable(matrix)
    cotangent = np.array([[0.7, -0.2, 1.1], [-0.4, 0.9, 0.3]])
    t1 = 1.5

    def value_and_gradients(y0):
        with tf.GradientTape() as tape:
            tape.watch(y0)
            ys = solvers.odeint(lambda t, y: tf.matmul(y, weights), y0, t1,
                                method=solvers.Dopri5(max_steps=100),
                                rtol=1e-9,
                                atol=1e-9, gradient=gradient,
                                times=[0.5, t1])
            loss = tf.reduce_sum(ys[-1] * cotangent) + tf.reduce_sum(ys[0])
        return tape.gradient(loss, [y0, weights])

    def exact_loss(w, y0=oracles.LINEAR_Y0):
        return (np.sum(y0 @ scipy.linalg.expm(w * t1) * cotangent)
                + np.sum(y0 @ scipy.linalg.expm(w * 0.5)))

    eps = 1e-6
    expected_weights = np.zeros_like(matrix)
    for index in np.ndindex(matrix.shape):
        plus, minus = matrix.copy(), matrix.copy()
        plus[index] += eps
        minus[index] -= eps
        expected_weights[index] = (exact_loss(plus) - exact_loss(minus)) / (
            2 * eps)
    expected_y0 = (cotangent @ scipy.linalg.expm(matrix * t1).T
                   + np.ones((2, 3)) @ scipy.linalg.expm(matrix * 0.5).T)
    y0 = tf.constant(oracles.LINEAR_Y0)
    runs = [value_and_gradients]
    if gradient == "backprop":  # XLA compiles the loop's gradient (slowly)
        runs.append(tf.function(value_and_gradients, jit_compile=True))
    for run in runs:
        grad_y0, grad_weights = run(y0)
        np.testing.assert_allclose(grad_y0.numpy(), expected_y0, atol=1e-7)
        np.testing.assert_allclose(grad_weights.numpy(), expected_weights,
                                   atol=1e-6)


def test_controller_never_shrinks_after_an_accepted_step():
    controller = IController(rtol=1e-6, atol=1e-6, order=5)
    h = tf.constant(0.1, tf.float64)
    for ratio in (1e-8, 0.3, 0.99, 1.0):
        assert float(controller.next_step_size(h, ratio, True)) >= 0.1
    assert float(controller.next_step_size(h, 0.0, True)) == pytest.approx(1.0)
    rejected = float(controller.next_step_size(h, 1e6, False))
    assert rejected == pytest.approx(0.02)  # clipped at min_factor = 0.2


def test_embedded_pairs_reject_fixed_step_options():
    with pytest.raises(ValueError, match="checkpoint"):
        solvers.odeint(lambda t, y: -y, tf.ones([2]), 1.0,
                       method=solvers.Dopri5(), gradient="checkpoint")
    with pytest.raises(ValueError, match="with_step_index=True needs"):
        solvers.odeint(lambda t, y, k: -y, tf.ones([2]), 1.0,
                       method=solvers.Dopri5(), with_step_index=True)


@pytest.mark.parametrize("overshoot, extra_steps", [(1.005, 0), (1.02, 1)])
def test_last_step_is_stretched_by_at_most_one_percent(overshoot, extra_steps):
    # y' = 0: every error ratio is 0, so the controller multiplies the step
    # by max_factor = 10 after each step, starting from Hairer's 1e-6.
    # t_end leaves `overshoot` times the k-th proposed step after k - 1
    # steps: within 1 % the k-th step is stretched to land on t_end (Hairer's
    # DOPRI5 rule), beyond it a sliver step follows.
    k = 4
    taken = sum(1e-6 * 10.0 ** i for i in range(k - 1))
    t_end = taken + overshoot * 1e-6 * 10.0 ** (k - 1)
    solution = solvers.solve(lambda t, y: tf.zeros_like(y),
                             tf.constant([1.0], tf.float64), t_end,
                             method=solvers.Dopri5(), rtol=1e-6, atol=1e-6)
    assert int(solution.stats["num_steps"]) == k + extra_steps
    assert int(solution.stats["num_rejected"]) == 0
    np.testing.assert_array_equal(solution.ys.numpy(), [1.0])
