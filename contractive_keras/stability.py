"""Stability of u' = sigma(A u + b): delta, the minimal perturbation, certificates.

Shared/DESIGN.md, "Stabilized NODE".  With slopes sigma' in [alpha, 1], two
solutions u, v satisfy (u - v)' = D(t) A (u - v) with D(t) = diag of secant
slopes in [alpha, 1]^d, so d/dt ||u - v|| <= mu_2(D A) ||u - v|| and

    ||phi_t1(u) - phi_t1(v)|| <= exp(delta * t1) ||u - v||,
    delta = max_{D in [alpha, 1]^d} mu_2(D A),                          (1)

mu_2 the logarithmic 2-norm (``log_norm``).  This module computes delta
(exactly, or a lower or a certified upper bound: every value says which), the
smallest Frobenius-norm Delta with delta(A + Delta) = delta_bar
(``min_perturbation``), and Lipschitz certificates of the stabilized NODE
layer: of the ODE flow, and of the map the layer computes with a fixed-step
scheme (``lipschitz_bound``).

Everything here works on NumPy arrays (or tensors, converted) in float64, with
one BLAS thread (``contractive_keras._blas``: many small eigenproblems); the
training-time projection is ``contractive_keras.constraints.DeltaBarProjection``.

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


import numpy as np

from contractive_keras import _stability_bounds as _bounds
from contractive_keras import _stability_projection as _projection
from contractive_keras._blas import single_threaded_blas
from contractive_keras._stability_bounds import DeltaResult
from contractive_keras._stability_certificate import LipschitzCertificate
from contractive_keras._stability_certificate import lipschitz_bound
from contractive_keras._stability_certificate import step_lipschitz_bound
from contractive_keras._stability_certificate import summary
from contractive_keras._stability_projection import PerturbationResult

__all__ = [
    "DeltaResult",
    "LipschitzCertificate",
    "PerturbationResult",
    "delta",
    "log_norm",
    "lipschitz_bound",
    "min_perturbation",
    "step_lipschitz_bound",
    "summary",
]

# min_perturbation(method="auto") is exact (vertex enumeration) up to this size.
MIN_PERTURBATION_EXACT_DIM = 8


def log_norm(A):
    """The logarithmic 2-norm mu_2(A) = lambda_max((A + A^T) / 2).

    Args:
        A: square matrix (array-like or tensor).

    Returns:
        float.

    Raises:
        ValueError: if A is not a finite square matrix.
    """
    return _bounds.log_norm(_bounds.as_square(A))


@single_threaded_blas
def delta(A, alpha, method="auto", *, bound="relaxation", starts=8, seed=0, scaling=None):
    """delta(A) = max over D = diag in [alpha, 1]^d of mu_2(D A), equation (1).

    Args:
        A: square (d, d) matrix.
        alpha: lower slope bound, in (0, 1].
        method: "exact" (enumerates the 2^d vertices, batched eigenvalue
            problems; refused above d = 24), "lower" (alternating ascent on
            D from ``starts`` vertices: a value attained by some D), "upper"
            (certified bound), or "auto" ("exact" for d <= 16, else "upper").
        bound: for "upper": "relaxation" (min over diagonal T > 0 of
            lambda_max(c sym(A) + (r/2)(T + A^T T^-1 A)), c = (1+alpha)/2,
            r = (1-alpha)/2, never above the cheap bound) or "cheap"
            (c mu_2(A) + r ||A||_2).
        starts: number of starting vertices for "lower" (plus D = I, alpha I
            and the sign pattern of the top eigenvector of sym(A)).
        seed: for the random starting vertices.
        scaling: optional candidate diagonal(s) T for the relaxation (e.g.
            the state of a ``DeltaBarProjection``); any T gives a valid bound.

    Returns:
        ``DeltaResult`` with ``value``, ``kind`` ("exact" / "lower" /
        "upper") and ``D`` (diagonal of the maximizing or witnessing vertex).

    Raises:
        ValueError: non-square or non-finite A, alpha outside (0, 1], unknown
            method, or "exact" for d > 24.
    """
    A = _bounds.as_square(A)
    alpha = _bounds.check_alpha(alpha)
    d = A.shape[0]
    if method == "auto":
        method = "exact" if d <= _bounds.EXACT_MAX_DIM else "upper"
    if method == "exact":
        if d > _bounds.EXACT_HARD_LIMIT:
            raise ValueError(f"method='exact' enumerates 2^d vertices; d = {d} is above "
                             f"{_bounds.EXACT_HARD_LIMIT}: use 'upper' or 'lower'.")
        return _bounds.exact_delta(A, alpha)
    if method == "lower":
        return _bounds.lower_delta(A, alpha, starts=starts, seed=seed)
    if method == "upper":
        candidates = [] if scaling is None else [np.asarray(s, np.float64)
                                                 for s in np.atleast_2d(scaling)]
        lower = _bounds.lower_delta(A, alpha, starts=2, seed=seed).value
        return _bounds.upper_delta(A, alpha, bound=bound, scaling_candidates=candidates,
                                   lower=lower)
    raise ValueError(f"method must be 'auto', 'exact', 'lower' or 'upper', got {method!r}.")


def _zero_result(A, kind_delta, lower=0.0):
    d = A.shape[0]
    return PerturbationResult(np.zeros((d, d)), 0.0, kind_delta, lower,
                              kind_delta.kind if kind_delta.kind != "lower" else "upper")


def _closed_form_alpha_one(A, delta_bar):
    """alpha = 1: delta = mu_2; clamp the eigenvalues of sym(A) at delta_bar."""
    w, V = np.linalg.eigh(_bounds.sym(A))
    Delta = (V * (np.minimum(w, delta_bar) - w)) @ V.T
    B = A + Delta
    result = _bounds.exact_delta(B, 1.0)
    norm = float(np.linalg.norm(Delta))
    return PerturbationResult(Delta, norm, result, norm, "exact")


def _closed_form_scalar(A, alpha, delta_bar):
    """d = 1: delta(b) = b for b >= 0, alpha b for b < 0."""
    limit = delta_bar if delta_bar >= 0 else delta_bar / alpha
    Delta = np.array([[min(A[0, 0], limit) - A[0, 0]]])
    result = _bounds.exact_delta(A + Delta, alpha)
    norm = abs(float(Delta[0, 0]))
    return PerturbationResult(Delta, norm, result, norm, "exact")


@single_threaded_blas
def min_perturbation(A, alpha, delta_bar, *, method="auto", tol=1e-8, max_outer=30,
                     max_inner=50, max_refinements=200, warm_start=None):
    """The smallest-Frobenius Delta with max_D mu_2(D (A + Delta)) = delta_bar.

    The feasible set {B : delta(B) <= delta_bar} is convex (delta is a max of
    convex functions of B), so Delta is the unique Frobenius projection of A
    onto it minus A.  Method (see ``_stability_projection``): the published
    two-level iteration (outer Newton/bisection on eps = ||Delta||_F, inner
    norm-preserving gradient flow on E, ||E||_F = 1, adaptive step, warm
    starts), then a certification stage that uses convexity:

    * "exact": cutting planes on the exact delta; the returned ``norm`` and
      the certified ``norm_lower`` agree to ``tol`` (relative) when
      ``converged``, and delta(A + Delta) = delta_bar to 1e-10;
    * "upper": Delta brings the certified relaxation bound down to
      delta_bar (so delta(A + Delta) <= delta_bar is certified) and is the
      minimal such Delta up to the alternation's tolerance; ``norm_lower`` is
      a certified lower bound for the exact problem (from ascent cuts).

    Corner cases are closed forms: delta_bar >= delta(A) gives Delta = 0;
    alpha = 1 clamps the eigenvalues of sym(A); d = 1 is scalar.

    Args:
        A: square (d, d) matrix.
        alpha: in (0, 1].
        delta_bar: target; +inf gives Delta = 0; NaN and -inf are refused.
        method: "exact", "upper", or "auto" (exact for d <= 8).
        tol: relative tolerance of the certification stage.
        max_outer, max_inner: iteration limits of the two-level method.
        max_refinements: iteration limit of the certification stage.
        warm_start: a previous ``PerturbationResult`` for a nearby problem;
            its eps and direction start the two-level method.

    Returns:
        ``PerturbationResult`` (``matrix``, ``norm``, ``delta``,
        ``norm_lower``, iteration counts, ``converged``).

    Raises:
        ValueError: bad A, alpha or delta_bar; "exact" for d > 16.
    """
    A = _bounds.as_square(A)
    alpha = _bounds.check_alpha(alpha)
    delta_bar = _bounds.check_delta_bar(delta_bar)
    d = A.shape[0]
    if method == "auto":
        method = "exact" if d <= MIN_PERTURBATION_EXACT_DIM else "upper"
    if method not in ("exact", "upper"):
        raise ValueError(f"method must be 'auto', 'exact' or 'upper', got {method!r}.")
    if method == "exact" and d > _bounds.EXACT_MAX_DIM:
        raise ValueError(f"method='exact' is limited to d <= {_bounds.EXACT_MAX_DIM}, got d = {d}.")
    if alpha == 1.0:
        current = _bounds.exact_delta(A, 1.0)
        if current.value <= delta_bar:
            return _zero_result(A, current)
        return _closed_form_alpha_one(A, delta_bar)
    if d == 1:
        current = _bounds.exact_delta(A, alpha)
        if current.value <= delta_bar:
            return _zero_result(A, current)
        return _closed_form_scalar(A, alpha, delta_bar)
    eps = E = None
    if warm_start is not None and warm_start.norm > 0:
        eps, E = warm_start.norm, warm_start.matrix / warm_start.norm
    if method == "exact":
        return _exact(A, alpha, delta_bar, tol, max_outer, max_inner, max_refinements, eps, E)
    return _upper(A, alpha, delta_bar, tol, max_outer, max_inner, max_refinements, eps, E)


def _exact(A, alpha, delta_bar, tol, max_outer, max_inner, max_refinements, eps, E):
    current = _bounds.exact_delta(A, alpha)
    if current.value <= delta_bar:
        return _zero_result(A, current)
    oracle = _projection.ExactOracle(alpha)
    eps, E, _, outer, inner = _projection.two_level(
        A, delta_bar, oracle, eps=eps, E=E, tol=1e-4, max_outer=max_outer, max_inner=max_inner)
    g_value = lambda B: oracle(B, cuts=False)[0]
    root_tol = 1e-12 * (1 + abs(delta_bar))
    start = _projection._feasible_near(A, A + eps * E, delta_bar, g_value, alpha, root_tol)
    oracle(start)
    B, norm, lower, refinements, converged = _projection.refine_exact(
        A, alpha, delta_bar, oracle, start, tol, max_refinements, root_tol)
    return PerturbationResult(B - A, float(norm), _bounds.exact_delta(B, alpha), float(lower),
                              "exact", outer, inner, refinements, bool(converged))


def _upper(A, alpha, delta_bar, tol, max_outer, max_inner, max_refinements, eps, E):
    current = delta(A, alpha, "upper")
    if current.value <= delta_bar:
        return _zero_result(A, current)
    t = current.scaling
    if t is None:  # the cheap bound won: start the relaxation from its minimiser
        _, t, _ = _bounds.minimize_relaxation(_bounds.flow_relaxation(A, alpha))
    oracle = _projection.RelaxationOracle(alpha, t)
    _, _, _, outer, inner = _projection.two_level(
        A, delta_bar, oracle, eps=eps, E=E, tol=1e-3, max_outer=max_outer, max_inner=max_inner)
    B, t, refinements, converged = _projection.refine_upper(
        A, alpha, delta_bar, oracle.t, max_refinements, tol)
    certified = _bounds.upper_delta(B, alpha, scaling_candidates=[t])
    cuts = []
    for s in (0.0, 0.5, 1.0):
        point = A + s * (B - A)
        found = _bounds.lower_delta(point, alpha, starts=4)
        cuts.append((found.D, found.vector))
    lower, _, _ = _projection.lower_bound_from_cuts(A, delta_bar, cuts)
    return PerturbationResult(B - A, float(np.linalg.norm(B - A)), certified, float(lower),
                              "upper", outer, inner, refinements, bool(converged))
