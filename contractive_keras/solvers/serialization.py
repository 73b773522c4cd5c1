"""Solvers in layer configs: a name, or a small dict for the solver objects.

What a layer's ``get_config`` stores under "solver" (``serialize``) and
how ``from_config`` reads it back (``deserialize``):

* a name ("euler", "midpoint", "rk4", "dopri5", "bdf", "tfp_dopri5") is
  stored as the lower-case name ("dopri5" is this package's pair; configs
  saved when it meant tfp's loop load with it, the same method to the
  same tolerances); so are the parameterless fixed-step schemes
  ``Euler()``, ``Midpoint()`` and ``RK4()``, which compute exactly what
  their names compute;
* ``tfp.math.ode.DormandPrince``, ``tfp.math.ode.BDF`` and this package's
  :class:`~contractive_keras.solvers.Dopri5` are stored as
  ``{"class_name": <class>, "config": {<constructor arguments>}}``, read
  from the instance, so that the restored solver takes the same steps;
* anything else -- another ``tfp.math.ode.Solver`` subclass, a tfp solver
  with a custom ``make_adjoint_solver_fn``, a subclass of these classes, a
  Runge-Kutta scheme with its own tableau -- has no faithful config:
  ``serialize`` raises a ValueError that names what is supported.

``layer_solver`` is the argument check the ODE layers share: it accepts
the same things (names case-insensitively, and a dict from ``serialize``)
and says whether the solver is fixed-step.

Example:

>>> from contractive_keras import solvers
>>> solvers.serialize("RK4")
'rk4'
>>> config = solvers.serialize(solvers.Dopri5(max_steps=64))
>>> config["class_name"], config["config"]["max_steps"]
('Dopri5', 64)
>>> solvers.deserialize(config).max_steps
64
"""

import numpy as np

from contractive_keras.solvers import dispatch
from contractive_keras.solvers import interface
from contractive_keras.solvers.dopri5 import Dopri5
from contractive_keras.solvers.euler import Euler
from contractive_keras.solvers.interface import FIXED_STEP_METHODS
from contractive_keras.solvers.interface import KNOWN_METHODS
from contractive_keras.solvers.midpoint import Midpoint
from contractive_keras.solvers.rk4 import RK4
from contractive_keras.solvers.runge_kutta import EmbeddedRungeKutta
from contractive_keras.solvers.runge_kutta import ExplicitRungeKutta

# Parameterless fixed-step schemes: an instance is the same as its name.
_NAMED_SCHEMES = {Euler: "euler", Midpoint: "midpoint", RK4: "rk4"}

# Constructor arguments of the tfp solvers (tfp 0.25), each kept on the
# instance as "_" + name.  make_adjoint_solver_fn is checked separately.
_TFP_ARGUMENTS = {
    "DormandPrince": ("rtol", "atol", "first_step_size", "safety_factor",
                      "min_step_size_factor", "max_step_size_factor",
                      "max_num_steps", "validate_args", "name"),
    "BDF": ("rtol", "atol", "first_step_size", "safety_factor",
            "min_step_size_factor", "max_step_size_factor", "max_num_steps",
            "max_order", "max_num_newton_iters", "newton_tol_factor",
            "newton_step_size_factor", "bdf_coefficients",
            "evaluate_jacobian_lazily", "validate_args", "name"),
}
_DOPRI5_ARGUMENTS = ("max_steps", "safety", "min_factor", "max_factor")
SERIALIZABLE_CLASSES = ("DormandPrince", "BDF", "Dopri5")

SUPPORTED = (
    f"a name ({', '.join(KNOWN_METHODS)}), an Euler(), Midpoint() or RK4() "
    f"instance, a tfp.math.ode.DormandPrince or tfp.math.ode.BDF instance "
    f"(without a custom make_adjoint_solver_fn), or a "
    f"contractive_keras.solvers.Dopri5 instance")


def _tfp_class_name(solver):
    """"DormandPrince" / "BDF" for exact instances of those classes, else None."""
    if not interface.is_tfp_solver(solver):
        return None
    ode = interface.tfp_adapters("a tfp solver").tfp_ode()
    for name in _TFP_ARGUMENTS:
        if type(solver) is getattr(ode, name):  # pylint: disable=unidiomatic-typecheck
            return name
    return None


def _plain(value, solver, key):
    """A JSON-ready Python value of a constructor argument (static only)."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (tuple, list)):
        return [_plain(v, solver, key) for v in value]
    static = dispatch.static_value(value)
    if static is None:
        raise ValueError(
            f"cannot serialize {type(solver).__name__}: its {key} is not known "
            f"outside a graph ({value!r}); pass Python numbers.")
    static = np.asarray(static)
    if static.ndim:
        return static.tolist()
    if np.issubdtype(static.dtype, np.integer):
        return int(static)
    if static.dtype == np.bool_:
        return bool(static)
    return float(static)


def _has_default_adjoint(solver):
    """Whether make_adjoint_solver_fn is tfp's default (the solver itself)."""
    fn = getattr(solver, "_make_adjoint_solver_fn", None)
    default = type(solver)()._make_adjoint_solver_fn  # pylint: disable=protected-access
    return getattr(fn, "__code__", None) is default.__code__


