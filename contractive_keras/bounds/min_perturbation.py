"""The minimal perturbation Delta: solvers behind ``stability.min_perturbation``.

Problem (shared/DESIGN.md, "Stabilized NODE"): for delta_bar < g(A),

    min ||Delta||_F  subject to  g(A + Delta) <= delta_bar,

with g = delta (exact, vertex enumeration) or g = the certified relaxation
bound of ``bounds.relaxation``.  Both g are convex, so this is the Frobenius
projection of A onto a convex set, and its solution has g = delta_bar.

1. The published two-level method (Guglielmi, De Marinis, Savostianov and
   Tudisco, "Contractivity of neural ODEs: an eigenvalue optimization
   problem", 2024): an outer Newton iteration with bisection safeguard on
   eps = ||Delta||_F for the root of f(eps) = min_{||E||_F = 1} g(A + eps E)
   = delta_bar, and an inner norm-preserving gradient flow
   E' = -G + <G, E> E (G the gradient of g at A + eps E, D x x^T for the
   maximizing vertex D and top eigenvector x), discretised with an adaptive
   step and warm-started from the previous eps.  f is convex and
   non-increasing (value function of a convex problem), so Newton from the
   left never overshoots the root when the inner problem is solved; the
   bisection bracket covers the inexact case.  f'(eps) = <G, E> at the
   inner optimum.
2. Certification, using convexity.
   Exact g (small d): a cutting-plane (Kelley) refinement.  Every pair of a
   vertex D and a unit vector x gives a half-space {B : x^T D B x <= delta_bar}
   that contains the feasible set, so for any weights w >= 0 the dual value
   q(w) = sum_k w_k (x_k^T D_k A x_k - delta_bar) - ||sum_k w_k D_k x_k x_k^T||_F^2 / 2
   certifies ||Delta*||_F >= sqrt(2 q(w)).  The projection onto the
   polyhedron of the cuts collected so far gives the next candidate; a
   feasible point on the boundary near it (along the ray from A, or shifted
   by -kappa I, which lowers delta by at least alpha kappa) gives the upper
   bound.  Stops when the two bounds agree to ``tol``.
   Certified upper bound (large d): for fixed T the relaxation's sublevel set
   is a weighted spectral-norm ball ||L (B - B0) W||_2 <= 1 (L, W, B0
   diagonal), onto which the exact Frobenius projection is computed by
   accelerated projected gradient in the ball's coordinates.  The distance
   v(T) to that ball is convex in T (the constraint is jointly convex in
   (B, T)), with gradient <Z, dM/dT> from the projection's multiplier Z, and
   is minimised over T by L-BFGS-B: the result is the Frobenius projection
   onto {B : min_T relaxation(B, T) <= delta_bar}.  The lower bound for the
   exact problem uses cuts from the ascent.
"""

import dataclasses
import math

import numpy as np

from contractive_keras.bounds.delta import DeltaResult
from contractive_keras.bounds.delta import EXACT_MAX_DIM
from contractive_keras.bounds.delta import exact_delta
from contractive_keras.bounds.delta import lower_delta
from contractive_keras.bounds.delta import upper_delta
from contractive_keras.bounds.operator_norms import sym
from contractive_keras.bounds.relaxation import flow_relaxation
from contractive_keras.bounds.relaxation import minimize_relaxation
from contractive_keras.bounds.threads import single_threaded_blas
from contractive_keras.bounds.two_level import ExactOracle
from contractive_keras.bounds.two_level import RelaxationOracle
from contractive_keras.bounds.two_level import two_level
from contractive_keras.bounds.weighted_ball import refine_upper
from contractive_keras.bounds.validation import as_square
from contractive_keras.bounds.validation import check_alpha
from contractive_keras.bounds.validation import check_delta_bar

# min_perturbation(method="auto") is exact (vertex enumeration) up to this size.
MIN_PERTURBATION_EXACT_DIM = 8


