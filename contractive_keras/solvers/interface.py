"""``odeint`` and ``solve``: the one call shape of every solver.

Both take the same arguments; ``odeint`` returns the states, ``solve`` a
:class:`Solution` that also carries the times and solver statistics.
Fixed-step methods ("euler", "midpoint", "rk4") integrate on the uniform
grid t_k = t0 + k h with :mod:`~contractive_keras.solvers.fixed_step`;
adaptive methods ("dopri5", "bdf" or any ``tfp.math.ode.Solver``) go
through :mod:`~contractive_keras.solvers.adaptive`.
"""

import math
import typing

import numpy as np
import tensorflow as tf

from contractive_keras.solvers import fixed_step
from contractive_keras.solvers.euler import Euler
from contractive_keras.solvers.gradients import get_gradient
from contractive_keras.solvers.midpoint import Midpoint
from contractive_keras.solvers.rk4 import RK4
from contractive_keras.solvers.runge_kutta import ExplicitRungeKutta

FIXED_STEP_METHODS = {"euler": Euler, "midpoint": Midpoint, "rk4": RK4}
ADAPTIVE_METHODS = ("dopri5", "bdf")
KNOWN_METHODS = tuple(FIXED_STEP_METHODS) + ADAPTIVE_METHODS


class Solution(typing.NamedTuple):
    """What :func:`solve` returns (a namedtuple, so ``tf.function`` can too).

    Attributes:
        ys: the state at ``t1`` (same structure as ``y0``), or, when
            ``times`` was given, the states at ``times`` stacked along a new
            leading axis of each leaf.
        ts: ``t1`` as a scalar tensor, or the tensor of ``times``.
        stats: dict of int32 scalar tensors. Always ``num_fn_evals``
            (forward evaluations of ``fn``), ``num_steps`` (steps attempted),
            ``num_accepted``, ``num_rejected`` (-1 where the solver does not
            report them), ``num_fn_evals_backward`` and
            ``num_vjp_evals_backward`` (evaluations of ``fn`` and of its
            vector-Jacobian product that one gradient computation costs;
            -1 where not known in advance).
    """

    ys: typing.Any
    ts: typing.Any
    stats: dict

    @property
    def y1(self):
        """The state at the last output time."""
        if self.ts.shape.rank == 0:
            return self.ys
        return tf.nest.map_structure(lambda leaf: leaf[-1], self.ys)


def get(method):
    """Returns the solver for a method name or instance.

    Args:
        method: one of :data:`KNOWN_METHODS`, an
            :class:`~contractive_keras.solvers.runge_kutta.ExplicitRungeKutta`
            instance, or a ``tfp.math.ode.Solver`` instance.

    Returns:
        A fixed-step scheme instance, or a ``tfp.math.ode.Solver`` (adaptive
        names give a solver with this package's defaults; ``solve`` replaces
        its tolerances by ``rtol``/``atol``).

    Raises:
        ValueError: for an unknown name or an object of another type.

    Example:

    >>> get("rk4").order
    4
    """
    if isinstance(method, ExplicitRungeKutta):
        return method
    if isinstance(method, str):
        key = method.lower()
        if key in FIXED_STEP_METHODS:
            return FIXED_STEP_METHODS[key]()
        if key in ADAPTIVE_METHODS:
            from contractive_keras.solvers import adaptive
            return adaptive.make_tfp_solver(key, rtol=1e-6, atol=1e-6)
        raise ValueError(
            f"Unknown solver {method!r}; known solvers are "
            f"{', '.join(KNOWN_METHODS)}, or pass a tfp.math.ode.Solver "
            f"instance.")
    from contractive_keras.solvers import adaptive
    if adaptive.is_tfp_solver(method):
        return method
    raise ValueError(
        f"solver must be a name ({', '.join(KNOWN_METHODS)}), an "
        f"ExplicitRungeKutta instance or a tfp.math.ode.Solver instance, "
        f"got {method!r} of type {type(method).__name__}.")


