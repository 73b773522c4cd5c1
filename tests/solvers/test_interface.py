"""odeint / solve: arguments, errors, statistics, method lookup."""

import numpy as np
import pytest
import tensorflow as tf

from contractive_keras import solvers


def _decay(t, y):
    return -y


def test_get_returns_schemes_and_rejects_unknown_names():
    assert isinstance(solvers.get("rk4"), solvers.RK4)
    assert isinstance(solvers.get("Euler"), solvers.Euler)
    scheme = solvers.Midpoint()
    assert solvers.get(scheme) is scheme
    with pytest.raises(ValueError, match="euler, midpoint, rk4, dopri5, bdf"):
        solvers.get("rk45")
    with pytest.raises(ValueError, match="got 3 of type int"):
        solvers.get(3)
    assert solvers.KNOWN_METHODS == ("euler", "midpoint", "rk4", "dopri5",
                                     "bdf", "tfp_dopri5")


def test_dopri5_names_this_packages_pair_and_tfp_dopri5_names_tfps():
    import tensorflow_probability as tfp

    assert type(solvers.get("dopri5")) is solvers.Dopri5
    assert type(solvers.get("DOPRI5")) is solvers.Dopri5
    assert type(solvers.get("tfp_dopri5")) is tfp.math.ode.DormandPrince
    assert type(solvers.get("bdf")) is tfp.math.ode.BDF
    # The name compiles under XLA with a gradient and counts its steps.
    weights = tf.Variable([[-1.0, 0.5], [0.0, -2.0]], dtype=tf.float64)

    @tf.function(jit_compile=True)
    def loss_and_gradient(y0):
        with tf.GradientTape() as tape:
            solution = solvers.solve(lambda t, y: tf.matmul(y, weights), y0,
                                     1.0, method="dopri5", rtol=1e-8,
                                     atol=1e-8)
            loss = tf.reduce_sum(solution.ys)
        return loss, tape.gradient(loss, weights), solution.stats

    loss, gradient, stats = loss_and_gradient(tf.ones([3, 2], tf.float64))
    # y' = y W from ones: y(1) = ones expm(W); d/dW sum(ones expm(W)) by central differences.
    from scipy.linalg import expm

    W = weights.numpy()
    exact = lambda M: np.sum(np.ones((3, 2)) @ expm(M))
    assert float(loss) == pytest.approx(exact(W), rel=1e-6)
    h = 1e-6
    differences = np.zeros_like(W)
    for i, j in np.ndindex(*W.shape):
        E = np.zeros_like(W)
        E[i, j] = h
        differences[i, j] = (exact(W + E) - exact(W - E)) / (2 * h)
    np.testing.assert_allclose(gradient.numpy(), differences, rtol=1e-5, atol=1e-7)
    assert int(stats["num_steps"]) > 0 and int(stats["num_rejected"]) <= int(stats["num_steps"])


@pytest.mark.parametrize("kwargs, message", [
    (dict(steps=0), "steps must be >= 1, got 0"),
    (dict(steps=-3), "steps must be >= 1, got -3"),
    (dict(steps=2.0), "steps must be a positive Python int, got 2.0"),
    (dict(step_size=0.0), "step_size must be > 0, got 0.0"),
    (dict(step_size=-0.1), "step_size must be > 0"),
    (dict(steps=4, step_size=0.1), "not both"),
    (dict(), "needs steps or step_size"),
    (dict(steps=4, rtol=0.0), "rtol must be > 0, got 0.0"),
    (dict(steps=4, atol=-1e-6), "atol must be > 0"),
    (dict(steps=4, t0=1.0), r"t1 must be > t0, got t0=1.0, t1=1.0"),
    (dict(steps=4, t0=2.0), "t1 must be > t0"),
    (dict(steps=4, gradient="reverse"), "Unknown gradient method 'reverse'"),
    (dict(steps=4, unroll="yes"), "unroll must be True, False or 'auto'"),
    (dict(steps=4, times=[0.5, 0.2]), "non-decreasing"),
    (dict(steps=4, times=[0.5, 1.5]), r"in \[t0, t1\]"),
    (dict(steps=4, method="leapfrog"), "Unknown solver 'leapfrog'"),
])
def test_invalid_arguments_raise_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        solvers.odeint(_decay, tf.ones([2]), 1.0, **kwargs)


