"""Stability of u' = sigma(A u + b): delta, the minimal perturbation, certificates.

Shared/DESIGN.md, "Stabilized NODE".  With slopes sigma' in [alpha, 1], two
solutions u, v satisfy (u - v)' = D(t) A (u - v) with D(t) = diag of secant
slopes in [alpha, 1]^d, so d/dt ||u - v|| <= mu_2(D A) ||u - v|| and

    ||phi_t1(u) - phi_t1(v)|| <= exp(delta * t1) ||u - v||,
    delta = max_{D in [alpha, 1]^d} mu_2(D A),                          (1)

mu_2 the logarithmic 2-norm (``log_norm``).  This module gathers, for the
stabilized NODE, what lives in ``contractive_keras.bounds`` (delta exactly or
as a lower or a certified upper bound, every value saying which; the smallest
Frobenius-norm Delta with delta(A + Delta) = delta_bar) and in
``contractive_keras.certify`` (Lipschitz certificates of the ODE flow and of
the map the layer computes).  The training-time projection is
``contractive_keras.constraints.DeltaBarProjection``.

Example:

>>> import numpy as np
>>> from contractive_keras import stability
>>> A = np.array([[0.5, 2.0], [-1.0, 0.3]])
>>> result = stability.delta(A, alpha=0.1)
>>> result.kind, round(result.value, 4)
('exact', 1.2436)
>>> fix = stability.min_perturbation(A, alpha=0.1, delta_bar=0.0)
>>> fix.delta.kind, abs(fix.delta.value) < 1e-6
('exact', True)
"""

from contractive_keras.bounds import block_certificate
from contractive_keras.bounds import step_bound
from contractive_keras.bounds import validation
from contractive_keras.bounds.certificate import Certificate
from contractive_keras.bounds.delta import DeltaResult
from contractive_keras.bounds.delta import delta
from contractive_keras.bounds.jacobian_structure import JacobianStructure
from contractive_keras.bounds.min_perturbation import MIN_PERTURBATION_EXACT_DIM
from contractive_keras.bounds.min_perturbation import PerturbationResult
from contractive_keras.bounds.min_perturbation import min_perturbation
from contractive_keras.bounds.operator_norms import log_norm as _log_norm
from contractive_keras.bounds.threads import single_threaded_blas
from contractive_keras.certify.report import ode_layers
from contractive_keras.certify.report import summary as certify_summary
from contractive_keras.certify.layer import layer_certificate

#: The certificate type (the name used before the certificates were unified).
LipschitzCertificate = Certificate

__all__ = [
    "Certificate",
    "DeltaResult",
    "LipschitzCertificate",
    "MIN_PERTURBATION_EXACT_DIM",
    "PerturbationResult",
    "delta",
    "log_norm",
    "lipschitz_bound",
    "min_perturbation",
    "step_lipschitz_bound",
    "summary",
]


def log_norm(A):
    """The logarithmic 2-norm mu_2(A) = lambda_max((A + A^T) / 2).

    Raises:
        ValueError: if A is not a finite square matrix.
    """
    return _log_norm(validation.as_square(A))


@single_threaded_blas
def step_lipschitz_bound(A, alpha, step_size, solver="euler", method="auto", scaling=None):
    """Certified Lipschitz constant of one step of ``solver`` on u' = sigma(A u + b).

    ``bounds.step_bound``, equations (1)-(2): for "euler" it is
    max_D ||I + h D A||_2, exact by vertex enumeration (d <= 12 with method
    "auto", or "exact") or a certified upper bound (relaxation with the
    candidate metric ``scaling``).

    Returns:
        ``Certificate`` (certifies "map", method "exact" or "upper"); with
        vertex enumeration ``details["slopes"]`` is a vertex D attaining it.

    Raises:
        ValueError: bad arguments, or a solver without a Butcher tableau.
    """
    A = validation.as_square(A)
    alpha = validation.check_alpha(alpha)
    h = validation.check_step(step_size)
    if step_bound.butcher_arrays(solver) is None:
        raise ValueError(f"step_lipschitz_bound needs a fixed-step explicit Runge-Kutta "
                         f"scheme ('euler', 'midpoint', 'rk4'), got {solver!r}.")
    structure = JacobianStructure.of_kernel(A, alpha, t1=h, steps=1, scheme=solver,
                                            scaling=scaling,
                                            scaling_covers_euler=scaling is not None)
    bounds = step_bound.step_bounds(structure, method=method)
    value = float(bounds.values[0])
    details = {"step_size": h, "how": bounds.how}
    if bounds.witness is not None:
        details["slopes"] = bounds.witness[0]       # a vertex D attaining the bound
    return Certificate(value, "map", bounds.method, [("step", bounds.how, value)], details)


@single_threaded_blas
def lipschitz_bound(layer_or_kernel, alpha=None, t1=None, *, solver=None, steps=None,
                    method="auto"):
    """Certified Lipschitz bound of a stabilized NODE: its computed map, or its flow.

    For a ``StabilizedNODE`` layer with a fixed-step solver the bound
    certifies the map the layer computes (``certifies="map"``: the product of
    the step bounds, which can exceed exp(delta t1)); when its
    ``DeltaBarProjection`` covers the Euler discretisation this is
    <= (1 + h delta_bar)^N <= exp(delta_bar t1).  For adaptive solvers, or a
    bare kernel without ``solver``, it certifies the exact flow,
    exp(delta t1), delta exact or a certified upper bound.

    Args:
        layer_or_kernel: a built ``StabilizedNODE``, or a (d, d) kernel A.
        alpha: slope lower bound (kernels only).
        t1: final time (kernels only; default 1).
        solver, steps: for a kernel, the fixed-step scheme to certify.
        method: "auto", "exact" or "upper" (never "lower").

    Returns:
        ``Certificate`` whose ``details`` hold ``delta`` (a ``DeltaResult``)
        and ``flow_bound``.
    """
    if hasattr(layer_or_kernel, "jacobian_structure"):
        layer = layer_or_kernel
        certifies = "map" if layer.fixed_step else "flow"
        return layer_certificate(layer, certifies=certifies, method=method)
    if alpha is None:
        raise ValueError("alpha is required when a kernel is given.")
    A = validation.as_square(layer_or_kernel, "kernel")
    alpha = validation.check_alpha(alpha)
    t1 = 1.0 if t1 is None else float(t1)
    if solver is not None and step_bound.butcher_arrays(solver) is not None:
        if steps is None:
            raise ValueError("steps is required to certify a fixed-step map.")
        structure = JacobianStructure.of_kernel(A, alpha, t1=t1, scheme=solver, steps=steps)
        return block_certificate.map_certificate(structure, method)
    structure = JacobianStructure.of_kernel(A, alpha, t1=t1)
    return block_certificate.flow_certificate(structure, method)


@single_threaded_blas
def summary(model_or_layer):
    """``certify.summary`` of the stabilized NODE layers of a model (or of one layer).

    Keys: delta, delta_kind, lipschitz_bound (of what the layer computes),
    lipschitz_certifies ("map" / "flow"), flow_lipschitz_bound, min_slope,
    delta_bar (None when unconstrained), step_size; prefixed with
    "<layer name>/" when there are several layers.
    """
    from_layers = ode_layers(model_or_layer)
    stabilized = [layer for layer in from_layers if layer.jacobian_structure().stabilized_form]
    out = {}
    for layer in stabilized:
        prefix = f"{layer.name}/" if len(stabilized) > 1 else ""
        out.update({prefix + k: v for k, v in certify_summary(layer, warn=False).items()})
    return out