@dataclasses.dataclass(frozen=True)
class PerturbationResult:
    """What ``stability.min_perturbation`` returns.

    Attributes:
        matrix: Delta (d, d), float64.
        norm: ||Delta||_F.
        delta: ``DeltaResult`` of A + Delta ("exact" or "upper"; its value is
            delta_bar, up to ``tol``, unless Delta = 0).
        norm_lower: certified lower bound on the norm of the minimal
            perturbation for the *exact* delta (= norm when Delta = 0).
        method: "exact" or "upper".
        outer_iterations, inner_iterations: of the two-level method.
        refinement_iterations: of the certification stage.
        converged: the stopping test was met.
    """

    matrix: np.ndarray
    norm: float
    delta: DeltaResult
    norm_lower: float
    method: str
    outer_iterations: int = 0
    inner_iterations: int = 0
    refinement_iterations: int = 0
    converged: bool = True


# --- 2a. exact refinement: cutting planes -----------------------------------------

def _dual_weights(Gs, s):
    """argmax_{w >= 0} s^T w - ||Gs^T w||^2 / 2 (NNLS on a Cholesky factor)."""
    from scipy.optimize import nnls  # SciPy: heavy, imported on first use

    K = Gs @ Gs.T
    n = len(s)
    jitter = 1e-12 * max(np.trace(K) / n, 1e-300)
    R = np.linalg.cholesky(K + jitter * np.eye(n))
    b = np.linalg.solve(R, s)
    w, _ = nnls(R.T, b, maxiter=50 * n + 100)
    return w


def _crossing(phi, lo, hi, phi_lo, phi_hi, tol):
    """Smallest root of a convex decreasing phi on [lo, hi] (phi_lo > 0 >= phi_hi):
    Illinois regula falsi; returns a point with phi <= 0 and phi >= -tol."""
    side = 0
    for _ in range(200):
        if phi_hi >= -tol or hi - lo <= 1e-15 * max(1.0, hi):
            break
        x = hi - phi_hi * (hi - lo) / (phi_hi - phi_lo)
        if not lo < x < hi:
            x = 0.5 * (lo + hi)
        fx = phi(x)
        if fx > 0:
            lo, phi_lo = x, fx
            if side == -1:
                phi_hi *= 0.5
            side = -1
        else:
            hi, phi_hi = x, fx
            if side == 1:
                phi_lo *= 0.5
            side = 1
    return hi


def _feasible_near(A, Bp, delta_bar, g_value, alpha, tol):
    """A point on {delta = delta_bar} near the candidate Bp: along the ray
    A -> Bp or by the shift Bp - kappa I; returns the nearer to A."""
    d = A.shape[0]
    best = None
    value_p = g_value(Bp)
    if value_p <= delta_bar:
        # Bp feasible: move back towards A along the segment to the boundary.
        phi = lambda s: g_value(A + s * (Bp - A)) - delta_bar
        s = _crossing(phi, 0.0, 1.0, g_value(A) - delta_bar, value_p - delta_bar, tol)
        return A + s * (Bp - A)
    direction = Bp - A
    phi_ray = lambda s: g_value(A + s * direction) - delta_bar
    far = phi_ray(2.0)
    if far <= 0:
        s = _crossing(phi_ray, 1.0, 2.0, value_p - delta_bar, far, tol)
        best = A + s * direction
    kappa_max = (value_p - delta_bar) / alpha * (1 + 1e-9) + 1e-300
    phi_shift = lambda k: g_value(Bp - k * np.eye(d)) - delta_bar
    kappa = _crossing(phi_shift, 0.0, kappa_max, value_p - delta_bar, phi_shift(kappa_max), tol)
    shifted = Bp - kappa * np.eye(d)
    if best is None or np.linalg.norm(shifted - A) < np.linalg.norm(best - A):
        best = shifted
    return best


