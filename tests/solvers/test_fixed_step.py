"""The fixed-step loop: unrolled vs while loop, step index, output times,
eager / tf.function / XLA, distribution strategies."""

import numpy as np
import pytest
import tensorflow as tf

from contractive_keras import solvers
from contractive_keras.solvers import fixed_step
from tests.solvers import oracles

RATES = np.array([0.3, 1.1, -0.4, 2.0, 0.7])


def _piecewise_field(order_of_call_log=None):
    """y' = -w[step] y with per-step rates: the step index picks the rate."""
    rates = tf.constant(RATES, tf.float64)

    def fn(t, y, step):
        if order_of_call_log is not None:
            order_of_call_log.append((float(t), int(step)))
        return -tf.gather(rates, step) * y

    return fn


@pytest.mark.parametrize("method, order", [("euler", 1), ("midpoint", 2),
                                           ("rk4", 4)])
@pytest.mark.parametrize("unroll", [True, False])
def test_step_index_selects_piecewise_constant_weights(method, order, unroll):
    # Step k of y' = -w_k y multiplies y by R(-w_k h) exactly.
    steps, t1 = len(RATES), 1.5
    h = t1 / steps
    y1 = solvers.odeint(_piecewise_field(), tf.constant(2.0, tf.float64), t1,
                        method=method, steps=steps, with_step_index=True,
                        unroll=unroll)
    polynomial = oracles.rk_stability_polynomial(order)
    expected = 2.0 * np.prod([polynomial(-w * h) for w in RATES])
    np.testing.assert_allclose(float(y1), expected, rtol=1e-13)


def test_every_stage_of_a_step_gets_that_steps_index():
    calls = []
    solvers.odeint(_piecewise_field(calls), tf.constant(1.0, tf.float64), 1.0,
                   method="rk4", steps=3, with_step_index=True, unroll=True)
    h = 1.0 / 3.0
    expected = [(k * h + c * h, k) for k in range(3)
                for c in (0.0, 0.5, 0.5, 1.0)]
    assert [step for _, step in calls] == [step for _, step in expected]
    np.testing.assert_allclose([t for t, _ in calls],
                               [t for t, _ in expected], rtol=1e-14)


@pytest.mark.parametrize("method", ["euler", "midpoint", "rk4"])
def test_unrolled_and_while_loop_agree(method):
    fn = oracles.linear_field()
    y0 = tf.constant(oracles.LINEAR_Y0)
    unrolled = solvers.odeint(fn, y0, 1.0, method=method, steps=7,
                              unroll=True)
    looped = solvers.odeint(fn, y0, 1.0, method=method, steps=7, unroll=False)
    np.testing.assert_allclose(unrolled.numpy(), looped.numpy(), rtol=1e-14)


def test_auto_unroll_threshold_depends_on_xla_and_tape():
    thresholds = fixed_step.UNROLL_THRESHOLDS
    decisions = {}

    def probe(key):
        decisions[key] = [fixed_step.use_unrolled_loop("auto", n) for n in (
            thresholds[key], thresholds[key] + 1)]

    def traced(x, jit_compile, with_tape):
        if with_tape:
            with tf.GradientTape():
                probe(("xla" if jit_compile else "graph", True))
        else:
            probe(("xla" if jit_compile else "graph", False))
        return x

    for jit_compile in (True, False):
        for with_tape in (True, False):
            tf.function(lambda x, j=jit_compile, w=with_tape: traced(x, j, w),
                        jit_compile=jit_compile)(tf.constant(1.0))
    assert decisions == {key: [True, False] for key in thresholds}
    assert fixed_step.use_unrolled_loop(True, 1000)
    assert not fixed_step.use_unrolled_loop(False, 1)


def test_step_size_gives_equal_steps_ending_at_t1():
    solution = solvers.solve(lambda t, y: -y, tf.constant(1.0, tf.float64),
                             1.0, method="euler", step_size=0.3)
    # ceil(1 / 0.3) = 4 steps of 0.25.
    assert int(solution.stats["num_steps"]) == 4
    np.testing.assert_allclose(float(solution.ys), 0.75 ** 4, rtol=1e-14)
    exact_multiple = solvers.solve(lambda t, y: -y, 1.0, 1.0, method="euler",
                                   step_size=0.25)
    assert int(exact_multiple.stats["num_steps"]) == 4


