"""The published two-level method for the minimal perturbation (NumPy, float64).

Guglielmi, De Marinis, Savostianov and Tudisco, "Contractivity of neural
ODEs: an eigenvalue optimization problem" (2024): for a convex g (delta by
vertex enumeration, or the certified relaxation bound) and delta_bar < g(A),
an outer Newton iteration with bisection safeguard on eps = ||Delta||_F for
the root of f(eps) = min_{||E||_F = 1} g(A + eps E) = delta_bar, and an inner
norm-preserving gradient flow E' = -G + <G, E> E (G the gradient of g at
A + eps E: D x x^T for the maximizing vertex D and top eigenvector x),
discretised with an adaptive step and warm-started from the previous eps.
f is convex and non-increasing (value function of a convex problem), so
Newton from the left never overshoots the root when the inner problem is
solved; the bisection bracket covers the inexact case.  f'(eps) = <G, E> at
the inner optimum.
"""

import math

import numpy as np

from contractive_keras.bounds.delta import vertices
from contractive_keras.bounds.relaxation import flow_relaxation


# --- oracles --------------------------------------------------------------------

class ExactOracle:
    """g = delta by vertex enumeration; records the cuts of every evaluation."""

    def __init__(self, alpha, margin=0.5):
        self.alpha = alpha
        self.margin = margin
        self.cuts = []   # (D, x) pairs: x^T D B x <= delta(B) for all B

    def __call__(self, B, cuts=True):
        d = B.shape[0]
        Ds = vertices(d, self.alpha)
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
        relax = flow_relaxation(B, self.alpha)
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