def _static_float(value, name):
    """Python float of ``value`` when known at trace time, else None."""
    if isinstance(value, (int, float, np.number)) and not isinstance(
            value, bool):
        return float(value)
    static = tf.get_static_value(value)
    if static is None:
        return None
    static = np.asarray(static)
    if static.shape != ():
        raise ValueError(f"{name} must be a scalar, got shape {static.shape}.")
    return float(static)


def _check_positive(value, name):
    static = _static_float(value, name)
    if static is not None and not static > 0:
        raise ValueError(f"{name} must be > 0, got {static!r}.")


def _state_dtype(y0):
    leaves = tf.nest.flatten(y0)
    if not leaves:
        raise ValueError("y0 must contain at least one tensor.")
    dtypes = {leaf.dtype for leaf in leaves}
    if len(dtypes) != 1 or not leaves[0].dtype.is_floating:
        raise ValueError(
            f"All leaves of y0 must share one floating dtype, got "
            f"{sorted(d.name for d in dtypes)}.")
    return leaves[0].dtype


def _checked(fn, y0):
    """Wraps ``fn`` to check, at trace time, its output against the state."""

    def checked_fn(t, y, *step):
        dy = fn(t, y, *step)
        try:
            tf.nest.assert_same_structure(y, dy, check_types=False)
        except (ValueError, TypeError) as error:
            raise ValueError(
                f"fn(t, y) must return the structure of the state; state "
                f"{tf.nest.map_structure(lambda x: x.shape, y)}, got "
                f"{dy!r}: {error}") from None
        dy = tf.nest.map_structure(tf.convert_to_tensor, dy)
        for index, (leaf, d_leaf) in enumerate(
                zip(tf.nest.flatten(y), tf.nest.flatten(dy))):
            if d_leaf.dtype != leaf.dtype:
                raise ValueError(
                    f"fn(t, y) returned dtype {d_leaf.dtype.name} for state "
                    f"leaf {index} of dtype {leaf.dtype.name}; they must "
                    f"match (cast in fn, or pass y0 in {d_leaf.dtype.name}).")
            if not d_leaf.shape.is_compatible_with(leaf.shape):
                raise ValueError(
                    f"fn(t, y) returned shape {d_leaf.shape} for state leaf "
                    f"{index} of shape {leaf.shape}; they must match.")
        return tf.nest.pack_sequence_as(y, tf.nest.flatten(dy))

    return checked_fn


def as_time(value, dtype):
    """``value`` as a scalar tensor of ``dtype``, without a float32 detour."""
    if isinstance(value, (tf.Tensor, tf.Variable)):
        return tf.cast(value, dtype)
    return tf.constant(value, dtype)


def _fixed_step_count(t0, t1, steps, step_size, method):
    """The number of steps (Python int) from ``steps`` or ``step_size``."""
    if steps is not None and step_size is not None:
        raise ValueError(
            f"Pass steps or step_size, not both (got steps={steps!r}, "
            f"step_size={step_size!r}).")
    if steps is not None:
        if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)):
            raise ValueError(
                f"steps must be a positive Python int, got {steps!r}.")
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}.")
        return int(steps)
    if step_size is None:
        raise ValueError(
            f"The fixed-step method {method!r} needs steps or step_size.")
    size = _static_float(step_size, "step_size")
    if size is None:
        raise ValueError("step_size must be known at trace time; pass steps.")
    if not size > 0:
        raise ValueError(f"step_size must be > 0, got {size!r}.")
    start, end = _static_float(t0, "t0"), _static_float(t1, "t1")
    if start is None or end is None:
        raise ValueError(
            "With step_size, t0 and t1 must be known at trace time; pass "
            "steps instead.")
    return max(1, math.ceil((end - start) / size * (1 - 1e-12)))


