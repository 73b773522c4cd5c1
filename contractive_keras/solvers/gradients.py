"""How gradients flow through a fixed-step solve: three small strategies.

Each strategy advances a state over ``count`` grid steps with
:func:`~contractive_keras.solvers.fixed_step.take_steps` and decides what
is kept for the backward pass:

* :class:`Backprop` -- automatic differentiation through every operation
  of every step. Exact gradient of the discrete map; memory grows
  linearly with the number of steps. The fastest when memory allows.
* :class:`Checkpoint` -- keeps only the states at segment boundaries and
  recomputes each segment in the backward pass with ``tf.recompute_grad``
  (Griewank & Walther, *Evaluating Derivatives*, ch. 12). Exact gradient
  of the discrete map; with segments of sqrt(steps) steps, memory grows
  like sqrt(steps); one extra forward solve of compute.
* :class:`Adjoint` -- the continuous adjoint method (Pontryagin; Chen et
  al., *Neural ODEs*, 2018): with a(t) = dL/dy(t), solve backwards in time
      y' = f(t, y, theta),
      a' = -a^T df/dy,
      g' = -a^T df/dtheta,   g(t1) = 0,
  from (y(t1), dL/dy(t1), 0) to t0 with the same scheme and grid; then
  dL/dy0 = a(t0) and dL/dtheta = g(t0). Memory does not grow with the
  step count. The gradient is that of the continuous problem, accurate to
  the scheme's order, not the exact gradient of the discrete map. The
  backward pass re-integrates y backwards in time, which is unstable for
  contractive flows (a flow that contracts forward expands backward: errors
  grow like the inverse contraction factor). Prefer "checkpoint" for
  CH-NODE layers with many steps.

Gradients reach ``y0``, the times (through the step size) and every
``tf.Variable`` (Keras variables included) that ``fn`` reads. With
"checkpoint" and "adjoint", tensors that ``fn`` closes over which are not
variables get no gradient: pass them in the state or make them variables.
With "adjoint" and ``with_step_index=True`` the times get no gradient.
"""

import math

import tensorflow as tf
from tensorflow.python.eager import record  # pylint: disable=g-direct-tensorflow-import

from contractive_keras.solvers.fixed_step import take_steps


def _flat(structure):
    return tf.nest.flatten(structure)


class Backprop:
    """Differentiate through the solver's own operations (the default).

    Example:

    >>> from contractive_keras import solvers
    >>> y1 = solvers.odeint(lambda t, y: -y, 1.0, 1.0, steps=4,
    ...                     gradient=solvers.Backprop())
    """

    name = "backprop"

    def advance(self, scheme, fn, y, t0, h, start, count, *, unroll,
                with_step_index):
        """Advances ``y`` by ``count`` steps from node ``start``."""
        return take_steps(scheme, fn, y, t0, h, start, count, unroll=unroll,
                          with_step_index=with_step_index)

    def backward_evaluations(self, stages, count):
        """Evaluations of ``fn`` and of its vector-Jacobian product."""
        return {"fn": 0, "vjp": stages * count}


class Checkpoint:
    """Recompute segments of steps in the backward pass.

    Args:
        segment_steps: steps per checkpointed segment; None chooses
            ceil(sqrt(count)), which balances stored boundary states
            against the states recomputed per segment.

    Example:

    >>> from contractive_keras import solvers
    >>> y1 = solvers.odeint(lambda t, y: -y, 1.0, 1.0, steps=100,
    ...                     gradient="checkpoint")
    """

    name = "checkpoint"

    def __init__(self, segment_steps=None):
        if segment_steps is not None and (
                isinstance(segment_steps, bool)
                or not isinstance(segment_steps, int) or segment_steps < 1):
            raise ValueError(
                f"segment_steps must be a positive int or None, got "
                f"{segment_steps!r}.")
        self.segment_steps = segment_steps

    def segments(self, start, count):
        """The (first step, number of steps) of each segment."""
        size = self.segment_steps or max(1, math.ceil(math.sqrt(count)))
        return [(first, min(size, start + count - first))
                for first in range(start, start + count, size)]

    def advance(self, scheme, fn, y, t0, h, start, count, *, unroll,
                with_step_index):
        """Advances ``y`` by ``count`` steps from node ``start``."""
        for first, length in self.segments(start, count):
            y = self._segment(scheme, fn, y, t0, h, first, length, unroll,
                              with_step_index)
        return y

    @staticmethod
    def _segment(scheme, fn, y, t0, h, first, length, unroll,
                 with_step_index):
        num_leaves = len(_flat(y))

        def run(*args):
            y_start = tf.nest.pack_sequence_as(y, list(args[:num_leaves]))
            y_end = take_steps(scheme, fn, y_start, args[num_leaves],
                               args[num_leaves + 1], first, length,
                               unroll=unroll, with_step_index=with_step_index)
            return _flat(y_end)

        flat_end = tf.recompute_grad(run)(*_flat(y), t0, h)
        return tf.nest.pack_sequence_as(y, list(flat_end))

    def backward_evaluations(self, stages, count):
        """Evaluations of ``fn`` and of its vector-Jacobian product."""
        return {"fn": stages * count, "vjp": stages * count}


class Adjoint:
    """Continuous adjoint: solve the adjoint equations backwards in time.

    See the module docstring for the equations and their stability caveat.

    Example:

    >>> from contractive_keras import solvers
    >>> y1 = solvers.odeint(lambda t, y: -y, 1.0, 1.0, steps=100,
    ...                     gradient="adjoint")
    """

    name = "adjoint"

    def advance(self, scheme, fn, y, t0, h, start, count, *, unroll,
                with_step_index):
        """Advances ``y`` by ``count`` steps from node ``start``."""
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
                    self._time_gradients(fn, structure, args[:num_leaves],
                                         y_end, cotangent, a_start, t0_, h_,
                                         start, count, with_step_index))
                if variables:
                    return input_grads, g_start
                return input_grads

            return flat_end, grad

        flat_end = run(*_flat(y), t0, h)
        return tf.nest.pack_sequence_as(structure, list(flat_end))

    @staticmethod
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

    def backward_evaluations(self, stages, count):
        """Evaluations of ``fn`` and of its vector-Jacobian product."""
        return {"fn": stages * count + 2, "vjp": stages * count}


GRADIENTS = {"backprop": Backprop, "checkpoint": Checkpoint,
             "adjoint": Adjoint}


def get_gradient(gradient):
    """Returns a gradient strategy from its name or an instance."""
    if isinstance(gradient, (Backprop, Checkpoint, Adjoint)):
        return gradient
    if isinstance(gradient, str) and gradient in GRADIENTS:
        return GRADIENTS[gradient]()
    raise ValueError(
        f"Unknown gradient method {gradient!r}; expected one of "
        f"{sorted(GRADIENTS)} or a Backprop/Checkpoint/Adjoint instance.")
