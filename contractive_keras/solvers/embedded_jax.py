"""The gradient of the adaptive loop on JAX: recorded steps, recomputed backwards.

``lax.while_loop`` has no reverse-mode derivative. This module runs the
loop of :mod:`~contractive_keras.solvers.embedded_loop` inside a
``jax.custom_vjp``:

* forward (when differentiated): per output interval, one preallocated
  record of ``max_steps`` attempts: the state each attempt started from,
  its time, its size and its verdict (rejected / accepted / accepted and
  last of the interval);
* backward: for each interval, last to first, a ``lax.while_loop`` over the
  recorded attempts in reverse that recomputes each accepted step and takes
  its vector-Jacobian product (a_j = (d y_{j+1} / d y_j)^T a_{j+1});
  rejected attempts pass the cotangent through.

This is the gradient of the discrete solution with the step sizes and
verdicts held constant, the same as TensorFlow's
:mod:`~contractive_keras.solvers.adaptive_backprop` (and torchdiffeq's and
diffrax's). What ``fn`` closes over (Keras's stateless trainer swaps each
variable for a traced value) is hoisted by ``jax.closure_convert`` and
receives its gradient; so do ``y0`` and the output times (t_j moves with
the interval's start, the last step's size with its end).

Cost of one gradient: the forward solve plus, per accepted step, one
recomputed step (the stages with a weight) and its VJP; memory: one state
per attempt, ``max_steps`` preallocated per interval.
"""

import jax
import jax.numpy as jnp
import numpy as np

from contractive_keras.solvers import embedded_loop

REJECTED, ACCEPTED, LAST = 0, 1, 2


def _inexact(value):
    return jnp.issubdtype(jnp.result_type(value), jnp.inexact)


def _forward(scheme, controller, fn, y0, t0, times, record):
    """The loop over the output intervals; returns (states, reached, counts, records)."""
    f = fn(t0, y0)
    dt = jax.lax.stop_gradient(controller.initial_step_size(fn, t0, y0, f))
    num_steps = num_accepted = jnp.zeros([], jnp.int32)
    t, y, states, reached, records = t0, y0, [], [], []
    for i in range(times.shape[0]):
        t_end = times[i]
        if record:
            leaves = jax.tree_util.tree_leaves(y)
            arrays = ([jnp.zeros((scheme.max_steps,) + leaf.shape, leaf.dtype)
                       for leaf in leaves],
                      jnp.zeros([scheme.max_steps], t.dtype),
                      jnp.zeros([scheme.max_steps], t.dtype),
                      jnp.zeros([scheme.max_steps], jnp.int32))
        else:
            arrays = ()

        def body(carry, t_end=t_end):
            t, y, f, dt, index, num_steps, num_accepted, arrays = carry
            t_next, y_next, f_next, dt_next, accepted, last, h = embedded_loop.attempt(
                scheme, controller, fn, t, y, f, dt, t_end)
            if record:
                states_, ts_, hs_, flags_ = arrays
                flag = jnp.where(accepted, jnp.where(last, LAST, ACCEPTED), REJECTED)
                arrays = ([a.at[index].set(leaf) for a, leaf in
                           zip(states_, jax.tree_util.tree_leaves(y))],
                          ts_.at[index].set(t), hs_.at[index].set(h),
                          flags_.at[index].set(flag.astype(jnp.int32)))
            return (t_next, y_next, f_next, dt_next, index + 1, num_steps + 1,
                    num_accepted + accepted.astype(jnp.int32), arrays)

        def cond(carry, t_end=t_end):
            return (carry[0] < t_end) & (carry[4] < scheme.max_steps)

        t, y, f, dt, count, num_steps, num_accepted, arrays = jax.lax.while_loop(
            cond, body, (t, y, f, dt, jnp.zeros([], jnp.int32), num_steps,
                         num_accepted, arrays))
        states.append(y)
        reached.append(t >= t_end)
        records.append((arrays, count))
    return states, reached, (num_steps, num_accepted), records


