"""The adaptive loop of this package's embedded pairs (Dopri5) in ``keras.ops``.

Used on JAX and PyTorch; TensorFlow keeps
:mod:`~contractive_keras.solvers.adaptive_loop` (XLA-compiled while loop,
steps recorded for the gradient).  The algorithm is the same: between
consecutive output times the loop attempts steps proposed by the
:class:`~contractive_keras.solvers.step_size_control.IController`; the
last step of an interval is shortened (or stretched by at most 1 %) to
land on the output time; each interval is one ``keras.ops.while_loop``
with ``maximum_iterations = scheme.max_steps`` (the state becomes NaN if
they run out).  The step sizes and accept/reject decisions are constants
for the gradient (error ratios under ``stop_gradient``), as in
torchdiffeq and diffrax.

Gradients (gradient="backprop", that of the discrete solution):

* PyTorch: Keras's ``while_loop`` is a Python loop, so autograd records
  every accepted and rejected step (memory grows with the attempts);
* JAX: ``lax.while_loop`` has no reverse-mode derivative, so the loop runs
  inside a ``jax.custom_vjp`` that records each attempted step (its
  state, time, size and verdict: one state per attempt, ``max_steps``
  preallocated per interval) and, backwards, recomputes each accepted step
  and takes its vector-Jacobian product
  (:mod:`~contractive_keras.solvers.embedded_jax`), the same discrete
  adjoint as TensorFlow's
  :mod:`~contractive_keras.solvers.adaptive_backprop`.  Gradients reach
  ``y0``, the output times and whatever ``fn`` closes over (the traced
  values of Keras's stateless trainer included).

gradient="adjoint" is TensorFlow only and "checkpoint" fixed-step only.
"""

import keras

from contractive_keras.solvers.gradients import Backprop
from contractive_keras.solvers.step_size_control import IController

ops = keras.ops

# As in adaptive_loop: a step short of the output time by less than 1 % is
# stretched to land on it (Hairer's DOPRI5).
LAST_STEP_STRETCH = 1.01


def _where(condition, new, old):
    return keras.tree.map_structure(lambda a, b: ops.where(condition, a, b), new, old)


def controller_of(scheme, rtol, atol):
    """The step-size controller of ``scheme`` (a ``Dopri5``) with these tolerances."""
    return IController(rtol, atol, scheme.order, scheme.safety,
                       scheme.min_factor, scheme.max_factor)


def attempt(scheme, controller, fn, t, y, f, dt, t_end):
    """One attempted step towards ``t_end``.

    Returns ``(t_next, y_next, f_next, dt_next, accepted, last, h)``: the
    time, state and slope after the attempt (unchanged when rejected), the
    next proposed step, the verdict, whether the step was the interval's
    last, and its size.
    """
    remaining = t_end - t
    last = ops.convert_to_tensor(LAST_STEP_STRETCH, keras.backend.standardize_dtype(
        dt.dtype)) * dt >= remaining
    h = ops.where(last, remaining, dt)
    y1, f1, error = scheme.step_with_error(fn, t, y, h, f)
    ratio = ops.stop_gradient(controller.error_ratio(y, y1, error))
    accepted = ratio <= 1.0
    t_next = ops.where(accepted, ops.where(last, t_end, t + h), t)
    dt_next = ops.stop_gradient(controller.next_step_size(h, ratio, accepted))
    # Shortening the last step to hit t_end must not shrink the next.
    dt_next = ops.where(ops.logical_and(accepted, last), ops.maximum(dt_next, dt), dt_next)
    return (t_next, _where(accepted, y1, y), _where(accepted, f1, f),
            ops.stop_gradient(dt_next), accepted, last, h)


def advance(scheme, controller, fn, t, y, f, dt, t_end, counts):
    """Steps from ``t`` to ``t_end``; returns ``(y, f, dt, counts, reached)``."""

    def body(t, y, f, dt, num_steps, num_accepted):
        t, y, f, dt, accepted, _, _ = attempt(scheme, controller, fn, t, y, f, dt, t_end)
        return (t, y, f, dt, num_steps + 1,
                num_accepted + ops.cast(accepted, "int32"))

    t, y, f, dt, num_steps, num_accepted = ops.while_loop(
        lambda t, *_: t < t_end, body, (t, y, f, dt, counts[0], counts[1]),
        maximum_iterations=scheme.max_steps)
    return y, f, dt, (num_steps, num_accepted), t >= t_end


def integrate(scheme, fn, y0, t0, output_times, rtol, atol):
    """Solves forward; returns (list of states at ``output_times``, stats).

    The gradient is that of the loop as the backend records it (PyTorch);
    see :func:`solve_embedded` for JAX.
    """
    controller = controller_of(scheme, rtol, atol)
    f = fn(t0, y0)
    dt = ops.stop_gradient(controller.initial_step_size(fn, t0, y0, f))
    zero = ops.convert_to_tensor(0, "int32")
    counts = (zero, zero)
    t, y, states, all_reached = t0, y0, [], ops.convert_to_tensor(True)
    for t_end in output_times:
        y, f, dt, counts, reached = advance(scheme, controller, fn, t, y, f, dt,
                                            t_end, counts)
        t = t_end
        all_reached = ops.logical_and(all_reached, reached)
        states.append(keras.tree.map_structure(
            lambda leaf: ops.where(all_reached, leaf, ops.full_like(leaf, float("nan"))), y))
    return states, statistics(scheme, counts, backward=None)


def statistics(scheme, counts, backward):
    """The stats dict (``backward``: evaluations per gradient, None if unknown)."""
    num_steps, num_accepted = counts
    unknown = ops.convert_to_tensor(-1, "int32")
    backward = unknown if backward is None else backward
    return {
        "num_fn_evals": 2 + (scheme.stages - 1) * num_steps,
        "num_steps": num_steps,
        "num_accepted": num_accepted,
        "num_rejected": num_steps - num_accepted,
        "num_fn_evals_backward": backward,
        "num_vjp_evals_backward": backward,
    }


def check_gradient(scheme, gradient):
    """Refuses gradients other than "backprop" ("adjoint": TensorFlow only)."""
    if isinstance(gradient, Backprop):
        return
    if gradient.name == "adjoint":
        gradient.require_backend()
    raise ValueError(
        f"gradient={gradient.name!r} is for fixed-step methods; "
        f"{type(scheme).__name__} takes 'backprop' or 'adjoint'.")


def solve_embedded(scheme, fn, y0, t0, output_times, *, rtol, atol, gradient):
    """The solve on PyTorch (autograd records the loop); returns (states, stats)."""
    check_gradient(scheme, gradient)
    return integrate(scheme, fn, y0, t0, output_times, rtol, atol)