def serialize(solver):
    """The config value of ``solver``: a name, or ``{"class_name", "config"}``.

    Args:
        solver: a name, ``Euler()`` / ``Midpoint()`` / ``RK4()``, or a
            ``tfp.math.ode.DormandPrince``, ``tfp.math.ode.BDF`` or
            :class:`~contractive_keras.solvers.Dopri5` instance.

    Returns:
        The lower-case name (str), or a dict of plain Python values.

    Raises:
        ValueError: for an unknown name or any other object, naming what is
            supported.
    """
    if isinstance(solver, str):
        if solver.lower() not in KNOWN_METHODS:
            raise ValueError(f"Unknown solver {solver!r}; allowed: {SUPPORTED}.")
        return solver.lower()
    if type(solver) in _NAMED_SCHEMES:
        return _NAMED_SCHEMES[type(solver)]
    if type(solver) is Dopri5:  # pylint: disable=unidiomatic-typecheck
        return {"class_name": "Dopri5",
                "config": {key: _plain(getattr(solver, key), solver, key)
                           for key in _DOPRI5_ARGUMENTS}}
    name = _tfp_class_name(solver)
    if name is not None:
        if not _has_default_adjoint(solver):
            raise ValueError(
                f"cannot serialize {name} with a custom make_adjoint_solver_fn "
                f"(a Python function); supported: {SUPPORTED}.")
        return {"class_name": name,
                "config": {key: _plain(getattr(solver, "_" + key), solver, key)
                           for key in _TFP_ARGUMENTS[name]}}
    raise ValueError(
        f"cannot serialize solver {solver!r} of type {type(solver).__name__}; "
        f"supported: {SUPPORTED}.")


def deserialize(config):
    """Inverse of :func:`serialize`: a name (lower-case) or a solver instance.

    Raises:
        ValueError: for an unknown name or class, or a malformed dict.
    """
    if isinstance(config, str):
        return serialize(config)
    if not (isinstance(config, dict) and set(config) == {"class_name", "config"}
            and isinstance(config["config"], dict)):
        raise ValueError(
            f"a serialized solver is a name or a dict with keys 'class_name' "
            f"and 'config', got {config!r}.")
    name, arguments = config["class_name"], dict(config["config"])
    if name == "Dopri5":
        return Dopri5(**arguments)
    if name in _TFP_ARGUMENTS:
        if "bdf_coefficients" in arguments:
            arguments["bdf_coefficients"] = tuple(arguments["bdf_coefficients"])
        ode = interface.tfp_adapters(f"the {name} solver (tfp)").tfp_ode()
        return getattr(ode, name)(**arguments)
    raise ValueError(
        f"unknown solver class {name!r}; serializable classes: "
        f"{', '.join(SERIALIZABLE_CLASSES)}.")


def is_fixed_step(solver):
    """Whether ``solver`` (a name or an instance) takes fixed steps."""
    if isinstance(solver, str):
        return solver.lower() in FIXED_STEP_METHODS
    return isinstance(solver, ExplicitRungeKutta) and not isinstance(
        solver, EmbeddedRungeKutta)


def layer_solver(solver, allow_custom_schemes=False):
    """Checks a layer's ``solver`` argument; returns ``(solver, fixed_step)``.

    Names are lower-cased, ``Euler()`` / ``Midpoint()`` / ``RK4()`` become
    their names, a dict from :func:`serialize` becomes the instance; adaptive
    instances (any ``tfp.math.ode.Solver``, ``Dopri5``) are returned as
    given.  Instances that :func:`serialize` does not know are accepted (a
    layer refuses them only in ``get_config``).

    Args:
        solver: name, dict or instance.
        allow_custom_schemes: also accept other fixed-step
            ``ExplicitRungeKutta`` instances (returned as given).

    Raises:
        ValueError: for an unknown name or an object that is not a solver,
            listing what is allowed.
    """
    if isinstance(solver, dict):
        solver = deserialize(solver)
    if isinstance(solver, str):
        solver = serialize(solver)
    elif type(solver) in _NAMED_SCHEMES:
        solver = _NAMED_SCHEMES[type(solver)]
    elif isinstance(solver, EmbeddedRungeKutta):
        pass
    elif isinstance(solver, ExplicitRungeKutta):
        if not allow_custom_schemes:
            raise ValueError(
                f"solver={solver!r}: this layer certifies the named fixed-step "
                f"schemes only; allowed: {SUPPORTED}.")
    else:
        if not interface.is_tfp_solver(solver):
            raise ValueError(
                f"solver={solver!r} of type {type(solver).__name__} is not a "
                f"solver; allowed: {SUPPORTED}, or any other "
                f"tfp.math.ode.Solver instance (not serializable).")
    return solver, is_fixed_step(solver)
