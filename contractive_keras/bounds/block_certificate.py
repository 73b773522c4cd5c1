"""Certificates of one ODE block from its ``JacobianStructure`` (both families).

* ``map_certificate``: the map the block computes with its fixed-step scheme:
  the product over the N steps of the step bounds of ``bounds.step_bound``,
  tightened for the CH-NODE by Theorem 1's worst-case Euler step (every field
  with the same c1, c2, gamma is non-expansive for h <= that step) and, for
  the D A form, reporting delta and the flow bound beside it;
* ``flow_certificate``: the exact flow: exp(delta t1) for u' = sigma(A u + b)
  (shared/DESIGN.md, "Stabilized NODE", equation (1)), exp(-rho t1 / 2) for
  a CH-NODE whose gamma satisfies Theorem 1 (Theorem 2);
* ``kernel_certificate`` and ``step_lipschitz_bound``: the same for a bare
  kernel A of u' = sigma(A u + b) with slopes in [alpha, 1] (its map or flow,
  one step of a scheme), no layer needed.
"""

import math

import numpy as np

from contractive_keras.bounds.certificate import Certificate
from contractive_keras.bounds.delta import DeltaResult
from contractive_keras.bounds.delta import delta
from contractive_keras.bounds.jacobian_structure import JacobianStructure
from contractive_keras.bounds.step_bound import StepBound
from contractive_keras.bounds.step_bound import butcher_arrays
from contractive_keras.bounds.step_bound import step_bounds
from contractive_keras.bounds.theorem1 import worst_case_max_step_size
from contractive_keras.bounds.threads import single_threaded_blas
from contractive_keras.bounds.validation import as_square
from contractive_keras.bounds.validation import check_alpha
from contractive_keras.bounds.validation import check_step

METHODS = ("auto", "exact", "upper")


def _check_method(method):
    if method not in METHODS:
        raise ValueError(f"a certificate uses exact or upper bounds; method must be one of "
                         f"{METHODS}, got {method!r}.")


def _delta_of(structure, method):
    """delta of the D A form (exact or certified upper: never a lower bound)."""
    scaling = None if structure.scaling_covers_euler else structure.scaling
    return delta(structure.kernel(), structure.slopes[0], method, scaling=scaling)


def _theorem1_step(structure, details, values):
    """Theorem 1's worst-case Euler step (and, with a fixed gamma, its invariant one)."""
    c = structure.theorem1
    worst_case = worst_case_max_step_size(c.c1, c.c2, c.gamma, c.j2)
    details["worst_case_max_step_size"] = worst_case
    if details.get("solver") == "euler" and worst_case > details["max_step_size"]:
        # Also certified (every field with these c1, c2, gamma), and tighter
        # than the centre-radius bound of wide layers.
        details["max_step_size"] = worst_case
        if structure.step_size <= worst_case:
            values = np.minimum(values, 1.0)
    if c.max_ratio is not None:
        # The projection keeps c2 <= max_ratio c1 with gamma fixed: this step
        # size is certified for every weight training can reach.
        details["invariant_max_step_size"] = worst_case_max_step_size(
            c.c1, c.max_ratio * c.c1, c.gamma, c.j2)
    return values


@single_threaded_blas
def map_certificate(structure, method="auto"):
    """Certified Lipschitz bound of the N-step map a block computes.

    Args:
        structure: ``JacobianStructure`` with a fixed-step scheme.
        method: "auto", "exact" or "upper" (how the step bounds are computed).

    Returns:
        ``Certificate`` (certifies "map"), one factor per step; ``details``:
        per_step_bounds, step_size, steps, solver, exact_in_slopes, and
        max_step_size (the largest h with every step bound <= 1; not for the
        relaxation of wide D A blocks), for a CH-NODE
        worst_case_max_step_size (and invariant_max_step_size with a fixed
        gamma), for the D A form delta (a ``DeltaResult``) and flow_bound.

    Raises:
        ValueError: an adaptive scheme (no certificate of its computed map).
    """
    _check_method(method)
    if butcher_arrays(structure.scheme) is None:
        raise ValueError(
            f"solver={structure.scheme!r} is adaptive: only the fixed-step schemes have a "
            "certificate of the computed map (use flow_certificate for the exact flow).")
    name = structure.scheme if isinstance(structure.scheme, str) else type(structure.scheme).__name__
    bound = StepBound(structure, method)
    values, how = bound(structure.step_size), bound.how
    exact = bound.vertex and bound.stages == 1
    if values.shape[0] == 1:
        values = np.repeat(values, structure.steps)
    largest = None if bound.diagonal else float(np.min(bound.largest(structure.step_size)))
    details = {"step_size": float(structure.step_size), "steps": int(structure.steps),
               "solver": name.lower(), "exact_in_slopes": how.startswith("vertices"), "how": how}
    if largest is not None:
        details["max_step_size"] = float(largest)
    if structure.theorem1 is not None:
        values = _theorem1_step(structure, details, values)
    if structure.stabilized_form:
        found = _delta_of(structure, method)
        if structure.scaling_covers_euler and details["solver"] == "euler" and found.kind != "exact":
            # The Euler certificate also bounds delta: mu_2(D A) <= (||I + h D A|| - 1) / h.
            via_step = (float(values[0]) - 1.0) / structure.step_size
            if via_step < found.value:
                found = DeltaResult(via_step, "upper", found.D, method="euler_step")
        details["delta"] = found
        details["flow_bound"] = math.exp(found.value * structure.t1)
    details["per_step_bounds"] = [float(v) for v in values]
    factors = [(f"step {k}", f"{details['solver']} step ({how})", float(v))
               for k, v in enumerate(values)]
    value = float(np.prod(values))
    return Certificate(value, "map", "exact" if structure.steps == 1 and exact else "upper",
                       factors, details)


