"""Lipschitz certificates of the stabilized NODE: the ODE flow and the computed map.

Private part of :mod:`contractive_keras.stability` (shared/DESIGN.md,
"Stabilized NODE").

Flow.  ||phi_t1(u) - phi_t1(v)|| <= exp(delta t1) ||u - v|| for the exact
flow of u' = sigma(A u + b), with delta exact or a certified upper bound.

Computed map.  A fixed-step explicit Runge-Kutta scheme (tableau a, b,
s stages) applied to u' = sigma(A u + b) is a map Psi; for two states the
stage differences are dk_i = D_i A dY_i with D_i = diag of secant slopes of
sigma, in [alpha, 1]^d (exactly, coordinate by coordinate), so

    Psi(u) - Psi(v) = (I + h Dbar A)(u - v) + h sum_i b_i D_i A (dY_i - (u - v)),
    Dbar = sum_i b_i D_i,

and, when b >= 0 (so Dbar is in the box) and with x = h ||A||_2 >= h ||D A||_2,

    Lip(Psi) <= max_{D in box} ||I + h D A||_2 + sum_{k >= 2} c_k x^k,
    c_k = |b|^T |a|^(k-1) 1                                              (2)

(for Euler the sum is empty and the bound is the exact worst case over slope
patterns).  max_D ||I + h D A||_2 is convex in D: exact over the 2^d vertices
for small d, otherwise the relaxation of ``_stability_bounds`` or
sqrt(1 + 2 h delta + h^2 ||A||_2^2).  The layer's map over N steps is
Lipschitz with constant <= (2)^N.  Without b >= 0 the plain bound
1 + sum_{k >= 1} c_k x^k is used.
"""

import dataclasses
import math

import numpy as np

from contractive_keras import _stability_bounds as _bounds
from contractive_keras._blas import single_threaded_blas

# Butcher tableaus (a as a full strictly lower-triangular matrix, b).
_TABLEAUS = {
    "euler": (np.zeros((1, 1)), np.array([1.0])),
    "midpoint": (np.array([[0.0, 0.0], [0.5, 0.0]]), np.array([0.0, 1.0])),
    "rk4": (np.array([[0, 0, 0, 0], [0.5, 0, 0, 0], [0, 0.5, 0, 0], [0, 0, 1.0, 0]]),
            np.array([1.0, 2.0, 2.0, 1.0]) / 6.0),
}
# Vertex enumeration of the Euler step norm up to this size.
STEP_EXACT_MAX_DIM = 12


@dataclasses.dataclass(frozen=True)
class LipschitzCertificate:
    """A certified Lipschitz bound (2-norm) and what it is a bound of.

    Attributes:
        value: the certified bound of what ``certifies`` names.
        certifies: "map" -- the map the layer computes with its fixed-step
            scheme (input state to output state, for any bias); or "flow" --
            the exact ODE flow over [0, t1] (the layer's adaptive solvers
            approximate that flow to their tolerance; the bound is not a
            certificate of their output).
        delta: the ``DeltaResult`` used ("exact" or "upper", never "lower").
        flow_bound: exp(delta * t1).
        step_factor: for "map", the certified bound (2) on one step's
            Lipschitz constant (a ``DeltaResult`` of kind "exact"/"upper").
        steps, step_size: of the fixed-step scheme (None for "flow").
    """

    value: float
    certifies: str
    delta: _bounds.DeltaResult
    flow_bound: float
    step_factor: _bounds.DeltaResult = None
    steps: int = None
    step_size: float = None

    def __float__(self):
        return float(self.value)


def _tableau(solver):
    if isinstance(solver, str) and solver.lower() in _TABLEAUS:
        return _TABLEAUS[solver.lower()]
    tableau = getattr(solver, "tableau", None)
    if tableau is None or getattr(tableau, "b_error", None) is not None:
        return None                       # adaptive (embedded pairs included)
    s = len(tableau.b)
    a = np.zeros((s, s))
    for i, row in enumerate(tableau.a):
        a[i + 1, :len(row)] = row
    return a, np.asarray(tableau.b, np.float64)


