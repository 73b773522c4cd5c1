"""The minimal perturbation Delta: solvers behind ``stability.min_perturbation``.

Problem (shared/DESIGN.md, "Stabilized NODE"): for delta_bar < g(A),

    min ||Delta||_F  subject to  g(A + Delta) <= delta_bar,

with g = delta (exact, vertex enumeration) or g = the certified relaxation
bound of ``_stability_bounds``.  Both g are convex, so this is the Frobenius
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

from contractive_keras import _stability_bounds as bounds


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
    delta: bounds.DeltaResult
    norm_lower: float
    method: str
    outer_iterations: int = 0
    inner_iterations: int = 0
    refinement_iterations: int = 0
    converged: bool = True


# --- oracles --------------------------------------------------------------------

class ExactOracle:
    """g = delta by vertex enumeration; records the cuts of every evaluation."""

    def __init__(self, alpha, margin=0.5):
        self.alpha = alpha
        self.margin = margin
        self.cuts = []   # (D, x) pairs: x^T D B x <= delta(B) for all B

    def __call__(self, B, cuts=True):
        d = B.shape[0]
        Ds = bounds.vertices(d, self.alpha)
        M = Ds[:, :, None] * B[None]
        w, X = np.linalg.eigh(0.5 * (M + M.transpose(0, 2, 1)))
        k = int(np.argmax(w[:, -1]))
        value = float(w[k, -1])
        if cuts:
            near = value - max(1e-9, self.margin * 1e-3 * (1 + abs(value)))
            rows, cols = np.nonzero(w > near)
            order = np.argsort(-w[rows, cols])[:2 * d + 4]   # the most active pieces
            for i, j in zip(rows[order], cols[order]):
                self.cuts.append((Ds[i].copy(), X[i][:, j].copy()))
        x = X[k][:, -1]
        return value, Ds[k][:, None] * np.outer(x, x)


class RelaxationOracle:
    """g = the relaxation at a warm-started T (one fixed-point update per call)."""

    def __init__(self, alpha, t):
        self.alpha = alpha
        self.t = t

    def __call__(self, B, cuts=True):
        relax = bounds.flow_relaxation(B, self.alpha)
        w, V = relax.eig(self.t)
        target = np.clip(relax.best_t(V[:, -1]), self.t * 1e-2, self.t * 1e2)
        t_new = np.sqrt(self.t * np.maximum(target, 1e-300))
        w_new, V_new = relax.eig(t_new)
        if w_new[-1] < w[-1]:
            self.t, w, V = t_new, w_new, V_new
        v = V[:, -1]
        c, r = (1 + self.alpha) / 2, (1 - self.alpha) / 2
        return float(w[-1]), np.outer(c * v + r * (B @ v) / self.t, v)


# --- 1. the two-level method --------------------------------------------------------

def _inner_flow(A, eps, E, g, max_steps, tol, step):
    """min over ||E||_F = 1 of g(A + eps E): projected gradient flow, adaptive step."""
    value, G = g(A + eps * E)
    steps = 0
    for steps in range(1, max_steps + 1):
        tangent = G - np.sum(G * E) * E
        size = np.linalg.norm(tangent)
        if size <= tol * max(np.linalg.norm(G), 1e-300) or step < 1e-14:
            break
        while step >= 1e-14:
            trial = E - step * tangent / size
            trial /= np.linalg.norm(trial)
            trial_value, trial_G = g(A + eps * trial)
            if trial_value < value:
                E, value, G = trial, trial_value, trial_G
                step = min(2.0 * step, 1.0)
                break
            step *= 0.5
    return E, value, G, steps, step


def two_level(A, delta_bar, g, *, eps=None, E=None, tol=1e-6, max_outer=30, max_inner=50):
    """Outer Newton/bisection on eps, inner gradient flow on the unit sphere.

    Returns (eps, E, value, outer, inner) with value ~ g(A + eps E) ~ delta_bar.
    """
    record = getattr(g, "__call__")
    g = lambda B: record(B, cuts=False)
    value0, G0 = record(A)
    if E is None:
        E = -G0 / max(np.linalg.norm(G0), 1e-300)
    if eps is None:
        eps = max(value0 - delta_bar, 0.0) / max(np.linalg.norm(G0), 1e-300)
    lo, hi = 0.0, math.inf
    inner_total, step, value = 0, 0.5, value0
    outer = 0
    for outer in range(1, max_outer + 1):
        E, value, G, inner, step = _inner_flow(A, eps, E, g, max_inner, 1e-8, max(step, 1e-3))
        record(A + eps * E)      # the cuts at the inner minimiser
        inner_total += inner
        if abs(value - delta_bar) <= tol * (1 + abs(delta_bar)):
            break
        if value > delta_bar:
            lo = max(lo, eps)
        else:
            hi = min(hi, eps)
        slope = float(np.sum(G * E))
        newton = eps - (value - delta_bar) / slope if slope < 0 else math.inf
        if not (lo < newton < hi):
            newton = 2 * max(eps, 1e-12) if hi == math.inf else 0.5 * (lo + hi)
        eps = newton
    return eps, E, value, outer, inner_total


# --- 2a. exact refinement: cutting planes -----------------------------------------

def _dual_weights(Gs, s):
    """argmax_{w >= 0} s^T w - ||Gs^T w||^2 / 2 (NNLS on a Cholesky factor)."""
    from scipy.optimize import nnls

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


def lower_bound_from_cuts(A, delta_bar, cuts):
    """(certified lower bound on ||Delta*||_F, candidate A - sum w_k G_k)."""
    Gs = np.array([(D[:, None] * np.outer(x, x)).ravel() for D, x in cuts])
    s = Gs @ A.ravel() - delta_bar
    keep = s > -np.inf
    w = _dual_weights(Gs[keep], s[keep])
    step = w @ Gs[keep]
    q = float(w @ s[keep] - 0.5 * step @ step)
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


# --- 2b. certified refinement: weighted spectral balls ------------------------------

def flow_ball(alpha, delta_bar, t):
    """(L, W, B0) with {B : ||diag(L)(B - diag(B0))diag(W)||_2 <= 1} =
    {B : lambda_max(c sym B + (r/2)(T + B^T T^-1 B)) <= delta_bar}.

    Completing the square, c sym B + (r/2) B^T T^-1 B = (r/2) K^T T^-1 K -
    c^2/(2r) T with K = B + (c/r) T, and c^2 - r^2 = alpha.  Needs
    R = delta_bar + alpha t / (2r) > 0.
    """
    c, r = (1 + alpha) / 2, (1 - alpha) / 2
    R = delta_bar + alpha * t / (2 * r)
    return np.sqrt(r / (2 * t)), 1.0 / np.sqrt(R), -(c / r) * t, R


def project_ball(A, L, W, B0, Y0=None, iters=500, tol=1e-12):
    """Frobenius projection of A onto ||L (B - B0) W||_2 <= 1 (FISTA in Y)."""
    Ya = L[:, None] * (A - np.diag(B0)) * W[None, :]
    H = 1.0 / (L[:, None] * W[None, :]) ** 2
    step = 1.0 / H.max()

    def clip(Y):
        U, s, Vt = np.linalg.svd(Y)
        return (U * np.minimum(s, 1.0 - 1e-13)) @ Vt

    # The weighted-metric projection (exact when H is constant) starts it.
    Y = clip(Ya) if Y0 is None else clip(Y0)
    Z, momentum = Y.copy(), 1.0
    for _ in range(iters):
        Y_new = clip(Z - step * H * (Z - Ya))
        change = np.linalg.norm(Y_new - Y)
        m_new = 0.5 * (1 + math.sqrt(1 + 4 * momentum ** 2))
        Z = Y_new + (momentum - 1) / m_new * (Y_new - Y)
        if np.sum((Y_new - Y) * (Y - Z)) > 0:   # adaptive restart
            Z, m_new = Y_new.copy(), 1.0
        Y, momentum = Y_new, m_new
        if change <= tol * (1 + np.linalg.norm(Y)):
            break
    return np.diag(B0) + Y / L[:, None] / W[None, :], Y


def _multiplier(A, B, Y, L, W, B0):
    """The LMI multiplier Z of the ball projection (for M(B, T) <= delta_bar I).

    In the ball's coordinates the projection's normal is N = -H o (Y - Ya),
    H = 1 / (L W)^2, and N = 2 Y Z_Y with Z_Y supported on the active right
    singular vectors V1 of Y (||Y V1|| = 1): Z_Y = V1 (U1^T N V1) V1^T / 2.
    Y^T Y - I = W (M - delta_bar I) W, so Z = W Z_Y W.
    """
    Ya = L[:, None] * (A - np.diag(B0)) * W[None, :]
    N = -(Y - Ya) / (L[:, None] * W[None, :]) ** 2
    U, s, Vt = np.linalg.svd(Y)
    active = s > 1 - 1e-7
    U1, V1 = U[:, active], Vt[active].T
    S = U1.T @ N @ V1
    ZY = 0.25 * V1 @ (S + S.T) @ V1.T
    return W[:, None] * ZY * W[None, :]


def _scaling_gradient(alpha, B, Z, t):
    """d/dt_i of v(T) = min_B ||B - A||^2 / 2 over the ball: <Z, dM/dt_i> (envelope)."""
    r = (1 - alpha) / 2
    return (r / 2) * (np.diag(Z) - np.einsum("ij,jk,ik->i", B, Z, B) / t ** 2)


def refine_upper(A, alpha, delta_bar, t, max_evals, tol):
    """Joint projection onto {B : exists T, relaxation(B, T) <= delta_bar}.

    v(T) = min_B {||B - A||_F^2 / 2 : lambda_max(M(B, T)) <= delta_bar} is
    convex in T (partial minimisation of a jointly convex problem), with
    gradient <Z, dM/dT> (``_scaling_gradient``); it is minimised by L-BFGS-B
    on T >= the floor that keeps R > 0, each evaluation an exact ball
    projection warm-started from the previous one.  Every evaluated B is
    feasible for its own T.  Returns (B, T, evaluations, converged).
    """
    from scipy.optimize import minimize

    r = (1 - alpha) / 2
    floor = max(-2 * r * delta_bar / alpha, 0.0) * (1 + 1e-6) + 1e-12
    cap = 1e6 * (np.abs(A).sum(axis=1).max() + abs(delta_bar) + 1.0) + 2 * floor
    t = np.clip(t, floor * 1.01, cap)
    state = {"B": None, "best": (math.inf, None, None), "evals": 0}

    def value(t):
        t = np.clip(t, floor, cap)
        L, W, B0, _ = flow_ball(alpha, delta_bar, t)
        Y0 = None if state["B"] is None else L[:, None] * (state["B"] - np.diag(B0)) * W[None, :]
        B, Y = project_ball(A, L, W, B0, Y0=Y0, tol=1e-13, iters=20000)
        state["evals"] += 1
        f = 0.5 * float(np.sum((B - A) ** 2))
        if not np.isfinite(f):
            return math.inf, np.zeros_like(t)
        state["B"] = B
        if f < state["best"][0]:
            state["best"] = (f, B, t.copy())
        return f, _scaling_gradient(alpha, B, _multiplier(A, B, Y, L, W, B0), t)

    result = minimize(value, t, jac=True, method="L-BFGS-B", bounds=[(floor, cap)] * len(t),
                      options=dict(maxfun=max_evals, maxiter=max_evals, ftol=tol * 1e-3,
                                   gtol=1e-14))
    _, B, t = state["best"]
    return B, t, state["evals"], bool(result.success)
