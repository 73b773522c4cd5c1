"""``odeint`` and ``solve``: the one call shape of every solver.

Both take the same arguments; ``odeint`` returns the states, ``solve`` a
:class:`Solution` that also carries the times and solver statistics.
Fixed-step methods ("euler", "midpoint", "rk4") integrate on the uniform
grid t_k = t0 + k h with :mod:`~contractive_keras.solvers.fixed_step`.
Adaptive methods: "dopri5" (or a :class:`~contractive_keras.solvers.Dopri5`
instance) is this package's Dormand-Prince pair
(:mod:`~contractive_keras.solvers.adaptive_loop`: XLA-compilable, with a
gradient); "tfp_dopri5" (tfp's ``DormandPrince``), "bdf" (tfp's ``BDF``)
and any ``tfp.math.ode.Solver`` instance go through tfp
(:mod:`~contractive_keras.solvers.adaptive`; not XLA-compilable).

Backends: the fixed-step methods with gradient "backprop" or "checkpoint"
and "dopri5" with "backprop" run on TensorFlow, JAX and PyTorch (on JAX
and PyTorch "dopri5" runs :mod:`~contractive_keras.solvers.embedded_loop`).
The tfp solvers and gradient="adjoint" are TensorFlow code: elsewhere they
refuse in one line naming the alternative. TensorFlow and tfp are imported
only when those are used.
"""

import sys
import typing

import keras

from contractive_keras import backend
from contractive_keras.solvers import arguments
from contractive_keras.solvers import fixed_step
from contractive_keras.solvers.dopri5 import Dopri5
from contractive_keras.solvers.euler import Euler
from contractive_keras.solvers.gradients import get_gradient
from contractive_keras.solvers.midpoint import Midpoint
from contractive_keras.solvers.rk4 import RK4
from contractive_keras.solvers.runge_kutta import EmbeddedRungeKutta
from contractive_keras.solvers.runge_kutta import ExplicitRungeKutta

FIXED_STEP_METHODS = {"euler": Euler, "midpoint": Midpoint, "rk4": RK4}
# "dopri5" selects this package's Dopri5 (the fastest correct one: XLA
# compiles it, and its gradient); tfp's solvers have explicit names.
OWN_ADAPTIVE_METHODS = {"dopri5": Dopri5}
TFP_METHODS = ("bdf", "tfp_dopri5")
# What to use instead of tfp's solvers off TensorFlow.
TFP_ALTERNATIVE = ("method='dopri5' (this package's Dormand-Prince) or a fixed-step "
                   "method ('euler', 'midpoint', 'rk4')")
ADAPTIVE_METHODS = tuple(OWN_ADAPTIVE_METHODS) + TFP_METHODS
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
        if len(self.ts.shape) == 0:
            return self.ys
        return keras.tree.map_structure(lambda leaf: leaf[-1], self.ys)


def is_tfp_solver(solver):
    """Whether ``solver`` is a ``tfp.math.ode.Solver`` (False where tfp is not loaded)."""
    if sys.modules.get("tensorflow_probability") is None:
        return False
    from contractive_keras.solvers import adaptive  # pylint: disable=import-outside-toplevel
    return adaptive.is_tfp_solver(solver)


def tfp_adapters(what):
    """The tfp adapter module, after refusing (one line) off TensorFlow."""
    backend.require_tensorflow(what, TFP_ALTERNATIVE)
    from contractive_keras.solvers import adaptive  # pylint: disable=import-outside-toplevel
    return adaptive


