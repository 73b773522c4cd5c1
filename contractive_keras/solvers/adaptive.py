"""Adapters that give ``tfp.math.ode.DormandPrince`` and ``BDF`` our call shape.

* "tfp_dopri5": ``tfp.math.ode.DormandPrince``, the explicit Runge-Kutta pair
  of order 5(4) of Dormand & Prince (1980), 7 stages with first-same-as-
  last, so 6 new evaluations per attempted step; step-size control on the
  RMS error ratio with tolerance ``atol + rtol * max(|y0|, |y1|)``.
  For non-stiff problems. (The name "dopri5" selects this package's own
  pair, :class:`~contractive_keras.solvers.Dopri5`, which XLA compiles.)
* "bdf": ``tfp.math.ode.BDF``, variable-order (1-5) backward
  differentiation formulas with Newton iterations and Jacobians from
  automatic differentiation. For stiff problems.

Gradients: "adjoint" is tfp's own continuous adjoint (``Solver.solve``; it
re-solves the augmented system backwards with the same solver type);
"backprop" differentiates through tfp's solver loop (``Solver._solve``,
the same computation without tfp's custom gradient), which is exact for
the discrete solution but keeps every attempted step in memory and, as
tfp's loops have no static iteration bound, does not compile under XLA.
tfp ignores ``max_num_steps`` under XLA. Its adjoint re-integrates the
state backwards in time, which is unstable for contractive flows (errors
grow like the inverse of the forward contraction).
"""

import tensorflow as tf

from contractive_keras.solvers.arguments import as_time
from contractive_keras.solvers.arguments import as_times
from contractive_keras.solvers.gradients import Adjoint
from contractive_keras.solvers.gradients import Backprop


def tfp_ode():
    """``tfp.math.ode``; TensorFlow Probability is heavy, so it is imported on first use."""
    import tensorflow_probability as tfp  # optional heavy dependency
    return tfp.math.ode


def is_tfp_solver(solver):
    """Whether ``solver`` is a ``tfp.math.ode.Solver`` instance."""
    return isinstance(solver, tfp_ode().Solver)


def make_tfp_solver(name, rtol, atol):
    """A new tfp solver for "tfp_dopri5" or "bdf" with these tolerances."""
    ode = tfp_ode()
    if name == "tfp_dopri5":
        return ode.DormandPrince(rtol=rtol, atol=atol)
    if name == "bdf":
        return ode.BDF(rtol=rtol, atol=atol)
    raise ValueError(f"Unknown tfp method {name!r}; expected 'tfp_dopri5' "
                     f"or 'bdf'.")


def _statistics(solver, diagnostics):
    """Our statistics dict from tfp's diagnostics (see ``Solution.stats``)."""
    ode = tfp_ode()
    evaluations = tf.cast(diagnostics.num_ode_fn_evaluations, tf.int32)
    unknown = tf.constant(-1, tf.int32)
    steps = unknown
    if type(solver) is ode.DormandPrince:  # pylint: disable=unidiomatic-typecheck
        # tfp counts 6 evaluations per attempted step but not the first
        # derivative at t0, which it does evaluate.
        steps = evaluations // solver.ODE_FN_EVALS_PER_STEP
        evaluations = evaluations + 1
    return {
        "num_fn_evals": evaluations,
        "num_steps": steps,
        "num_accepted": unknown,
        "num_rejected": unknown,
        "num_fn_evals_backward": unknown,
        "num_vjp_evals_backward": unknown,
        "num_jacobian_evals": tf.cast(diagnostics.num_jacobian_evaluations,
                                      tf.int32),
    }


def solve_adaptive(solver, fn, y0, t0, t1, *, gradient, times, dtype):
    """Solves with a tfp solver; returns ``(ys, ts, stats)``.

    Args:
        solver: a ``tfp.math.ode.Solver`` instance.
        fn: vector field ``fn(t, y)``.
        y0: nested structure of tensors of ``dtype``.
        t0, t1: start and end times (``t1`` is the last output time when
            ``times`` is None).
        gradient: a ``Backprop`` or ``Adjoint`` instance.
        times: None or a 1-D sequence/tensor of increasing output times.
        dtype: the state's floating dtype.

    Returns:
        ``(ys, ts, stats)``: ``ys`` the state at ``t1`` or the states at
        ``times`` stacked on a leading axis, ``ts`` the output times and
        ``stats`` the statistics dict.

    Raises:
        ValueError: for gradient="checkpoint", which tfp solvers lack.
    """
    if not isinstance(gradient, (Backprop, Adjoint)):
        raise ValueError(
            f"gradient={gradient.name!r} is for fixed-step methods; "
            f"adaptive tfp solvers take 'backprop' or 'adjoint'.")
    initial_time = as_time(t0, dtype)
    if times is None:
        solution_times = tf.reshape(as_time(t1, dtype), [1])
    else:
        solution_times = as_times(times, dtype)
    run = solver.solve if isinstance(gradient, Adjoint) else solver._solve  # pylint: disable=protected-access
    results = run(fn, initial_time, y0, solution_times)
    stats = _statistics(solver, results.diagnostics)
    if times is None:
        ys = tf.nest.map_structure(lambda leaf: leaf[0], results.states)
        return ys, solution_times[0], stats
    return results.states, solution_times, stats
