"""Backpropagation through the adaptive loop, one recomputed step at a time.

Differentiating through ``tf.while_loop`` makes TensorFlow keep every
intermediate of every iteration that the backward pass needs (each stage's
input, each activation, ...) in a stack per tensor; under XLA every stack
is preallocated for ``max_steps`` iterations, so one Dormand-Prince
gradient allocated and filled hundreds of megabytes for a few hundred
kilobytes of states. This module computes the same gradient -- that of the
discrete solution, the step sizes and the accept/reject decisions held
constant, as in torchdiffeq and diffrax -- while keeping only what it
needs:

* forward: the loop records, per attempted step j, the state y_j it
  started from, its time t_j, its size h_j and whether it was accepted
  (and was the last step of the interval): one state per attempt;
* backward: for j = n-1, ..., 0, every accepted step is recomputed under a
  tape and its vector-Jacobian product taken (the discrete adjoint,
  a_j = (d y_{j+1} / d y_j)^T a_{j+1}); rejected steps leave y unchanged
  and pass the cotangent through.

Cost: the forward solve plus, per accepted step, one recomputed step and
its VJP (6 + 6 evaluations for Dopri5: the FSAL stage is not needed for
y_{j+1}). Memory: one state per attempted step (XLA: ``max_steps`` states,
preallocated).

Closures: the gradient reaches ``y0``, the times, every variable ``fn``
reads and every floating tensor ``fn`` closes over. The closed-over tensors
are found by tracing ``fn`` once into a graph function (closure conversion,
as ``jax.closure_convert`` does) and become explicit inputs of the custom
gradient. A field that cannot be traced (Python side effects on tensor
values) is reported as ``None`` and the caller falls back to
differentiating through the loop.
"""

import tensorflow as tf
from tensorflow.python.eager import record  # pylint: disable=g-direct-tensorflow-import


def field_captures(fn, t, y):
    """The floating tensors that ``fn(t, y)`` closes over, or None.

    Variables are not listed: ``tf.custom_gradient`` finds those it reads.
    """
    flat = tf.nest.flatten(y)

    def traced(time, *leaves):
        return tf.nest.flatten(fn(time, tf.nest.pack_sequence_as(y, list(leaves))))

    specs = [tf.TensorSpec(leaf.shape, leaf.dtype) for leaf in flat]
    try:
        concrete = tf.function(traced, autograph=False).get_concrete_function(
            tf.TensorSpec([], t.dtype), *specs)
    except Exception:  # pylint: disable=broad-except
        return None     # e.g. float(t) in fn: not traceable; use plain backprop
    return [tensor for tensor in concrete.captured_inputs
            if tensor.dtype.is_floating]


class StepRecorder:
    """The attempted steps of one interval, kept for the backward pass.

    Under XLA the arrays hold ``max_steps`` entries (a static size); in
    graphs and eagerly they grow with the steps taken.
    """

    REJECTED, ACCEPTED, LAST = 0, 1, 2

    def __init__(self, y, t, max_steps, static_size):
        size = max_steps if static_size else 0

        def array(dtype, shape):
            return tf.TensorArray(dtype, size=size, dynamic_size=not static_size,
                                  element_shape=shape)

        self.states = [array(leaf.dtype, leaf.shape) for leaf in tf.nest.flatten(y)]
        self.times = array(t.dtype, [])
        self.sizes = array(t.dtype, [])
        self.flags = array(tf.int32, [])

    def arrays(self):
        return (self.states, self.times, self.sizes, self.flags)

    @classmethod
    def write(cls, arrays, index, y, t, h, accepted, last):
        """The arrays with attempt ``index`` (started at y, t, size h) added."""
        states, times, sizes, flags = arrays
        flag = tf.where(accepted, tf.where(last, cls.LAST, cls.ACCEPTED), cls.REJECTED)
        return ([a.write(index, leaf) for a, leaf in zip(states, tf.nest.flatten(y))],
                times.write(index, t), sizes.write(index, h), flags.write(index, flag))


def _step_vjp(scheme, fn, structure, y, t, h, cotangent, captures, variables):
    """Cotangents of one step y -> y_next in (y, captures, variables, t, h)."""
    with tf.GradientTape() as tape:
        tape.watch(y)
        tape.watch(captures)
        tape.watch(variables)
        tape.watch([t, h])
        y_next = scheme.step(fn, t, tf.nest.pack_sequence_as(structure, y), h)
    return tape.gradient(tf.nest.flatten(y_next), (y, captures, variables, t, h),
                         output_gradients=cotangent,
                         unconnected_gradients=tf.UnconnectedGradients.ZERO)


