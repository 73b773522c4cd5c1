"""The continuous adjoint of a fixed-step solve (TensorFlow only).

The equations and their stability caveat are in
:mod:`~contractive_keras.solvers.gradients` (:class:`Adjoint`). This
module is TensorFlow code (``tf.custom_gradient`` with the variables that
``fn`` reads, ``tf.GradientTape``); ``Adjoint.advance`` imports it only
after ``backend.require_tensorflow``.
"""

import tensorflow as tf
from tensorflow.python.eager import record  # pylint: disable=g-direct-tensorflow-import

from contractive_keras.solvers.fixed_step import take_steps


def _flat(structure):
    return tf.nest.flatten(structure)


def advance(scheme, fn, y, t0, h, start, count, *, unroll, with_step_index):
    """Advances ``y`` by ``count`` steps from node ``start``, adjoint gradient."""
    if count == 0:
        return y
    structure = y
    num_leaves = len(_flat(y))

    def evaluate(t, state, step_args):
        return fn(t, state, *step_args)

    @tf.custom_gradient
    def run(*args):
        y_start = tf.nest.pack_sequence_as(structure,
                                           list(args[:num_leaves]))
        t0_, h_ = args[num_leaves], args[num_leaves + 1]
        # In eager mode an outer tape would otherwise record (and keep
        # alive) every forward operation; tf.recompute_grad does the same.
        with record.stop_recording():
            y_end = take_steps(scheme, fn, y_start, t0_, h_, start, count,
                               unroll=unroll,
                               with_step_index=with_step_index)
        flat_end = _flat(y_end)

        def grad(*upstream, variables=None):
            variables = [v for v in (variables or [])
                         if v.dtype.is_floating]
            cotangent = tf.nest.pack_sequence_as(structure, [
                tf.zeros_like(leaf) if g is None else g
                for leaf, g in zip(flat_end, upstream)])

            def augmented(t, state, *step_args):
                y_now, a_now, _ = state
                with tf.GradientTape() as tape:
                    tape.watch(_flat(y_now))
                    tape.watch(variables)
                    dy = evaluate(t, y_now, step_args)
                vjp_y, vjp_v = tape.gradient(
                    _flat(dy), (_flat(y_now), variables),
                    output_gradients=_flat(a_now),
                    unconnected_gradients=tf.UnconnectedGradients.ZERO)
                vjp_y = tf.nest.pack_sequence_as(y_now, vjp_y)
                vjp_v = [tf.convert_to_tensor(g) for g in vjp_v]
                return (dy, tf.nest.map_structure(tf.negative, vjp_y),
                        [-g for g in vjp_v])

            state = (y_end, cotangent,
                     [tf.zeros_like(tf.convert_to_tensor(v))
                      for v in variables])
            _, a_start, g_start = take_steps(
                scheme, augmented, state, t0_, h_, start, count,
                unroll=unroll, with_step_index=with_step_index,
                reverse=True)
            input_grads = _flat(a_start) + list(
                _time_gradients(fn, structure, args[:num_leaves],
                                y_end, cotangent, a_start, t0_, h_,
                                start, count, with_step_index))
            if variables:
                return input_grads, g_start
            return input_grads

        return flat_end, grad

    flat_end = run(*_flat(y), t0, h)
    return tf.nest.pack_sequence_as(structure, list(flat_end))


def _time_gradients(fn, structure, flat_start, y_end, a_end, a_start, t0,
                    h, start, count, with_step_index):
    """dL/dt0 and dL/dh from dL/dt_end = a.f(t_end), dL/dt_start = -a.f(t_start)."""
    if with_step_index:
        return None, None
    y_start = tf.nest.pack_sequence_as(structure, list(flat_start))
    t_start = t0 + start * h
    t_end = t0 + (start + count) * h

    def inner(a, f):
        return tf.add_n([tf.reduce_sum(x * tf.cast(z, x.dtype))
                         for x, z in zip(_flat(a), _flat(f))])

    d_end = tf.cast(inner(a_end, fn(t_end, y_end)), t0.dtype)
    d_start = -tf.cast(inner(a_start, fn(t_start, y_start)), t0.dtype)
    return d_end + d_start, (start + count) * d_end + start * d_start