def _sweep(scheme, converted, treedef, record, cotangent, consts, dtype):
    """The discrete adjoint over one interval's recorded attempts, last to first."""
    (stacked, ts, hs, flags), count = record
    diff = [i for i, c in enumerate(consts) if _inexact(c)]

    def step(y_leaves, diff_consts, t, h):
        full = list(consts)
        for i, c in zip(diff, diff_consts):
            full[i] = c
        y = jax.tree_util.tree_unflatten(treedef, y_leaves)
        field = lambda time, state: converted(time, state, *full)  # noqa: E731
        return jax.tree_util.tree_leaves(scheme.step(field, t, y, h))

    def body(carry):
        j, a, g_consts, g_start, g_end = carry
        j = j - 1
        flag = flags[j]

        def accepted(_):
            y_j = [leaf[j] for leaf in stacked]
            _, vjp = jax.vjp(step, y_j, [consts[i] for i in diff], ts[j], hs[j])
            g_y, g_c, g_t, g_h = vjp(a)
            is_last = (flag == LAST).astype(dtype)
            return (g_y, [s + g for s, g in zip(g_consts, g_c)],
                    g_start + g_t - is_last * g_h, g_end + is_last * g_h)

        def rejected(_):
            return a, g_consts, g_start, g_end

        return (j,) + tuple(jax.lax.cond(flag == REJECTED, rejected, accepted, None))

    zero = jnp.zeros([], dtype)
    initial = (count, list(cotangent), [jnp.zeros_like(consts[i]) for i in diff], zero, zero)
    _, a, g_diff, g_start, g_end = jax.lax.while_loop(lambda c: c[0] > 0, body, initial)
    return a, dict(zip(diff, g_diff)), g_start, g_end


def solve_embedded(scheme, fn, y0, t0, output_times, *, rtol, atol, gradient):
    """The solve on JAX with the gradient of this module; returns (states, stats)."""
    embedded_loop.check_gradient(scheme, gradient)
    return integrate(scheme, fn, y0, t0, output_times, rtol, atol)


def integrate(scheme, fn, y0, t0, output_times, rtol, atol):
    """``embedded_loop.integrate``, on JAX, with the gradient of this module; (states, stats)."""
    controller = embedded_loop.controller_of(scheme, rtol, atol)
    times = jnp.stack(list(output_times))
    dtype = jnp.result_type(t0)
    converted, consts = jax.closure_convert(fn, t0, y0)
    field = lambda t, y, consts: converted(t, y, *consts)  # noqa: E731
    treedef = jax.tree_util.tree_structure(y0)

    @jax.custom_vjp
    def run(y0, t0, times, consts):
        states, reached, counts, _ = _forward(
            scheme, controller, lambda t, y: field(t, y, consts), y0, t0, times, False)
        return states, reached, counts

    def run_fwd(y0, t0, times, consts):
        states, reached, counts, records = _forward(
            scheme, controller, lambda t, y: field(t, y, consts), y0, t0, times, True)
        return (states, reached, counts), (records, t0, times, consts)

    def run_bwd(residuals, cotangents):
        records, t0, times, consts = residuals
        g_states = cotangents[0]
        a = [jnp.zeros_like(leaf) for leaf in jax.tree_util.tree_leaves(y0)]
        g_consts = [jnp.zeros_like(c) if _inexact(c) else
                    np.zeros(jnp.shape(c), jax.dtypes.float0) for c in consts]
        g_times = [jnp.zeros([], dtype) for _ in range(times.shape[0])]
        g_t0 = jnp.zeros([], dtype)
        for i in reversed(range(times.shape[0])):
            a = [s + g for s, g in zip(a, jax.tree_util.tree_leaves(g_states[i]))]
            a, g_c, g_start, g_end = _sweep(scheme, converted, treedef, records[i], a,
                                            consts, dtype)
            for index, g in g_c.items():
                g_consts[index] = g_consts[index] + g
            g_times[i] = g_times[i] + g_end
            if i == 0:
                g_t0 = g_t0 + g_start
            else:
                g_times[i - 1] = g_times[i - 1] + g_start
        return (jax.tree_util.tree_unflatten(treedef, a), g_t0, jnp.stack(g_times),
                list(g_consts))

    run.defvjp(run_fwd, run_bwd)
    states, reached, counts = run(y0, t0, times, list(consts))
    all_reached, masked = jnp.asarray(True), []
    for state, flag in zip(states, reached):
        all_reached = all_reached & flag
        masked.append(jax.tree_util.tree_map(
            lambda leaf, ok=all_reached: jnp.where(ok, leaf, jnp.nan), state))
    backward = scheme.propagating_stages * counts[1]
    return masked, embedded_loop.statistics(scheme, counts, backward)