def dual_value_rounding_bound(Gs, A, delta_bar, s, w):
    """A priori bound on the floating-point error of the dual value q(w).

    q(w) = w . s - ||w Gs||^2 / 2 with the slacks s = Gs vec(A) - delta_bar
    (``s``: the caller's floating-point slacks; their own rounding is the
    first term below) is evaluated with inner products of length at most m = max(k, d^2) + 2; each has error at
    most gamma_m = m u / (1 - m u) times the same product of absolute values
    (Higham, *Accuracy and Stability of Numerical Algorithms*, eq. 3.5), so
    |fl(q) - q| <= gamma_m (|w| . (|Gs| |vec A| + |delta_bar|) + |w| . |s|
    + ||w| |Gs||^2), up to terms of order u^2.
    """
    m = max(Gs.shape) + 2
    u = np.finfo(float).eps / 2
    gamma = m * u / (1 - m * u)
    step = np.abs(w) @ np.abs(Gs)
    magnitude = (np.abs(w) @ (np.abs(Gs) @ np.abs(A.ravel()) + abs(delta_bar))
                 + np.abs(w) @ np.abs(s) + step @ step)
    return float(gamma * magnitude)


def lower_bound_from_cuts(A, delta_bar, cuts):
    """(certified lower bound on ||Delta*||_F, candidate A - sum w_k G_k, weights w).

    The bound is sqrt(2 q(w)) of the module docstring, with q(w) rounded
    down by ``dual_value_rounding_bound``: weak duality holds for the exact
    q(w), and at the optimum the floating-point q(w) can exceed it by a few
    ulps (seen: a bound 1 ulp above the norm of the minimiser).
    """
    Gs = np.array([(D[:, None] * np.outer(x, x)).ravel() for D, x in cuts])
    s = Gs @ A.ravel() - delta_bar
    keep = s > -np.inf
    w = _dual_weights(Gs[keep], s[keep])
    step = w @ Gs[keep]
    q = float(w @ s[keep] - 0.5 * step @ step)
    q -= dual_value_rounding_bound(Gs[keep], A, delta_bar, s[keep], w)
    return math.sqrt(max(2 * q, 0.0)), A - step.reshape(A.shape), w


def refine_exact(A, alpha, delta_bar, oracle, start, tol, max_iter, root_tol):
    """Kelley refinement; returns (B, upper norm, lower norm, iterations, converged)."""
    g_value = lambda B: oracle(B, cuts=False)[0]
    best = start
    upper = np.linalg.norm(best - A)
    lower = 0.0
    it = 0
    for it in range(1, max_iter + 1):
        lower_k, Bp, w = lower_bound_from_cuts(A, delta_bar, oracle.cuts)
        lower = max(lower, lower_k)
        if upper - lower <= tol * max(upper, 1e-300):
            return best, upper, lower, it, True
        oracle(Bp)                       # cuts at the candidate
        B = _feasible_near(A, Bp, delta_bar, g_value, alpha, root_tol)
        oracle(B)                        # and at the boundary point
        if np.linalg.norm(B - A) < upper:
            best, upper = B, np.linalg.norm(B - A)
        if len(w) > 300:   # keep the active cuts and the newest
            oracle.cuts = [cut for cut, weight in zip(oracle.cuts, w) if weight > 0] + \
                oracle.cuts[len(w):]
    return best, upper, lower, it, upper - lower <= tol * max(upper, 1e-300)


# --- the public entry point -----------------------------------------------------

def _zero_result(A, kind_delta, lower=0.0):
    d = A.shape[0]
    return PerturbationResult(np.zeros((d, d)), 0.0, kind_delta, lower,
                              kind_delta.kind if kind_delta.kind != "lower" else "upper")


def _closed_form_alpha_one(A, delta_bar):
    """alpha = 1: delta = mu_2; clamp the eigenvalues of sym(A) at delta_bar."""
    w, V = np.linalg.eigh(sym(A))
    Delta = (V * (np.minimum(w, delta_bar) - w)) @ V.T
    B = A + Delta
    result = exact_delta(B, 1.0)
    norm = float(np.linalg.norm(Delta))
    return PerturbationResult(Delta, norm, result, norm, "exact")