@single_threaded_blas
def flow_certificate(structure, method="auto"):
    """Certified Lipschitz bound of the exact flow over [0, t1].

    D A form: exp(delta t1) with delta exact or a certified upper bound.
    CH-NODE: exp(-rho t1 / 2) (Theorem 2), when gamma >= Theorem 1's bound.

    Raises:
        ValueError: a structure with neither form.
    """
    _check_method(method)
    if structure.stabilized_form:
        found = _delta_of(structure, method)
        value = math.exp(found.value * structure.t1)
        return Certificate(value, "flow", "exact" if found.kind == "exact" else "upper",
                           [("flow", f"exp(delta t1), delta {found.kind}", value)],
                           {"delta": found, "flow_bound": value, "t1": structure.t1})
    c = structure.theorem1
    if c is not None and c.gamma >= c.gamma_min:
        value = math.exp(-c.rho * structure.t1 / 2.0)
        return Certificate(value, "flow", "upper", [("flow", "Theorem 2", value)],
                           {"rho": c.rho, "t1": structure.t1})
    raise ValueError("no flow certificate: the block is neither of the D A form nor a "
                     "CH-NODE satisfying Theorem 1.")


@single_threaded_blas
def kernel_certificate(A, min_slope, t1=None, *, solver=None, steps=None, method="auto"):
    """Certified Lipschitz bound of u' = sigma(A u + b), sigma' in [alpha, 1], from its kernel.

    With a fixed-step ``solver`` ("euler", "midpoint", "rk4") and ``steps``,
    the map those N steps compute (``map_certificate``); otherwise the exact
    flow over [0, t1], exp(delta t1) (``flow_certificate``).

    Args:
        A: (d, d) kernel.
        min_slope: alpha, the slope lower bound, in (0, 1].
        t1: final time (default 1).
        solver, steps: the fixed-step scheme to certify, if any.
        method: "auto", "exact" or "upper" (never "lower").

    Returns:
        ``Certificate`` whose ``details`` hold ``delta`` (a ``DeltaResult``)
        and ``flow_bound``.
    """
    A = as_square(A, "kernel")
    alpha = check_alpha(min_slope, "min_slope")
    t1 = 1.0 if t1 is None else float(t1)
    if solver is not None and butcher_arrays(solver) is not None:
        if steps is None:
            raise ValueError("steps is required to certify a fixed-step map.")
        return map_certificate(JacobianStructure.of_kernel(A, alpha, t1=t1, scheme=solver,
                                                           steps=steps), method)
    return flow_certificate(JacobianStructure.of_kernel(A, alpha, t1=t1), method)


@single_threaded_blas
def step_lipschitz_bound(A, min_slope, step_size, solver="euler", method="auto", scaling=None):
    """Certified Lipschitz constant of one step of ``solver`` on u' = sigma(A u + b).

    ``step_bound``, equations (1)-(2): for "euler" it is max_D ||I + h D A||_2,
    D in [alpha, 1]^d (alpha = ``min_slope``), exact by vertex enumeration (d <= 12 with method
    "auto", or "exact") or a certified upper bound (relaxation with the
    candidate metric ``scaling``).

    Returns:
        ``Certificate`` (certifies "map", method "exact" or "upper"); with
        vertex enumeration ``details["slopes"]`` is a vertex D attaining it.

    Raises:
        ValueError: bad arguments, or a solver without a Butcher tableau.
    """
    A = as_square(A)
    alpha = check_alpha(min_slope, "min_slope")
    h = check_step(step_size)
    if butcher_arrays(solver) is None:
        raise ValueError(f"step_lipschitz_bound needs a fixed-step explicit Runge-Kutta "
                         f"scheme ('euler', 'midpoint', 'rk4'), got {solver!r}.")
    structure = JacobianStructure.of_kernel(A, alpha, t1=h, steps=1, scheme=solver,
                                            scaling=scaling,
                                            scaling_covers_euler=scaling is not None)
    bounds = step_bounds(structure, method=method)
    value = float(bounds.values[0])
    details = {"step_size": h, "how": bounds.how}
    if bounds.witness is not None:
        details["slopes"] = bounds.witness[0]       # a vertex D attaining the bound
    return Certificate(value, "map", bounds.method, [("step", bounds.how, value)], details)
