"""The AM-GM relaxation of delta and of the Euler step norm (NumPy, float64).

shared/DESIGN.md, "Stabilized NODE".  With y = A x and D_i = c + r s_i,
c = (1 + alpha)/2, r = (1 - alpha)/2, s_i in [-1, 1],

    x^T sym(D A) x = c x^T A x + r sum_i s_i x_i y_i
                  <= c x^T A x + (r/2) sum_i (t_i x_i^2 + y_i^2 / t_i)

for every t > 0, hence delta <= lambda_max(c sym(A) + (r/2)(T + A^T T^-1 A)).
The right side is jointly convex in (A, T) (matrix-fractional function), so
its minimum over T is a convex function of A.  The same argument on
||(I + h D A) x||^2 = sum_i (x_i^2 + 2 h D_i x_i y_i + h^2 D_i^2 y_i^2), whose
i-th term is convex in D_i (maximum at D_i = 1 or alpha), gives
||I + h D A||_2^2 <= lambda_max(Q_h(A, T)) with

    Q_h = I + h(1+alpha) sym(A) + h^2 (1+alpha^2)/2 A^T A
          + h (1-alpha)/4 (A^T T A + (2I + h(1+alpha)A)^T T^-1 (2I + h(1+alpha)A)).

Both are instances of lambda_max(S0 + w (P^T T P + Q^T T^-1 Q)).
"""

import dataclasses
import math

import numpy as np

from contractive_keras.bounds.operator_norms import spectral_norm
from contractive_keras.bounds.operator_norms import sym


@dataclasses.dataclass
class Relaxation:
    """lambda_max(S0 + w (P^T T P + Q^T T^-1 Q)) as a function of t = diag(T) > 0."""

    S0: np.ndarray
    w: float
    P: np.ndarray  # None means the identity
    Q: np.ndarray

    def matrix(self, t):
        PtP = np.diag(t) if self.P is None else self.P.T @ (t[:, None] * self.P)
        return self.S0 + self.w * (PtP + self.Q.T @ (self.Q / t[:, None]))

    def eig(self, t):
        return np.linalg.eigh(self.matrix(t))

    def best_t(self, v):
        """Minimiser of v^T(P^T T P + Q^T T^-1 Q)v over t: |Q v| / |P v|."""
        pv = self.P @ v if self.P is not None else v
        qv = self.Q @ v
        return np.abs(qv) / np.maximum(np.abs(pv), 1e-300)


def flow_relaxation(A, alpha):
    c, r = (1 + alpha) / 2, (1 - alpha) / 2
    return Relaxation(c * sym(A), r / 2, None, A)


def euler_relaxation(A, alpha, h):
    d = A.shape[0]
    k = h * (1 + alpha)
    S0 = np.eye(d) + k * sym(A) + h * h * (1 + alpha ** 2) / 2 * (A.T @ A)
    return Relaxation(S0, h * (1 - alpha) / 4, A, 2 * np.eye(d) + k * A)


def minimize_relaxation(relax, t0=None, candidates=(), max_evals=400, lower=None):
    """min over t > 0 of lambda_max of the relaxation (any t gives a valid bound).

    L-BFGS on log t of the log-sum-exp smoothing of the eigenvalues, with a
    continuation in the smoothing; every evaluated t is a candidate, the best
    exact lambda_max is returned as (value, t, top eigenvector).  ``lower`` (a
    known lower bound of the true quantity) stops the search once the bound is
    within 1e-12 of it.
    """
    from scipy.optimize import minimize  # SciPy: heavy, imported on first use

    d = relax.Q.shape[0]
    best = [np.inf, None, None]

    def consider(t):
        w, V = relax.eig(t)
        if w[-1] < best[0]:
            best[:] = [float(w[-1]), t.copy(), V[:, -1].copy()]
        return w, V

    scale = max(np.abs(np.linalg.eigvalsh(relax.matrix(np.ones(d)))).max(), 1e-300)
    starts = [np.asarray(t, np.float64) for t in candidates if t is not None]
    if t0 is not None:
        starts.append(np.asarray(t0, np.float64))
    if not starts:
        starts.append(np.full(d, max(spectral_norm(relax.Q), 1e-8)))
    for t in starts:
        consider(np.clip(t, 1e-12, 1e12))
    # A few damped fixed-point steps t <- sqrt(t * |Qv| / |Pv|) from the best start.
    t = best[1].copy()
    for _ in range(5):
        _, V = consider(t)
        target = np.clip(relax.best_t(V[:, -1]), t * 1e-3, t * 1e3)
        t = np.sqrt(t * np.maximum(target, 1e-300))
    evals = [0]

    def smooth(tau, beta):
        t = np.exp(np.clip(tau, -700, 700))
        w, V = consider(t)
        evals[0] += 1
        z = beta * (w - w[-1])
        p = np.exp(z)
        total = p.sum()
        p /= total
        qv = relax.Q @ V
        pv = relax.P @ V if relax.P is not None else V
        grad = relax.w * ((pv ** 2) @ p * t - (qv ** 2) @ p / t)
        return w[-1] + np.log(total) / beta, grad

    tau = np.log(best[1])
    budget = max_evals
    for beta in (10.0, 100.0, 1e3, 1e4, 1e5):
        if budget <= 0 or (lower is not None and best[0] - lower <= 1e-12 * max(1, abs(lower))):
            break
        before = evals[0]
        result = minimize(smooth, tau, args=(beta / scale,), jac=True, method="L-BFGS-B",
                          options=dict(maxfun=budget, maxiter=budget, gtol=1e-12, ftol=1e-15))
        tau = np.log(best[1]) if np.all(np.isfinite(result.x)) else tau
        budget -= evals[0] - before
    return best[0], best[1], best[2]