def _closed_form_scalar(A, alpha, delta_bar):
    """d = 1: delta(b) = b for b >= 0, alpha b for b < 0."""
    limit = delta_bar if delta_bar >= 0 else delta_bar / alpha
    Delta = np.array([[min(A[0, 0], limit) - A[0, 0]]])
    result = exact_delta(A + Delta, alpha)
    norm = abs(float(Delta[0, 0]))
    return PerturbationResult(Delta, norm, result, norm, "exact")


@single_threaded_blas
def min_perturbation(A, min_slope, delta_bar, *, method="auto", tol=1e-8, max_outer=30,
                     max_inner=50, max_refinements=200, warm_start=None):
    """The smallest-Frobenius Delta with max_D mu_2(D (A + Delta)) = delta_bar.

    The feasible set {B : delta(B) <= delta_bar} is convex (delta is a max of
    convex functions of B), so Delta is the unique Frobenius projection of A
    onto it minus A.  Method (module docstring): the published
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
        min_slope: alpha, the lower slope bound, in (0, 1].
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
        ValueError: bad A, min_slope or delta_bar; "exact" for d > 16.
    """
    A = as_square(A)
    alpha = check_alpha(min_slope, "min_slope")
    delta_bar = check_delta_bar(delta_bar)
    d = A.shape[0]
    if method == "auto":
        method = "exact" if d <= MIN_PERTURBATION_EXACT_DIM else "upper"
    if method not in ("exact", "upper"):
        raise ValueError(f"method must be 'auto', 'exact' or 'upper', got {method!r}.")
    if method == "exact" and d > EXACT_MAX_DIM:
        raise ValueError(f"method='exact' is limited to d <= {EXACT_MAX_DIM}, got d = {d}.")
    if alpha == 1.0:
        current = exact_delta(A, 1.0)
        if current.value <= delta_bar:
            return _zero_result(A, current)
        return _closed_form_alpha_one(A, delta_bar)
    if d == 1:
        current = exact_delta(A, alpha)
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
    current = exact_delta(A, alpha)
    if current.value <= delta_bar:
        return _zero_result(A, current)
    oracle = ExactOracle(alpha)
    eps, E, _, outer, inner = two_level(
        A, delta_bar, oracle, eps=eps, E=E, tol=1e-4, max_outer=max_outer, max_inner=max_inner)
    g_value = lambda B: oracle(B, cuts=False)[0]
    root_tol = 1e-12 * (1 + abs(delta_bar))
    start = _feasible_near(A, A + eps * E, delta_bar, g_value, alpha, root_tol)
    oracle(start)
    B, norm, lower, refinements, converged = refine_exact(
        A, alpha, delta_bar, oracle, start, tol, max_refinements, root_tol)
    return PerturbationResult(B - A, float(norm), exact_delta(B, alpha), float(lower),
                              "exact", outer, inner, refinements, bool(converged))


def _upper(A, alpha, delta_bar, tol, max_outer, max_inner, max_refinements, eps, E):
    current = upper_delta(A, alpha, lower=lower_delta(A, alpha, starts=2).value)
    if current.value <= delta_bar:
        return _zero_result(A, current)
    t = current.scaling
    if t is None:  # the cheap bound won: start the relaxation from its minimiser
        _, t, _ = minimize_relaxation(flow_relaxation(A, alpha))
    oracle = RelaxationOracle(alpha, t)
    _, _, _, outer, inner = two_level(
        A, delta_bar, oracle, eps=eps, E=E, tol=1e-3, max_outer=max_outer, max_inner=max_inner)
    B, t, refinements, converged = refine_upper(
        A, alpha, delta_bar, oracle.t, max_refinements, tol)
    certified = upper_delta(B, alpha, scaling_candidates=[t])
    cuts = []
    for s in (0.0, 0.5, 1.0):
        point = A + s * (B - A)
        found = lower_delta(point, alpha, starts=4)
        cuts.append((found.D, found.vector))
    lower, _, _ = lower_bound_from_cuts(A, delta_bar, cuts)
    return PerturbationResult(B - A, float(np.linalg.norm(B - A)), certified, float(lower),
                              "upper", outer, inner, refinements, bool(converged))
