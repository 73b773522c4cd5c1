"""The fixed-step integrate loop: ``steps`` equal steps of one scheme.

The grid is t_k = t0 + k h, h = (t1 - t0) / steps, k = 0..steps. The loop
is written once, either unrolled in Python (small step counts: no loop
overhead, XLA fuses across steps) or as a loop with a static trip count
(large step counts: the graph stays small), which
:func:`~contractive_keras.solvers.dispatch.loop` makes a
``tf.while_loop`` with ``maximum_iterations`` on TensorFlow (eager,
``tf.function``, ``jit_compile=True``, ``tf.distribute`` replicas) and a
``keras.ops.fori_loop`` on JAX (``lax.scan``: jit-compiled and
reverse-differentiable) and PyTorch (a Python loop that autograd records).

The step index handed to ``fn(t, y, step)`` is an int32 scalar tensor on
TensorFlow and inside JAX's loop, and a Python int in an unrolled loop
on JAX and PyTorch and in PyTorch's loop: ``keras.ops.take(K, step)``
and ``K[step]`` accept both.

How gradients are taken through the loop is decided by
:mod:`contractive_keras.solvers.gradients`, which calls :func:`take_steps`.
"""

import math

import keras

from contractive_keras import backend
from contractive_keras.solvers import dispatch

# unroll="auto": the largest step count that is unrolled, by context
# (compiled with XLA or not, gradient tape recording or not). Measured with
# RK4 on a batch-64 MLP field (benchmarks/solvers.py, "unroll" section):
# under XLA with a gradient, unrolling 16 steps was 1.6x slower than the
# while loop; without a gradient it was faster up to 32 steps; in plain
# graphs unrolling was as fast or faster up to 32 steps with a gradient.
# JAX always compiles (its context is "xla", a gradient always possible);
# on PyTorch both loops are Python loops.
UNROLL_THRESHOLDS = {
    ("xla", True): 8,
    ("xla", False): 32,
    ("graph", True): 32,
    ("graph", False): 16,
}
# Steps per while-loop iteration when no gradient tape is recording
# (TensorFlow): the loop's own per-iteration cost is amortized (1.9x
# faster for 100 RK4 steps under XLA); with a tape one step per iteration
# gave the faster gradient.
LOOP_BLOCK = 4


def bind_step_index(fn, with_step_index, step_index):
    """Returns ``g(t, y)``: ``fn(t, y)`` or ``fn(t, y, step_index)``."""
    if not with_step_index:
        return fn
    return lambda t, y: fn(t, y, step_index)


def in_xla_context():
    """Whether the code being traced will be compiled by XLA."""
    return dispatch.in_xla_context()


def use_unrolled_loop(unroll, count):
    """Whether ``count`` steps are unrolled in Python for this ``unroll``."""
    if unroll == "auto":
        context = "xla" if in_xla_context() else "graph"
        return count <= UNROLL_THRESHOLDS[(context, dispatch.could_record())]
    return bool(unroll)


def unrolled_index(k):
    """The step index of an unrolled step: an int32 tensor on TensorFlow, else k."""
    if backend.is_tensorflow():
        return keras.ops.convert_to_tensor(k, "int32")
    return k


def take_steps(scheme, fn, y, t0, h, start, count, *, unroll="auto",
               with_step_index=False, reverse=False):
    """Takes ``count`` steps of ``scheme`` from grid node ``start``.

    Args:
        scheme: an :class:`~contractive_keras.solvers.runge_kutta.ExplicitRungeKutta`.
        fn: vector field ``fn(t, y)`` or, with ``with_step_index``,
            ``fn(t, y, step)`` with ``step`` an int32 scalar tensor or a
            Python int (see the module docstring).
        y: nested structure of tensors, the state at node ``start``
            (at node ``start + count`` when ``reverse``).
        t0: scalar tensor, the time of node 0.
        h: scalar tensor, the step size (same dtype as ``t0``).
        start: Python int, the index of the first step taken.
        count: Python int >= 0, the number of steps.
        unroll: True, False or "auto" (unrolled up to the step count in
            :data:`UNROLL_THRESHOLDS` for the current context).
        with_step_index: pass the step index to ``fn``.
        reverse: integrate backwards in time, from node ``start + count``
            down to node ``start`` with step ``-h`` (step k still covers
            [t_k, t_{k+1}] and still receives index k).

    Returns:
        The state after the last step, same structure as ``y``.
    """
    if count == 0:
        return y
    dtype = keras.backend.standardize_dtype(t0.dtype)

    def one_step(k, y):
        stage_fn = bind_step_index(fn, with_step_index, k)
        node = k if isinstance(k, int) else keras.ops.cast(k, dtype)
        if reverse:
            return scheme.step(stage_fn, t0 + (node + 1) * h, y, -h)
        return scheme.step(stage_fn, t0 + node * h, y, h)

    order = range(start, start + count)
    if reverse:
        order = reversed(order)
    if use_unrolled_loop(unroll, count):
        for k in order:
            y = one_step(unrolled_index(k), y)
        return y

    # Several steps per iteration amortize the loop's own cost (measured
    # in benchmarks/solvers.py); when a tape may record, one step per
    # iteration keeps the gradient's accumulators simplest (and fastest).
    block = 1 if dispatch.could_record() else LOOP_BLOCK
    direction = -1 if reverse else 1
    first = start + count - 1 if reverse else start
    return dispatch.loop(one_step, first, direction, count, y, block=block)


def output_plan(times, t0, t1, steps):
    """Where each output time falls on the grid.

    Args:
        times: sequence of Python floats, non-decreasing, in [t0, t1].
        t0, t1: Python floats.
        steps: Python int, the number of steps over [t0, t1].

    Returns:
        A list of ``(node, offset)``: the output at ``times[i]`` is the
        state at grid node ``node`` advanced by one partial step of size
        ``offset`` (0 when the time is a grid node, up to rounding).
    """
    h = (t1 - t0) / steps
    plan = []
    for time in times:
        position = (time - t0) / h
        node = round(position)
        if abs(position - node) <= 1e-9 * max(1.0, abs(position)):
            plan.append((min(max(node, 0), steps), 0.0))
            continue
        node = min(max(math.floor(position), 0), steps - 1)
        plan.append((node, time - (t0 + node * h)))
    return plan