def backward_sweep(scheme, fn, structure, arrays, count, cotangent, captures, variables):
    """The discrete adjoint over the recorded steps, last to first.

    Returns ``(a, g_captures, g_variables, g_t_start, g_t_end)``: the
    cotangent of the interval's initial state, of the closed-over tensors,
    of the variables, and of the interval's start and end times (all step
    sizes but the last are constants; the last is t_end - t_last).
    """
    states, times, sizes, flags = arrays
    stacked = [a.stack() for a in states]
    times, sizes, flags = times.stack(), sizes.stack(), flags.stack()
    dtype = times.dtype
    zero = tf.zeros([], dtype)

    def body(j, a, g_captures, g_variables, g_start, g_end):
        j = j - 1
        flag = flags[j]

        def accepted():
            y_j = [leaf[j] for leaf in stacked]
            g_y, g_c, g_v, g_t, g_h = _step_vjp(scheme, fn, structure, y_j, times[j],
                                               sizes[j], a, captures, variables)
            is_last = tf.cast(flag == StepRecorder.LAST, dtype)
            # t_j moves with t_start; the last step's size t_end - t_last
            # moves with t_end and against t_start.
            return (g_y, [s + g for s, g in zip(g_captures, g_c)],
                    [s + g for s, g in zip(g_variables, g_v)],
                    g_start + g_t - is_last * g_h, g_end + is_last * g_h)

        def rejected():
            return a, g_captures, g_variables, g_start, g_end

        return (j,) + tuple(tf.cond(flag == StepRecorder.REJECTED, rejected, accepted))

    initial = (count, list(cotangent), [tf.zeros_like(c) for c in captures],
               [tf.zeros_like(tf.convert_to_tensor(v)) for v in variables], zero, zero)
    _, a, g_captures, g_variables, g_start, g_end = tf.while_loop(
        lambda j, *_: j > 0, body, initial, maximum_iterations=tf.shape(flags)[0])
    return a, g_captures, g_variables, g_start, g_end


def advance_with_recorded_steps(advance, scheme, fn, t_start, y, t_end, captures, static_size):
    """One output interval of the adaptive loop with the gradient of this module.

    Args:
        advance: ``advance(fn, t_start, y, t_end, recorder)`` runs the
            adaptive loop over the interval (the controller state, FSAL
            derivative and counters bound by the caller) and returns
            ``(y_end, extras, arrays, count)``: the end state, anything else
            the caller needs (not differentiated), the recorder's arrays and
            the number of attempts.
        scheme: the embedded pair (for its ``step``).
        fn, t_start, y, t_end: the field, interval and initial state.
        captures: the floating tensors ``fn`` closes over
            (:func:`field_captures`).
        static_size: record into ``max_steps`` preallocated entries (XLA).

    Returns:
        ``(y_end, extras)``.
    """
    structure = y
    flat_y = tf.nest.flatten(y)
    num_leaves, num_captures = len(flat_y), len(captures)
    holder = {}

    @tf.custom_gradient
    def run(*args):
        start = tf.nest.pack_sequence_as(structure, list(args[:num_leaves]))
        time_start, time_end = args[num_leaves], args[num_leaves + 1]
        with record.stop_recording():
            recorder = StepRecorder(start, time_start, scheme.max_steps, static_size)
            y_end, extras, arrays, count = advance(fn, time_start, start, time_end, recorder)
        holder["extras"] = extras
        flat_end = tf.nest.flatten(y_end)

        def grad(*upstream, variables=None):
            variables = [v for v in (variables or []) if v.dtype.is_floating]
            cotangent = [tf.zeros_like(leaf) if g is None else g
                         for leaf, g in zip(flat_end, upstream)]
            a, g_captures, g_variables, g_start, g_end = backward_sweep(
                scheme, fn, structure, arrays, count, cotangent, captures, variables)
            input_grads = list(a) + [g_start, g_end] + list(g_captures)
            if variables:
                return input_grads, g_variables
            return input_grads

        return flat_end, grad

    flat_end = run(*flat_y, t_start, t_end, *captures[:num_captures])
    return tf.nest.pack_sequence_as(structure, list(flat_end)), holder["extras"]