def _static_times(times, t0, t1):
    values = tf.get_static_value(times) if isinstance(
        times, (tf.Tensor, tf.Variable)) else times
    if values is None:
        raise ValueError(
            "times must be known at trace time for fixed-step methods "
            "(a list, a NumPy array or a constant tensor).")
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1 or values.size == 0:
        raise ValueError(
            f"times must be a non-empty 1-D sequence, got shape "
            f"{values.shape}.")
    if np.any(np.diff(values) < 0):
        raise ValueError(f"times must be non-decreasing, got {values}.")
    if t0 is None or t1 is None:
        raise ValueError(
            "With times, t0 and t1 must be known at trace time for "
            "fixed-step methods.")
    tolerance = 1e-9 * max(1.0, abs(t1 - t0))
    if values[0] < t0 - tolerance or values[-1] > t1 + tolerance:
        raise ValueError(
            f"times must lie in [t0, t1] = [{t0}, {t1}], got {values}.")
    return [float(v) for v in values]


def solve(fn, y0, t1, *, t0=0.0, method="rk4", steps=None, step_size=None,
          rtol=1e-6, atol=1e-6, gradient="backprop", times=None,
          with_step_index=False, unroll="auto"):
    """Integrates y' = fn(t, y) from ``t0`` to ``t1``.

    Args:
        fn: the vector field, ``fn(t, y)`` returning a structure like ``y``
            (same shapes and dtypes); with ``with_step_index``,
            ``fn(t, y, step)``. It may read ``tf.Variable``s (Keras
            variables), which receive gradients.
        y0: initial state, a tensor or a nested structure of tensors of one
            floating dtype (float32 or float64). Time has the same dtype.
        t1: final time, > t0.
        t0: initial time.
        method: "euler", "midpoint", "rk4" (fixed step), "dopri5", "bdf"
            (adaptive, from tfp), an ``ExplicitRungeKutta`` instance or a
            ``tfp.math.ode.Solver`` instance.
        steps: fixed-step methods: number of equal steps, h = (t1-t0)/steps.
        step_size: fixed-step methods, instead of ``steps``: the largest
            step size; ``steps = ceil((t1-t0)/step_size)`` equal steps are
            taken, so that the grid ends exactly at t1.
        rtol, atol: adaptive methods: relative and absolute tolerances
            (must be > 0; ignored by fixed-step methods).
        gradient: "backprop", "checkpoint" or "adjoint" (see
            :mod:`~contractive_keras.solvers.gradients`), or an instance of
            those classes. Adaptive methods: "backprop" differentiates
            through tfp's solver loop (not under XLA), "adjoint" uses tfp's
            own adjoint; "checkpoint" is fixed-step only.
        times: optional non-decreasing output times in [t0, t1]. Fixed-step
            methods integrate on the same uniform grid and reach an output
            time between grid nodes by one partial step of the same scheme
            from the node before it (same order of accuracy).
        with_step_index: fixed-step methods only: call ``fn(t, y, step)``
            with ``step`` the int32 scalar index (0..steps-1) of the step the
            stage belongs to, e.g. to use weights K[step] per step.
        unroll: fixed-step methods: True (a Python loop, best for few steps),
            False (``tf.while_loop``), or "auto" (unrolled up to
            ``fixed_step.UNROLL_THRESHOLD`` steps).

    Returns:
        A :class:`Solution`.

    Raises:
        ValueError: for a non-positive ``steps``/``step_size``/``rtol``/
            ``atol``, ``t1 <= t0``, an unknown method or gradient, options
            that do not apply to the method, or a vector field whose output
            does not match the state in structure, shape or dtype.

    Example:

    >>> import tensorflow as tf
    >>> solution = solve(lambda t, y: -y, tf.constant([1.0]), 1.0, steps=10)
    >>> round(float(solution.ys[0]), 5), int(solution.stats["num_fn_evals"])
    (0.36788, 40)
    """
    solver = get(method)
    gradient_method = get_gradient(gradient)
    _check_positive(rtol, "rtol")
    _check_positive(atol, "atol")
    if not (isinstance(unroll, bool) or (isinstance(unroll, str)
                                         and unroll == "auto")):
        raise ValueError(
            f"unroll must be True, False or 'auto', got {unroll!r}.")
    y0 = tf.nest.map_structure(tf.convert_to_tensor, y0)
    dtype = _state_dtype(y0)
    start, end = _static_float(t0, "t0"), _static_float(t1, "t1")
    if start is not None and end is not None and not end > start:
        raise ValueError(f"t1 must be > t0, got t0={start!r}, t1={end!r}.")
    checked_fn = _checked(fn, y0)

    if not isinstance(solver, ExplicitRungeKutta):
        from contractive_keras.solvers import adaptive
        if with_step_index:
            raise ValueError(
                f"with_step_index=True needs a fixed-step method "
                f"({', '.join(FIXED_STEP_METHODS)}); the adaptive method "
                f"{method!r} has no step index.")
        if steps is not None or step_size is not None:
            raise ValueError(
                f"steps/step_size apply to fixed-step methods; the adaptive "
                f"method {method!r} chooses its steps from rtol and atol.")
        if isinstance(method, str):
            solver = adaptive.make_tfp_solver(method.lower(), rtol, atol)
        ys, ts, stats = adaptive.solve_adaptive(
            solver, checked_fn, y0, t0, t1, gradient=gradient_method,
            times=times, dtype=dtype)
        return Solution(ys=ys, ts=ts, stats=stats)

    count = _fixed_step_count(t0, t1, steps, step_size, solver.name)
    t0_tensor = as_time(t0, dtype)
    h = (as_time(t1, dtype) - t0_tensor) / count
    stages = solver.stages
    if times is None:
        plan = [(count, 0.0)]
    else:
        plan = fixed_step.output_plan(
            _static_times(times, start, end), start, end, count)

    outputs, node, partial_steps = [], 0, 0
    for target, offset in plan:
        y0 = gradient_method.advance(
            solver, checked_fn, y0, t0_tensor, h, node, target - node,
            unroll=unroll, with_step_index=with_step_index)
        node = target
        if offset == 0.0:
            outputs.append(y0)
            continue
        partial_steps += 1
        stage_fn = fixed_step.bind_step_index(
            checked_fn, with_step_index, tf.constant(node, tf.int32))
        outputs.append(solver.step(
            stage_fn, t0_tensor + node * h, y0, tf.constant(offset, dtype)))

    backward = gradient_method.backward_evaluations(stages, node)
    backward["vjp"] += stages * partial_steps
    stats = {
        "num_fn_evals": stages * (node + partial_steps),
        "num_steps": node + partial_steps,
        "num_accepted": node + partial_steps,
        "num_rejected": 0,
        "num_fn_evals_backward": backward["fn"],
        "num_vjp_evals_backward": backward["vjp"],
    }
    stats = {key: tf.constant(value, tf.int32) for key, value in stats.items()}
    if times is None:
        return Solution(ys=outputs[0], ts=as_time(t1, dtype), stats=stats)
    ys = tf.nest.map_structure(lambda *leaves: tf.stack(leaves), *outputs)
    ts = tf.constant([t for t in _static_times(times, start, end)], dtype)
    return Solution(ys=ys, ts=ts, stats=stats)


def odeint(fn, y0, t1, *, t0=0.0, method="rk4", steps=None, step_size=None,
           rtol=1e-6, atol=1e-6, gradient="backprop", times=None,
           with_step_index=False, unroll="auto"):
    """Integrates y' = fn(t, y) and returns y(t1), or the states at ``times``.

    Same arguments as :func:`solve`, which also returns times and solver
    statistics.

    Returns:
        The state at ``t1`` (structure of ``y0``), or with ``times`` the
        states at ``times`` stacked along a new leading axis.

    Raises:
        ValueError: see :func:`solve`.

    Example:

    >>> import tensorflow as tf
    >>> y1 = odeint(lambda t, y: -y, tf.constant(1.0, tf.float64), 1.0,
    ...             method="rk4", steps=20)
    >>> round(float(y1), 7)
    0.3678795
    """
    return solve(fn, y0, t1, t0=t0, method=method, steps=steps,
                 step_size=step_size, rtol=rtol, atol=atol, gradient=gradient,
                 times=times, with_step_index=with_step_index,
                 unroll=unroll).ys