def test_vector_field_mismatches_are_reported():
    with pytest.raises(ValueError, match="dtype float64 for state leaf 0 of "
                                         "dtype float32"):
        solvers.odeint(lambda t, y: tf.cast(y, tf.float64), tf.ones([2]), 1.0,
                       steps=2)
    with pytest.raises(ValueError, match=r"shape \(3,\) for state leaf 0 of "
                                         r"shape \(2,\)"):
        solvers.odeint(lambda t, y: tf.ones([3]), tf.ones([2]), 1.0, steps=2)
    with pytest.raises(ValueError, match="structure of the state"):
        solvers.odeint(lambda t, y: (y, y), tf.ones([2]), 1.0, steps=2)
    with pytest.raises(ValueError, match="one floating dtype"):
        solvers.odeint(_decay, tf.ones([2], tf.int32), 1.0, steps=2)
    with pytest.raises(ValueError, match="one floating dtype"):
        solvers.odeint(_decay, (tf.ones([2]), tf.ones([2], tf.float64)), 1.0,
                       steps=2)


def test_fixed_step_statistics_count_evaluations():
    calls = []

    def counted(t, y):
        calls.append(t)
        return -y

    solution = solvers.solve(counted, tf.ones([2]), 2.0, method="midpoint",
                             steps=5, times=[0.3, 2.0], unroll=True)
    # 5 steps of 2 stages + one partial step to t = 0.3.
    assert len(calls) == 12
    assert int(solution.stats["num_fn_evals"]) == 12
    assert int(solution.stats["num_steps"]) == 6
    assert int(solution.stats["num_rejected"]) == 0
    assert int(solution.stats["num_vjp_evals_backward"]) == 12
    np.testing.assert_allclose(solution.ts.numpy(), [0.3, 2.0])
    np.testing.assert_allclose(solution.y1.numpy(), solution.ys[-1].numpy())


@pytest.mark.parametrize("gradient, backward_fn_evals",
                         [("backprop", 0), ("checkpoint", 40),
                          ("adjoint", 42)])
def test_backward_statistics_match_the_evaluations_made(gradient,
                                                        backward_fn_evals):
    calls = []
    weight = tf.Variable(-1.0)

    def counted(t, y):
        calls.append(t)
        return weight * y

    with tf.GradientTape() as tape:
        solution = solvers.solve(counted, tf.ones([2]), 1.0, steps=10,
                                 gradient=gradient, unroll=True)
    forward_calls = len(calls)
    tape.gradient(solution.ys, weight)
    assert forward_calls == int(solution.stats["num_fn_evals"]) == 40
    assert len(calls) - forward_calls == backward_fn_evals
    assert int(solution.stats["num_fn_evals_backward"]) == backward_fn_evals


def test_solve_result_passes_through_tf_function():
    @tf.function
    def run(y0):
        return solvers.solve(_decay, y0, 1.0, steps=4)

    solution = run(tf.ones([3]))
    assert isinstance(solution, solvers.Solution)
    assert int(solution.stats["num_fn_evals"]) == 16


def test_tensor_times_and_numpy_step_counts_are_accepted():
    ys = solvers.odeint(_decay, tf.ones([1], tf.float64),
                        tf.constant(1.0, tf.float64), steps=np.int64(8),
                        times=tf.constant([0.5, 1.0]))
    np.testing.assert_allclose(ys[:, 0].numpy(), np.exp([-0.5, -1.0]),
                               rtol=1e-5)