@single_threaded_blas
def step_lipschitz_bound(A, alpha, step_size, solver="euler", method="auto", scaling=None,
                         max_evals=400):
    """Certified Lipschitz constant of one step of ``solver`` on u' = sigma(A u + b).

    Equation (2) of this module; for "euler" it is max_D ||I + h D A||_2,
    exact by vertex enumeration (d <= 12 with method "auto" or "exact") or a
    certified upper bound.

    Args:
        A: (d, d) matrix.
        alpha: slope bound in (0, 1].
        step_size: h > 0.
        solver: "euler", "midpoint", "rk4" or an explicit Runge-Kutta scheme
            object with a ``tableau``.
        method: "auto", "exact" or "upper" (for the max over D).
        scaling: candidate diagonal T for the Euler relaxation.
        max_evals: effort of the relaxation's minimisation over T.

    Returns:
        ``DeltaResult`` whose value bounds the step's Lipschitz constant.

    Raises:
        ValueError: bad arguments, or a solver without a Butcher tableau.
    """
    A = _bounds.as_square(A)
    alpha = _bounds.check_alpha(alpha)
    h = _bounds.check_step(step_size)
    tableau = _tableau(solver)
    if tableau is None:
        raise ValueError(f"step_lipschitz_bound needs a fixed-step explicit Runge-Kutta "
                         f"scheme ('euler', 'midpoint', 'rk4'), got {solver!r}.")
    a, b = tableau
    d = A.shape[0]
    if method not in ("auto", "exact", "upper"):
        raise ValueError(f"method must be 'auto', 'exact' or 'upper', got {method!r}.")
    exact = method == "exact" or (method == "auto" and d <= STEP_EXACT_MAX_DIM)
    if method == "exact" and d > _bounds.EXACT_HARD_LIMIT:
        raise ValueError(f"method='exact' enumerates 2^d vertices; d = {d} is too large.")
    x = h * _bounds.spectral_norm(A)
    abs_a, abs_b = np.abs(a), np.abs(b)
    coefficients, vector = [], np.ones(len(b))
    for _ in range(len(b)):
        coefficients.append(float(abs_b @ vector))     # c_1, c_2, ..., c_s
        vector = abs_a @ vector
    if np.any(b < 0):
        value = 1.0 + sum(c * x ** (k + 1) for k, c in enumerate(coefficients))
        return _bounds.DeltaResult(value, "upper", np.ones(d), method="rk_lipschitz")
    if exact:
        first = _bounds.exact_euler_norm(A, alpha, h)
    else:
        candidates = [] if scaling is None else [np.asarray(scaling, np.float64)]
        first = _bounds.upper_euler_norm(A, alpha, h, _bounds.upper_delta(A, alpha).value,
                                         scaling_candidates=candidates)
    remainder = sum(c * x ** (k + 1) for k, c in enumerate(coefficients) if k >= 1)
    if remainder == 0.0:
        return first
    return _bounds.DeltaResult(first.value + remainder, "upper", first.D, first.vector,
                               first.scaling, method=first.method + "+rk_remainder")


def _layer_parts(layer):
    kernel = np.asarray(layer.kernel, np.float64)
    constraint = getattr(layer.kernel, "constraint", None)
    state = getattr(constraint, "scaling", None)
    scaling = state() if callable(state) else None
    return kernel, float(layer.alpha), float(layer.t1), layer.solver, layer.steps, constraint, scaling


