"""SolverSpec: how an ODE layer integrates, validated once for every layer.

One object holds the scheme (a name or a solver instance), the time grid
(``steps`` with ``step_size`` or ``t1``), the gradient method and the
tolerances of the adaptive solvers, like diffrax's solver / step-size
controller / adjoint arguments.  The ODE layers build one from their
arguments (``SolverSpec.from_arguments``), read ``steps``, ``step_size`` and
``t1`` from it, integrate with ``SolverSpec.odeint`` and store it in their
config as ``{"class_name": "SolverSpec", "config": {...}}``.

Example:

>>> spec = SolverSpec("rk4", steps=8, t1=2.0)
>>> spec.step_size, spec.fixed_step
(0.25, True)
>>> SolverSpec.from_config(spec.get_config()) == spec
True
"""

import math

from contractive_keras import backend
from contractive_keras.solvers import interface
from contractive_keras.solvers.gradients import ALTERNATIVE
from contractive_keras.solvers.gradients import get_gradient
from contractive_keras.solvers.interface import odeint
from contractive_keras.solvers.serialization import layer_solver
from contractive_keras.solvers.serialization import serialize

CLASS_NAME = "SolverSpec"


def _positive_float(value, name):
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a positive number, got {value!r}.") from None
    if not (value > 0.0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}.")
    return value