def get(method):
    """Returns the solver for a method name or instance.

    Args:
        method: one of :data:`KNOWN_METHODS`, an
            :class:`~contractive_keras.solvers.runge_kutta.ExplicitRungeKutta`
            instance, or a ``tfp.math.ode.Solver`` instance.

    Returns:
        A fixed-step scheme instance, a :class:`Dopri5` for "dopri5", or a
        ``tfp.math.ode.Solver`` for "tfp_dopri5" and "bdf" (with this
        package's default tolerances; ``solve`` replaces them by
        ``rtol``/``atol``).

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
        if key in OWN_ADAPTIVE_METHODS:
            return OWN_ADAPTIVE_METHODS[key]()
        if key in TFP_METHODS:
            return tfp_adapters(f"the {key!r} solver (tfp)").make_tfp_solver(
                key, rtol=1e-6, atol=1e-6)
        raise ValueError(
            f"Unknown solver {method!r}; known solvers are "
            f"{', '.join(KNOWN_METHODS)}, or pass a tfp.math.ode.Solver "
            f"instance.")
    if is_tfp_solver(method):
        return method
    raise ValueError(
        f"solver must be a name ({', '.join(KNOWN_METHODS)}), an "
        f"ExplicitRungeKutta instance or a tfp.math.ode.Solver instance, "
        f"got {method!r} of type {type(method).__name__}.")


def solve(fn, y0, t1, *, t0=0.0, method="rk4", steps=None, step_size=None,
          rtol=1e-6, atol=1e-6, gradient="backprop", times=None,
          with_step_index=False, unroll="auto"):
    """Integrates y' = fn(t, y) from ``t0`` to ``t1``.

    Args:
        fn: the vector field, ``fn(t, y)`` returning a structure like ``y``
            (same shapes and dtypes); with ``with_step_index``,
            ``fn(t, y, step)``. It may read Keras variables (and, on
            TensorFlow, ``tf.Variable``s), which receive gradients.
        y0: initial state, a tensor or a nested structure of tensors of one
            floating dtype (float32 or float64). Time has the same dtype.
        t1: final time, > t0.
        t0: initial time.
        method: "euler", "midpoint", "rk4" (fixed step), "dopri5" (this
            package's adaptive :class:`~contractive_keras.solvers.Dopri5`:
            XLA-compilable, exact step statistics), "tfp_dopri5", "bdf"
            (tfp's ``DormandPrince`` and ``BDF``, not XLA-compilable), an
            ``ExplicitRungeKutta`` or ``Dopri5`` instance, or a
            ``tfp.math.ode.Solver`` instance (which keeps its own
            tolerances; ``rtol``/``atol`` then do not apply).
        steps: fixed-step methods: number of equal steps, h = (t1-t0)/steps.
        step_size: fixed-step methods, instead of ``steps``: the largest
            step size; ``steps = ceil((t1-t0)/step_size)`` equal steps are
            taken, so that the grid ends exactly at t1.
        rtol, atol: adaptive methods: relative and absolute tolerances
            (must be > 0; ignored by fixed-step methods).
        gradient: "backprop", "checkpoint" or "adjoint" (see
            :mod:`~contractive_keras.solvers.gradients`), or an instance of
            those classes. Adaptive methods: "backprop" is the gradient of
            the discrete solution (step sizes held constant): ``Dopri5``
            records its steps and recomputes each in the backward pass
            (:mod:`~contractive_keras.solvers.adaptive_backprop`, also
            under XLA), tfp's solvers differentiate through their loop (not
            under XLA); "adjoint" is tfp's own adjoint for tfp solvers and
            the continuous adjoint for ``Dopri5``; "checkpoint" is
            fixed-step only. Off TensorFlow: "backprop" and "checkpoint"
            (fixed step), "backprop" ("dopri5"; see
            :mod:`~contractive_keras.solvers.embedded_loop`); "adjoint"
            refuses.
        times: optional non-decreasing output times in [t0, t1]. Fixed-step
            methods integrate on the same uniform grid and reach an output
            time between grid nodes by one partial step of the same scheme
            from the node before it (same order of accuracy); they need
            ``times`` known at trace time. ``Dopri5`` shortens the step
            that crosses an output time to land on it; tfp solvers
            interpolate.
        with_step_index: fixed-step methods only: call ``fn(t, y, step)``
            with ``step`` the index (0..steps-1) of the step the stage
            belongs to, e.g. to use weights ``keras.ops.take(K, step)`` or
            ``K[step]`` per step: an int32 scalar tensor, or on JAX and
            PyTorch a Python int in unrolled steps.
        unroll: fixed-step methods: True (a Python loop, best for few steps),
            False (``tf.while_loop``; ``keras.ops.fori_loop`` on JAX and
            PyTorch), or "auto": unrolled up to a step count measured per
            context (``fixed_step.UNROLL_THRESHOLDS``: 8 under XLA with a
            gradient tape -- and on JAX --, 32 under XLA without, 32 in
            graphs with a tape, 16 otherwise).

    Returns:
        A :class:`Solution`.

    Raises:
        ValueError: for a non-positive ``steps``/``step_size``/``rtol``/
            ``atol``, ``t1 <= t0``, an unknown method or gradient, options
            that do not apply to the method, or a vector field whose output
            does not match the state in structure, shape or dtype.
        NotImplementedError: off TensorFlow, for tfp's solvers and
            gradient="adjoint" (one line naming the alternative).

    Example:

    >>> import tensorflow as tf
    >>> solution = solve(lambda t, y: -y, tf.constant([1.0]), 1.0, steps=10)
    >>> round(float(solution.ys[0]), 5), int(solution.stats["num_fn_evals"])
    (0.36788, 40)
    """
    solver = get(method)
    gradient_method = get_gradient(gradient)
    arguments.check_positive(rtol, "rtol")
    arguments.check_positive(atol, "atol")
    if not (isinstance(unroll, bool) or (isinstance(unroll, str)
                                         and unroll == "auto")):
        raise ValueError(
            f"unroll must be True, False or 'auto', got {unroll!r}.")
    if gradient_method.name == "adjoint":
        gradient_method.require_backend()
    y0 = keras.tree.map_structure(keras.ops.convert_to_tensor, y0)
    dtype = arguments.state_dtype(y0)
    start = arguments.static_float(t0, "t0")
    end = arguments.static_float(t1, "t1")
    if start is not None and end is not None and not end > start:
        raise ValueError(f"t1 must be > t0, got t0={start!r}, t1={end!r}.")
    checked_fn = arguments.checked_field(fn, y0)
    if isinstance(solver, ExplicitRungeKutta) and not isinstance(
            solver, EmbeddedRungeKutta):
        return _solve_fixed_step(
            solver, checked_fn, y0, t0, t1, dtype, steps=steps,
            step_size=step_size, gradient=gradient_method, times=times,
            with_step_index=with_step_index, unroll=unroll)
    if with_step_index:
        raise ValueError(
            f"with_step_index=True needs a fixed-step method "
            f"({', '.join(FIXED_STEP_METHODS)}); the adaptive method "
            f"{method!r} has no step index.")
    if steps is not None or step_size is not None:
        raise ValueError(
            f"steps/step_size apply to fixed-step methods; the adaptive "
            f"method {method!r} chooses its steps from rtol and atol.")
    if isinstance(solver, EmbeddedRungeKutta):
        return _solve_embedded(solver, checked_fn, y0, t0, t1, dtype,
                               rtol=rtol, atol=atol,
                               gradient=gradient_method, times=times)
    adaptive = tfp_adapters("a tfp solver")
    if isinstance(method, str):
        solver = adaptive.make_tfp_solver(method.lower(), rtol, atol)
    ys, ts, stats = adaptive.solve_adaptive(
        solver, checked_fn, y0, t0, t1, gradient=gradient_method,
        times=times, dtype=dtype)
    return Solution(ys=ys, ts=ts, stats=stats)


def _stack_outputs(outputs):
    return keras.tree.map_structure(lambda *leaves: keras.ops.stack(leaves), *outputs)


def _solve_fixed_step(solver, fn, y0, t0, t1, dtype, *, steps, step_size,
                      gradient, times, with_step_index, unroll):
    """``solve`` for fixed-step schemes (see ``fixed_step.py``)."""
    start = arguments.static_float(t0, "t0")
    end = arguments.static_float(t1, "t1")
    count = arguments.fixed_step_count(t0, t1, steps, step_size, solver.name)
    t0_tensor = arguments.as_time(t0, dtype)
    h = (arguments.as_time(t1, dtype) - t0_tensor) / count
    stages = solver.stages
    if times is None:
        plan = [(count, 0.0)]
    else:
        output_times = arguments.static_times(times, start, end)
        plan = fixed_step.output_plan(output_times, start, end, count)

    outputs, node, partial_steps, y = [], 0, 0, y0
    for target, offset in plan:
        y = gradient.advance(solver, fn, y, t0_tensor, h, node,
                             target - node, unroll=unroll,
                             with_step_index=with_step_index)
        node = target
        if offset == 0.0:
            outputs.append(y)
            continue
        partial_steps += 1
        stage_fn = fixed_step.bind_step_index(
            fn, with_step_index, fixed_step.unrolled_index(node))
        outputs.append(solver.step(stage_fn, t0_tensor + node * h, y,
                                   arguments.as_time(offset, dtype)))

    backward = gradient.backward_evaluations(stages, node)
    backward["vjp"] += stages * partial_steps
    stats = {
        "num_fn_evals": stages * (node + partial_steps),
        "num_steps": node + partial_steps,
        "num_accepted": node + partial_steps,
        "num_rejected": 0,
        "num_fn_evals_backward": backward["fn"],
        "num_vjp_evals_backward": backward["vjp"],
    }
    stats = {key: keras.ops.convert_to_tensor(value, "int32")
             for key, value in stats.items()}
    if times is None:
        return Solution(ys=outputs[0], ts=arguments.as_time(t1, dtype),
                        stats=stats)
    return Solution(ys=_stack_outputs(outputs),
                    ts=arguments.as_times(output_times, dtype), stats=stats)


def _solve_embedded(solver, fn, y0, t0, t1, dtype, *, rtol, atol, gradient,
                    times):
    """``solve`` for this package's embedded pairs (``adaptive_loop.py``)."""
    if times is None:
        ts = arguments.as_time(t1, dtype)
        output_times = [ts]
    else:
        ts = arguments.as_times(times, dtype)
        if ts.shape[0] is None:
            raise ValueError(
                f"times must have a static length for {solver!r}, got shape "
                f"{ts.shape}.")
        output_times = keras.ops.unstack(ts)
    # The adaptive loop of each backend (see solvers.dispatch for the rest).
    if backend.is_tensorflow():
        from contractive_keras.solvers import adaptive_loop as loop  # pylint: disable=import-outside-toplevel
    elif backend.name() == "jax":
        from contractive_keras.solvers import embedded_jax as loop  # pylint: disable=import-outside-toplevel
    else:
        from contractive_keras.solvers import embedded_loop as loop  # pylint: disable=import-outside-toplevel
    states, stats = loop.solve_embedded(
        solver, fn, y0, arguments.as_time(t0, dtype), output_times,
        rtol=rtol, atol=atol, gradient=gradient)
    ys = states[0] if times is None else _stack_outputs(states)
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
