"""The adaptive integrate loop for this package's embedded pairs (Dopri5).

Between consecutive output times the loop attempts steps proposed by the
:class:`~contractive_keras.solvers.step_size_control.IController`; the
last step of an interval is shortened (or stretched by at most 1 %) to
land on the output time. Each interval is one ``tf.while_loop`` with
``maximum_iterations`` = ``scheme.max_steps`` (a static bound: XLA compiles
it, and backpropagation through it works in eager, graph and XLA modes). The step
sizes are treated as constants by the gradient (the error ratio is under
``tf.stop_gradient``), as in torchdiffeq and diffrax.

Gradients: "backprop" through the loop, or "adjoint": the adjoint
equations of :mod:`~contractive_keras.solvers.gradients` solved backwards
with the same scheme and controller, the state reset to the stored forward
output at every output time. Gradients reach ``y0`` and the variables read
by ``fn``; with "adjoint" the times get none.
"""

import tensorflow as tf
from tensorflow.python.eager import record  # pylint: disable=g-direct-tensorflow-import

from contractive_keras.solvers import adaptive_backprop
from contractive_keras.solvers import fixed_step
from contractive_keras.solvers.gradients import Adjoint
from contractive_keras.solvers.gradients import Backprop
from contractive_keras.solvers.step_size_control import IController


# A step that would end short of the output time by less than 1 % of the
# proposed step is stretched to land on it (Hairer's DOPRI5 code:
# "IF ((X+1.01D0*H-XEND)*POSNEG.GT.0.D0) H=XEND-X"), which saves the sliver
# step that would otherwise follow; the error test still judges the
# stretched step.
LAST_STEP_STRETCH = 1.01


def _where(condition, new, old):
    return tf.nest.map_structure(lambda a, b: tf.where(condition, a, b), new,
                                 old)


def _controller(scheme, rtol, atol):
    return IController(rtol, atol, scheme.order, scheme.safety,
                       scheme.min_factor, scheme.max_factor)


def _advance(scheme, controller, fn, t, y, f, dt, t_end, counts,
             recorder=None):
    """Steps from t to t_end; returns (y, f, dt, counts, reached, recorded).

    With a ``StepRecorder`` every attempt is written to it (``recorded``:
    its arrays and the number of attempts; None without one).
    """
    dtype = t.dtype

    def body(t, y, f, dt, num_steps, num_accepted, index, arrays):
        remaining = t_end - t
        last = LAST_STEP_STRETCH * dt >= remaining
        h = tf.where(last, remaining, dt)
        y1, f1, error = scheme.step_with_error(fn, t, y, h, f)
        ratio = tf.stop_gradient(controller.error_ratio(y, y1, error))
        accepted = ratio <= 1.0
        if recorder is not None:
            arrays = recorder.write(arrays, index, y, t, h, accepted, last)
        t_next = tf.where(accepted, tf.where(last, t_end, t + h), t)
        dt_next = tf.stop_gradient(
            controller.next_step_size(h, ratio, accepted))
        # Shortening the last step to hit t_end must not shrink the next.
        dt_next = tf.where(accepted & last, tf.maximum(dt_next, dt), dt_next)
        return (t_next, _where(accepted, y1, y), _where(accepted, f1, f),
                dt_next, num_steps + 1,
                num_accepted + tf.cast(accepted, tf.int32), index + 1, arrays)

    arrays = () if recorder is None else recorder.arrays()
    t, y, f, dt, num_steps, num_accepted, index, arrays = tf.while_loop(
        lambda t, *_: t < t_end, body,
        (t, y, f, tf.cast(dt, dtype), counts[0], counts[1],
         tf.constant(0, tf.int32), arrays),
        maximum_iterations=scheme.max_steps)
    recorded = None if recorder is None else (arrays, index)
    return y, f, dt, (num_steps, num_accepted), t >= t_end, recorded