class SolverSpec:
    """The integration settings of an ODE layer.

    Args:
        method: "euler", "midpoint", "rk4" (fixed step), "dopri5" (this
            package's ``solvers.Dopri5``, XLA-compilable), "tfp_dopri5",
            "bdf" (tfp's DormandPrince and BDF), or a solver instance: ``Euler()``, ``Midpoint()``,
            ``RK4()`` (stored as their names), ``solvers.Dopri5`` (uses
            ``rtol``/``atol``), a ``tfp.math.ode.Solver`` (keeps its own
            tolerances), or, with ``allow_custom_schemes``, another explicit
            Runge-Kutta scheme.  A serialized solver dict is accepted too.
        steps: number of steps N (fixed-step schemes; for adaptive ones the
            number of output intervals of a trajectory, or None).
        step_size: h, the horizon is then T = N h.  Give at most one of
            ``step_size`` and ``t1``.
        t1: final time T (then h = T / N).
        gradient: "backprop", "checkpoint" or "adjoint" (or an instance of
            ``solvers.Backprop``, ``Checkpoint``, ``Adjoint``).
            Off TensorFlow, "adjoint" and tfp's solvers refuse here, in one
            line naming the alternative.
        rtol, atol: tolerances of the adaptive solvers (> 0).
        allow_custom_schemes: accept explicit Runge-Kutta schemes other than
            the named ones (not serializable).

    Raises:
        ValueError: an unknown method, steps < 1, both or neither of
            ``step_size`` and ``t1``, non-positive times or tolerances, an
            unknown gradient method.
    """

    def __init__(self, method="euler", *, steps=None, step_size=None, t1=None,
                 gradient="backprop", rtol=1e-6, atol=1e-6, allow_custom_schemes=False):
        self._allow_custom_schemes = bool(allow_custom_schemes)
        self.method, self.fixed_step = layer_solver(
            method, allow_custom_schemes=allow_custom_schemes)
        if steps is not None:
            if isinstance(steps, bool) or not float(steps).is_integer() or steps < 1:
                raise ValueError(f"steps must be an integer >= 1, got {steps!r}.")
            steps = int(steps)
        elif self.fixed_step:
            raise ValueError(f"solver {self.method!r} takes fixed steps: give steps >= 1.")
        if step_size is not None and t1 is not None:
            raise ValueError(
                f"give step_size or t1, not both (got step_size={step_size}, t1={t1}).")
        if step_size is None and t1 is None:
            raise ValueError("give step_size or t1 (the final time).")
        if step_size is not None and steps is None:
            raise ValueError("step_size needs steps (the final time is steps * step_size).")
        self.steps = steps
        self._step_size = None if step_size is None else _positive_float(step_size, "step_size")
        self._t1 = None if t1 is None else _positive_float(t1, "t1")
        if get_gradient(gradient).name == "adjoint":
            backend.require_tensorflow("gradient='adjoint'", ALTERNATIVE)
        if (self.method in interface.TFP_METHODS
                or interface.is_tfp_solver(self.method)):
            backend.require_tensorflow(f"the solver {self.method!r} (tfp)",
                                       interface.TFP_ALTERNATIVE)
        self.gradient = gradient
        self.rtol = _positive_float(rtol, "rtol")
        self.atol = _positive_float(atol, "atol")

    @classmethod
    def from_arguments(cls, solver, steps=None, step_size=None, t1=None, gradient=None,
                       rtol=None, atol=None, *, defaults, allow_custom_schemes=False):
        """The spec of a layer's ``solver=`` and loose time-grid arguments.

        ``solver`` may be a ``SolverSpec`` (then no loose argument may be
        given), its config dict, or a method (name / instance / serialized
        solver) completed by the loose arguments and then by ``defaults``
        (the layer's: e.g. ``dict(method="euler", steps=4, step_size=0.5)``).
        """
        loose = dict(steps=steps, step_size=step_size, t1=t1, gradient=gradient,
                     rtol=rtol, atol=atol)
        given = {k: v for k, v in loose.items() if v is not None}
        if isinstance(solver, dict) and solver.get("class_name") == CLASS_NAME:
            solver = cls.from_config(solver)
        if isinstance(solver, SolverSpec):
            return solver.replace(**given) if given else solver
        arguments = {k: v for k, v in defaults.items() if k != "method"}
        if "step_size" in given or "t1" in given:
            arguments.pop("step_size", None)
            arguments.pop("t1", None)
        arguments.update(given)
        method = defaults.get("method", "euler") if solver is None else solver
        return cls(method, allow_custom_schemes=allow_custom_schemes, **arguments)

    @property
    def step_size(self):
        """h (None for an adaptive scheme without ``steps``)."""
        if self._step_size is not None:
            return self._step_size
        return None if self.steps is None else self._t1 / self.steps

    @property
    def t1(self):
        """T, the final time."""
        if self._t1 is not None:
            return self._t1
        return self._step_size * self.steps

    @property
    def times(self):
        """The grid t_0 = 0, ..., t_N = T (its last entry exactly T)."""
        times = [k * self.step_size for k in range(self.steps + 1)]
        times[-1] = self.t1
        return times

    def replace(self, **changes):
        """A copy with some settings changed (``step_size`` or ``t1`` replaces the other)."""
        config = dict(method=self.method, steps=self.steps, step_size=self._step_size,
                      t1=self._t1, gradient=self.gradient, rtol=self.rtol, atol=self.atol)
        if "step_size" in changes or "t1" in changes:
            config.pop("step_size")
            config.pop("t1")
        config.update(changes)
        return SolverSpec(allow_custom_schemes=self._allow_custom_schemes, **config)

    def odeint(self, fn, y0, *, times=None, with_step_index=False):
        """``solvers.odeint`` of fn from 0 to T with these settings.

        ``fn(t, y)``, or ``fn(t, y, step)`` with ``with_step_index`` (fixed
        steps only; adaptive schemes call it with step 0).
        """
        kwargs = dict(method=self.method, gradient=self.gradient)
        if self.fixed_step:
            kwargs.update(steps=self.steps, with_step_index=with_step_index)
        else:
            kwargs.update(rtol=self.rtol, atol=self.atol)
            if with_step_index:
                field = fn
                fn = lambda t, y: field(t, y, 0)  # noqa: E731  (shared weights)
        # Python numbers: solve makes them tensors of the state's dtype.
        return odeint(fn, y0, self.t1, times=times, **kwargs)

    def get_config(self):
        """``{"class_name": "SolverSpec", "config": {...}}`` of plain values."""
        gradient = self.gradient if isinstance(self.gradient, str) else type(
            self.gradient).__name__.lower()
        return {"class_name": CLASS_NAME, "config": {
            "method": serialize(self.method), "steps": self.steps,
            "step_size": self._step_size, "t1": self._t1, "gradient": gradient,
            "rtol": self.rtol, "atol": self.atol}}

    @classmethod
    def from_config(cls, config):
        if config.get("class_name") != CLASS_NAME or not isinstance(config.get("config"), dict):
            raise ValueError(f"not a SolverSpec config: {config!r}.")
        return cls(**config["config"])

    def __eq__(self, other):
        return isinstance(other, SolverSpec) and self.get_config() == other.get_config()

    def __repr__(self):
        settings = ", ".join(f"{k}={v!r}" for k, v in self.get_config()["config"].items())
        return f"SolverSpec({settings})"