@single_threaded_blas
def lipschitz_bound(layer_or_kernel, alpha=None, t1=None, *, solver=None, steps=None,
                    method="auto"):
    """Certified Lipschitz bound of a stabilized NODE: its computed map, or its flow.

    For a ``StabilizedNODE`` layer with a fixed-step solver the bound
    certifies the map the layer computes (``certifies="map"``): the product
    of the per-step bounds (2), which is larger than exp(delta t1) in general
    (an explicit step can expand more than exp(h delta)).  When the layer's
    ``DeltaBarProjection`` covers the Euler discretisation, this is
    <= (1 + h delta_bar)^N <= exp(delta_bar t1).  For adaptive solvers, or a
    bare kernel without ``solver``, it certifies the exact flow:
    exp(delta t1) with delta exact or a certified upper bound.

    Args:
        layer_or_kernel: a ``StabilizedNODE`` layer (built), or a (d, d) kernel A.
        alpha: slope bound (taken from the layer when a layer is given).
        t1: final time (layer's, or 1.0).
        solver: for a kernel: "euler", "midpoint", "rk4" (certify the map) or
            None (certify the flow).
        steps: number of fixed steps (with ``solver``).
        method: "auto", "exact" or "upper": how delta and the step bound are
            computed (never "lower").

    Returns:
        ``LipschitzCertificate``.

    Raises:
        ValueError: missing alpha for a kernel, method "lower", bad arguments.
    """
    from contractive_keras import stability

    if method not in ("auto", "exact", "upper"):
        raise ValueError(f"a certificate uses exact or upper bounds; method must be 'auto', "
                         f"'exact' or 'upper', got {method!r}.")
    scaling = euler_scaling = None
    if hasattr(layer_or_kernel, "kernel") and hasattr(layer_or_kernel, "alpha"):
        A, alpha, t1, solver, steps, constraint, state = _layer_parts(layer_or_kernel)
        if state is not None:
            if getattr(constraint, "step_size", None) is None:
                scaling = state
            else:
                euler_scaling = state
    else:
        if alpha is None:
            raise ValueError("alpha is required when a kernel is given.")
        A = layer_or_kernel
        t1 = 1.0 if t1 is None else float(t1)
    A = _bounds.as_square(A, "kernel")
    alpha = _bounds.check_alpha(alpha)
    delta_result = stability.delta(A, alpha, method, scaling=scaling)
    fixed = _tableau(solver) is not None if solver is not None else False
    if not fixed:
        return LipschitzCertificate(math.exp(delta_result.value * t1), "flow", delta_result,
                                    math.exp(delta_result.value * t1))
    if steps is None:
        raise ValueError("steps is required to certify a fixed-step map.")
    h = t1 / steps
    factor = step_lipschitz_bound(A, alpha, h, solver, method, scaling=euler_scaling)
    if euler_scaling is not None and isinstance(solver, str) and solver == "euler":
        # The Euler certificate also bounds delta: mu_2(D A) <= (||I + h D A|| - 1) / h.
        via_step = (factor.value - 1.0) / h
        if factor.kind != "lower" and via_step < delta_result.value and delta_result.kind != "exact":
            delta_result = _bounds.DeltaResult(via_step, "upper", factor.D, factor.vector,
                                               factor.scaling, method="euler_step")
    return LipschitzCertificate(factor.value ** steps, "map", delta_result,
                                math.exp(delta_result.value * t1), factor, steps, h)


def _stabilized_layers(model_or_layer):
    if hasattr(model_or_layer, "kernel") and hasattr(model_or_layer, "alpha"):
        return [model_or_layer]
    layers = getattr(model_or_layer, "_flatten_layers", None)
    if layers is None:
        return []
    return [layer for layer in layers(include_self=False)
            if type(layer).__name__ == "StabilizedNODE" and layer.built]


@single_threaded_blas
def summary(model_or_layer, method="auto"):
    """Certificate scalars for logging: delta, its kind, the Lipschitz bounds.

    Args:
        model_or_layer: a ``StabilizedNODE`` layer or a model containing some.
        method: as for ``lipschitz_bound``.

    Returns:
        dict with "delta", "delta_kind", "lipschitz_bound" (of what the layer
        computes), "lipschitz_certifies" ("map" / "flow"),
        "flow_lipschitz_bound" and "delta_bar" (None when unconstrained);
        keys prefixed with "<layer name>/" when there are several layers.
    """
    layers = _stabilized_layers(model_or_layer)
    report = {}
    for layer in layers:
        certificate = lipschitz_bound(layer, method=method)
        values = {
            "delta": float(certificate.delta.value),
            "delta_kind": certificate.delta.kind,
            "lipschitz_bound": float(certificate.value),
            "lipschitz_certifies": certificate.certifies,
            "flow_lipschitz_bound": float(certificate.flow_bound),
            "delta_bar": getattr(layer, "delta_bar", None),
        }
        prefix = "" if len(layers) == 1 else f"{layer.name}/"
        report.update({prefix + key: value for key, value in values.items()})
    return report
