"""How gradients flow through a fixed-step solve: three small strategies.

Each strategy advances a state over ``count`` grid steps with
:func:`~contractive_keras.solvers.fixed_step.take_steps` and decides what
is kept for the backward pass:

* :class:`Backprop` -- automatic differentiation through every operation
  of every step. Exact gradient of the discrete map; memory grows
  linearly with the number of steps. The fastest when memory allows.
* :class:`Checkpoint` -- keeps only the states at segment boundaries and
  recomputes each segment in the backward pass (``tf.recompute_grad``,
  ``jax.checkpoint``, ``torch.utils.checkpoint``: one dispatch,
  :func:`~contractive_keras.solvers.dispatch.recompute`; Griewank &
  Walther, *Evaluating Derivatives*, ch. 12). Exact gradient
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
  CH-NODE layers with many steps. TensorFlow only
  (:mod:`~contractive_keras.solvers.adjoint`).

Backends: "backprop" and "checkpoint" run on TensorFlow, JAX and PyTorch;
"adjoint" refuses off TensorFlow in one line naming them.

Gradients reach ``y0``, the times (through the step size) and every
Keras variable that ``fn`` reads (on JAX, the traced values that Keras's
stateless trainer puts in their place). On TensorFlow, with
"checkpoint" and "adjoint", tensors that ``fn`` closes over which are not
variables get no gradient: pass them in the state or make them variables.
With "adjoint" and ``with_step_index=True`` the times get no gradient.
"""

import math

import keras

from contractive_keras import backend
from contractive_keras.solvers import dispatch
from contractive_keras.solvers.fixed_step import take_steps

# What a backend without the adjoint offers instead.
ALTERNATIVE = "gradient='backprop' or gradient='checkpoint'"


def _flat(structure):
    return keras.tree.flatten(structure)


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
            y_start = keras.tree.pack_sequence_as(y, list(args[:num_leaves]))
            y_end = take_steps(scheme, fn, y_start, args[num_leaves],
                               args[num_leaves + 1], first, length,
                               unroll=unroll, with_step_index=with_step_index)
            return _flat(y_end)

        flat_end = dispatch.recompute(run, *_flat(y), t0, h)
        return keras.tree.pack_sequence_as(y, list(flat_end))

    def backward_evaluations(self, stages, count):
        """Evaluations of ``fn`` and of its vector-Jacobian product."""
        return {"fn": stages * count, "vjp": stages * count}


class Adjoint:
    """Continuous adjoint: solve the adjoint equations backwards in time.

    See the module docstring for the equations and their stability caveat.
    TensorFlow only (:mod:`~contractive_keras.solvers.adjoint`); on JAX and
    PyTorch it refuses in one line: use "backprop" or "checkpoint".

    Example:

    >>> from contractive_keras import solvers
    >>> y1 = solvers.odeint(lambda t, y: -y, 1.0, 1.0, steps=100,
    ...                     gradient="adjoint")
    """

    name = "adjoint"

    @staticmethod
    def require_backend():
        """Refuses (one line) on a Keras backend other than TensorFlow."""
        backend.require_tensorflow("gradient='adjoint'", ALTERNATIVE)

    def advance(self, scheme, fn, y, t0, h, start, count, *, unroll,
                with_step_index):
        """Advances ``y`` by ``count`` steps from node ``start``."""
        self.require_backend()
        from contractive_keras.solvers import adjoint  # pylint: disable=import-outside-toplevel
        return adjoint.advance(scheme, fn, y, t0, h, start, count, unroll=unroll,
                               with_step_index=with_step_index)

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