def test_output_times_on_the_grid_equal_separate_solves():
    fn = oracles.linear_field()
    y0 = tf.constant(oracles.LINEAR_Y0)
    ys = solvers.odeint(fn, y0, 1.0, steps=10, times=[0.0, 0.3, 1.0])
    assert ys.shape == (3, 2, 3)
    np.testing.assert_allclose(ys[0].numpy(), oracles.LINEAR_Y0, rtol=0)
    separate = solvers.odeint(fn, y0, 0.3, steps=3)
    np.testing.assert_allclose(ys[1].numpy(), separate.numpy(), rtol=1e-14)
    final = solvers.odeint(fn, y0, 1.0, steps=10)
    np.testing.assert_allclose(ys[2].numpy(), final.numpy(), rtol=1e-14)


def test_output_times_between_nodes_converge_at_the_scheme_order():
    fn = oracles.linear_field()
    y0 = tf.constant(oracles.LINEAR_Y0)
    times = [0.13, 0.77, 1.41]
    exact = np.stack([oracles.linear_exact(t) for t in times])
    errors = [np.max(np.abs(solvers.odeint(
        fn, y0, 1.5, method="midpoint", steps=n, times=times).numpy() - exact))
              for n in (20, 40, 80)]
    orders = oracles.observed_orders(errors)
    assert np.all(np.abs(orders - 2) < 0.2), (errors, orders)


def test_nested_state_structures_are_integrated_leafwise():
    def fn(t, state):
        position, velocity = state["q"], state["p"]
        return {"q": velocity, "p": -position}

    state = solvers.odeint(
        fn, {"q": tf.constant([1.0], tf.float64),
             "p": tf.constant([0.0], tf.float64)}, np.pi / 2, steps=64)
    np.testing.assert_allclose(state["q"].numpy(), [0.0], atol=1e-7)
    np.testing.assert_allclose(state["p"].numpy(), [-1.0], rtol=1e-7)


@pytest.mark.parametrize("unroll", [True, False])
def test_xla_and_tf_function_match_eager_for_values_and_gradients(unroll):
    weights = tf.Variable(tf.constant([[-0.5, 1.0], [-1.0, -0.2]], tf.float32))

    def fn(t, y, step):
        return tf.tanh(tf.matmul(y, weights)) * tf.cast(step + 1, y.dtype)

    def value_and_gradient(y0):
        with tf.GradientTape() as tape:
            tape.watch(y0)
            y1 = solvers.odeint(fn, y0, 1.0, steps=6, with_step_index=True,
                                unroll=unroll)
            loss = tf.reduce_sum(y1 ** 2)
        return [loss] + tape.gradient(loss, [y0, weights])

    y0 = tf.constant([[0.5, -1.0], [1.5, 0.2]])
    eager = value_and_gradient(y0)
    for jit_compile in (False, True):
        compiled = tf.function(value_and_gradient, jit_compile=jit_compile)
        for expected, got in zip(eager, compiled(y0)):
            np.testing.assert_allclose(got.numpy(), expected.numpy(),
                                       rtol=2e-5, atol=1e-6)


@pytest.mark.parametrize("gradient", ["backprop", "checkpoint", "adjoint"])
def test_mirrored_strategy_replica_context(gradient):
    devices = [d.name for d in tf.config.list_logical_devices("CPU")][:2]
    strategy = tf.distribute.MirroredStrategy(devices)
    with strategy.scope():
        weights = tf.Variable(tf.constant([[-0.5, 0.3], [0.1, -0.8]]))

    def fn(t, y):
        return tf.tanh(tf.matmul(y, weights))

    def replica_step(x):
        with tf.GradientTape() as tape:
            y1 = solvers.odeint(fn, x, 1.0, steps=8, gradient=gradient)
            loss = tf.reduce_sum(y1)
        return tape.gradient(loss, weights)

    @tf.function
    def distributed_step(x):
        per_replica = strategy.run(replica_step, args=(x,))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica,
                               axis=None)

    x = tf.constant([[1.0, 2.0]])
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(solvers.odeint(fn, x, 1.0, steps=8))
    expected = tape.gradient(loss, weights) * strategy.num_replicas_in_sync
    np.testing.assert_allclose(distributed_step(x).numpy(), expected.numpy(),
                               rtol=1e-4, atol=1e-6)