def integrate(scheme, fn, y0, t0, output_times, rtol, atol,
              record_steps=False):
    """Solves forward; returns (list of states at output_times, stats).

    Args:
        scheme: an ``EmbeddedRungeKutta`` instance (e.g. ``Dopri5``).
        fn: vector field ``fn(t, y)``.
        y0: nested structure of tensors.
        t0: scalar tensor.
        output_times: list of scalar tensors, non-decreasing, >= t0.
        rtol, atol: tolerances.
        record_steps: differentiate each interval with
            :mod:`~contractive_keras.solvers.adaptive_backprop` (recorded
            steps, recomputed one at a time) instead of through the loop.

    Returns:
        ``(states, stats)``: one state per output time (NaN where
        ``max_steps`` ran out) and the statistics dict.
    """
    controller = _controller(scheme, rtol, atol)
    captures = None
    if record_steps:
        captures = adaptive_backprop.field_captures(fn, t0, y0)
    f = fn(t0, y0)
    # Step sizes are constants for the gradient, the first one included.
    dt = tf.stop_gradient(controller.initial_step_size(fn, t0, y0, f))
    counts = (tf.constant(0, tf.int32), tf.constant(0, tf.int32))
    t, y, states, all_reached = t0, y0, [], tf.constant(True)
    for t_end in output_times:
        if captures is None:
            y, f, dt, counts, reached, _ = _advance(
                scheme, controller, fn, t, y, f, dt, t_end, counts)
        else:
            def advance(fn, t_start, y_start, t_stop, recorder, f=f, dt=dt,
                        counts=counts):
                y_end, *extras, recorded = _advance(
                    scheme, controller, fn, t_start, y_start,
                    tf.nest.map_structure(tf.stop_gradient, f),
                    tf.stop_gradient(dt), t_stop, counts, recorder)
                return y_end, extras, recorded[0], recorded[1]

            y, (f, dt, counts, reached) = (
                adaptive_backprop.advance_with_recorded_steps(
                    advance, scheme, fn, t, y, tf.convert_to_tensor(t_end),
                    captures, fixed_step.in_xla_context()))
        t = t_end
        all_reached = all_reached & reached
        states.append(tf.nest.map_structure(
            lambda leaf: tf.where(all_reached, leaf,
                                  tf.constant(float("nan"), leaf.dtype)), y))
    num_steps, num_accepted = counts
    unknown = tf.constant(-1, tf.int32)
    # Recorded steps: each accepted step is recomputed (its stages up to the
    # last one with a weight) and differentiated once.
    backward = unknown if captures is None else (
        scheme.propagating_stages * num_accepted)
    stats = {
        "num_fn_evals": 2 + (scheme.stages - 1) * num_steps,
        "num_steps": num_steps,
        "num_accepted": num_accepted,
        "num_rejected": num_steps - num_accepted,
        "num_fn_evals_backward": backward,
        "num_vjp_evals_backward": backward,
    }
    return states, stats


def _negated_time(fn):
    """g(s, z) = -fn(-s, z): integrating g forward in s runs fn backward."""
    return lambda s, z: tf.nest.map_structure(tf.negative, fn(-s, z))


def integrate_with_adjoint(scheme, fn, y0, t0, output_times, rtol, atol):
    """Like :func:`integrate`, with gradients by the continuous adjoint."""
    structure = y0
    num_leaves = len(tf.nest.flatten(y0))
    stats_holder = {}

    @tf.custom_gradient
    def run(*flat_y0):
        start = tf.nest.pack_sequence_as(structure, list(flat_y0))
        with record.stop_recording():
            states, stats = integrate(scheme, fn, start, t0, output_times,
                                      rtol, atol)
        stats_holder.update(stats)
        flat_states = [leaf for state in states
                       for leaf in tf.nest.flatten(state)]

        def grad(*upstream, variables=None):
            variables = [v for v in (variables or []) if v.dtype.is_floating]
            upstream = [tf.zeros_like(s) if g is None else g
                        for s, g in zip(flat_states, upstream)]

            def augmented(t, state):
                y_now, a_now, _ = state
                with tf.GradientTape() as tape:
                    tape.watch(tf.nest.flatten(y_now))
                    tape.watch(variables)
                    dy = fn(t, y_now)
                vjp_y, vjp_v = tape.gradient(
                    tf.nest.flatten(dy), (tf.nest.flatten(y_now), variables),
                    output_gradients=tf.nest.flatten(a_now),
                    unconnected_gradients=tf.UnconnectedGradients.ZERO)
                return (dy,
                        tf.nest.pack_sequence_as(
                            y_now, [-g for g in vjp_y]),
                        [-tf.convert_to_tensor(g) for g in vjp_v])

            backward_fn = _negated_time(augmented)
            adjoint = tf.nest.map_structure(tf.zeros_like, structure)
            weights = [tf.zeros_like(tf.convert_to_tensor(v))
                       for v in variables]
            boundaries = [t0] + list(output_times)
            for index in reversed(range(len(output_times))):
                chunk = upstream[index * num_leaves:(index + 1) * num_leaves]
                adjoint = tf.nest.map_structure(
                    tf.add, adjoint, tf.nest.pack_sequence_as(structure,
                                                              chunk))
                y_end = tf.nest.pack_sequence_as(
                    structure,
                    flat_states[index * num_leaves:(index + 1) * num_leaves])
                (state,), _ = integrate(
                    scheme, backward_fn, (y_end, adjoint, weights),
                    -boundaries[index + 1], [-boundaries[index]], rtol, atol)
                _, adjoint, weights = state
            grads = tf.nest.flatten(adjoint)
            if variables:
                return grads, weights
            return grads

        return flat_states, grad

    flat_states = run(*tf.nest.flatten(y0))
    states = [tf.nest.pack_sequence_as(
        structure, list(flat_states[i * num_leaves:(i + 1) * num_leaves]))
              for i in range(len(output_times))]
    return states, dict(stats_holder)


def solve_embedded(scheme, fn, y0, t0, output_times, *, rtol, atol, gradient):
    """Dispatches on the gradient method; returns (states, stats)."""
    if isinstance(gradient, Adjoint):
        return integrate_with_adjoint(scheme, fn, y0, t0, output_times, rtol,
                                      atol)
    if isinstance(gradient, Backprop):
        return integrate(scheme, fn, y0, t0, output_times, rtol, atol,
                         record_steps=record.could_possibly_record())
    raise ValueError(
        f"gradient={gradient.name!r} is for fixed-step methods; "
        f"{type(scheme).__name__} takes 'backprop' or 'adjoint'.")
