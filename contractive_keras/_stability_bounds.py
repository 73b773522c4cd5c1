"""Bounds on delta(A) = max_D mu_2(D A) and on ||I + h D A||_2 (NumPy, float64).

Private helpers of :mod:`contractive_keras.stability` (shared/DESIGN.md,
"Stabilized NODE").  D ranges over the diagonal matrices with entries in
[alpha, 1]; both quantities are convex in D, so their maxima sit at the 2^d
vertices D in {alpha, 1}^d.

* exact: enumeration of the vertices, batched symmetric eigenvalue problems;
* lower: alternating maximisation (x <- top eigenvector of sym(D A), then the
  best D for that x, D_i = 1 if x_i (A x)_i > 0 else alpha): each step can
  only increase mu_2(D A), and it stops at a vertex;
* upper: the AM-GM relaxation below, minimised over a positive diagonal T,
  and the cheap bound of DESIGN; the smaller of the two is reported.

The relaxation.  With y = A x and D_i = c + r s_i, c = (1 + alpha)/2,
r = (1 - alpha)/2, s_i in [-1, 1],

    x^T sym(D A) x = c x^T A x + r sum_i s_i x_i y_i
                  <= c x^T A x + (r/2) sum_i (t_i x_i^2 + y_i^2 / t_i)

for every t > 0, hence delta <= lambda_max(c sym(A) + (r/2)(T + A^T T^-1 A)).
The right side is jointly convex in (A, T) (matrix-fractional function), so
its minimum over T is a convex function of A: it can serve as the target of a
Frobenius projection.  It is exact for alpha = 1, for d = 1 and, in
experiments, often to 1e-10 for small random A; its dual is the SDP-free
relaxation max_{X >= 0, tr X = 1} c <sym A, X> + r sum_i sqrt(X_ii (A X A^T)_ii).
The same argument on ||(I + h D A) x||^2 = sum_i (x_i^2 + 2 h D_i x_i y_i +
h^2 D_i^2 y_i^2), whose i-th term is convex in D_i (maximum at D_i = 1 or
alpha), gives ||I + h D A||_2^2 <= lambda_max(Q_h(A, T)) with

    Q_h = I + h(1+alpha) sym(A) + h^2 (1+alpha^2)/2 A^T A
          + h (1-alpha)/4 (A^T T A + (2I + h(1+alpha)A)^T T^-1 (2I + h(1+alpha)A)).

Both are instances of lambda_max(S0 + w (P^T T P + Q^T T^-1 Q)).
"""

import dataclasses
import math

import numpy as np

# Vertex enumeration of delta is the default up to this size (2^16 problems).
EXACT_MAX_DIM = 16
# Beyond this, "exact" is refused (2^24 eigenvalue problems).
EXACT_HARD_LIMIT = 24
_CHUNK = 2048


@dataclasses.dataclass(frozen=True)
class DeltaResult:
    """A value of delta(A) = max_D mu_2(D A) (or of a step norm) and its kind.

    Attributes:
        value: the number (float).
        kind: "exact", "lower" (a value attained by some D, so <= the true
            maximum) or "upper" (a certified bound, >= the true maximum).
        D: the diagonal of the maximizing vertex (exact), of the best vertex
            found (lower), or of the vertex the relaxation's top eigenvector
            points to (upper; a witness, not the bound's argument).
        vector: unit vector x with x^T sym(D A) x = value (exact / lower), or
            the top eigenvector of the relaxation (upper).
        scaling: for "upper", the diagonal T of the relaxation that gives
            ``value`` (None for the cheap bound); otherwise None.
        method: how it was computed ("vertices", "ascent", "relaxation",
            "cheap", "log_norm").
    """

    value: float
    kind: str
    D: np.ndarray
    vector: np.ndarray = None
    scaling: np.ndarray = None
    method: str = ""

    def __float__(self):
        return float(self.value)


# --- validation ---------------------------------------------------------------

def as_square(A, name="A"):
    """``A`` as a finite float64 (d, d) array, or a ValueError naming it."""
    try:
        array = np.array(A, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name} must be a real square matrix: {error}") from None
    if array.ndim != 2 or array.shape[0] != array.shape[1] or array.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty square matrix, got shape {array.shape}.")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} has non-finite entries.")
    return array


def check_alpha(alpha):
    """``alpha`` as a float in (0, 1], or a ValueError."""
    try:
        value = float(alpha)
    except (TypeError, ValueError):
        raise ValueError(f"alpha must be a number in (0, 1], got {alpha!r}.") from None
    if not (0.0 < value <= 1.0):
        raise ValueError(f"alpha must be in (0, 1] (the slopes of sigma lie in [alpha, 1]), got {alpha!r}.")
    return value


def check_delta_bar(delta_bar):
    """``delta_bar`` as a float; NaN and -inf (no finite Delta reaches it) refused."""
    try:
        value = float(delta_bar)
    except (TypeError, ValueError):
        raise ValueError(f"delta_bar must be a number, got {delta_bar!r}.") from None
    if math.isnan(value):
        raise ValueError("delta_bar is NaN.")
    if value == -math.inf:
        raise ValueError("delta_bar = -inf: no finite perturbation reaches it "
                         "(delta(B) is finite for every matrix B).")
    return value


def check_step(step_size):
    value = float(step_size)
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"step_size must be a positive finite number, got {step_size!r}.")
    return value


# --- plain quantities ---------------------------------------------------------

def sym(A):
    return 0.5 * (A + A.T)


def log_norm(A):
    """mu_2(A) = lambda_max((A + A^T) / 2)."""
    return float(np.linalg.eigvalsh(sym(A))[-1])


def spectral_norm(A):
    return float(np.linalg.norm(A, 2))


def top_eigenpair(S):
    w, V = np.linalg.eigh(S)
    return float(w[-1]), V[:, -1]


def _vertex_block(start, stop, d, alpha):
    index = np.arange(start, stop, dtype=np.int64)
    bits = (index[:, None] >> np.arange(d, dtype=np.int64)) & 1
    return np.where(bits == 1, 1.0, alpha)


def vertices(d, alpha):
    """All 2^d vertices of [alpha, 1]^d (rows)."""
    return _vertex_block(0, 2 ** d, d, alpha)


# --- delta --------------------------------------------------------------------

def exact_delta(A, alpha):
    """max over the 2^d vertices of mu_2(D A), batched eigvalsh."""
    d = A.shape[0]
    if alpha == 1.0:
        value, x = top_eigenpair(sym(A))
        return DeltaResult(value, "exact", np.ones(d), x, method="log_norm")
    best, best_D = -np.inf, None
    for start in range(0, 2 ** d, _CHUNK):
        Ds = _vertex_block(start, min(2 ** d, start + _CHUNK), d, alpha)
        M = Ds[:, :, None] * A[None]
        top = np.linalg.eigvalsh(0.5 * (M + M.transpose(0, 2, 1)))[:, -1]
        k = int(np.argmax(top))
        if top[k] > best:
            best, best_D = float(top[k]), Ds[k].copy()
    value, x = top_eigenpair(sym(best_D[:, None] * A))
    return DeltaResult(max(value, best), "exact", best_D, x, method="vertices")


def _ascend(A, alpha, D, max_iter=200):
    """Alternating maximisation from vertex D; returns (value, D, x)."""
    value, x = top_eigenpair(sym(D[:, None] * A))
    for _ in range(max_iter):
        s = x * (A @ x)
        new = np.where(s > 0, 1.0, np.where(s < 0, alpha, D))
        if np.array_equal(new, D):
            break
        new_value, new_x = top_eigenpair(sym(new[:, None] * A))
        if new_value <= value:
            break
        D, value, x = new, new_value, new_x
    return value, D, x


def lower_delta(A, alpha, starts=8, seed=0, extra_starts=()):
    """Best of several ascents: a certified *lower* bound (an attained value)."""
    d = A.shape[0]
    rng = np.random.default_rng(seed)
    candidates = [np.ones(d), np.full(d, alpha)]
    candidates += [np.asarray(D, np.float64) for D in extra_starts]
    _, x = top_eigenpair(sym(A))
    candidates.append(np.where(x * (A @ x) > 0, 1.0, alpha))
    while len(candidates) < starts + 2 + len(extra_starts):
        candidates.append(np.where(rng.random(d) < 0.5, 1.0, alpha))
    best = None
    for D in candidates:
        value, D, x = _ascend(A, alpha, D)
        if best is None or value > best[0]:
            best = (value, D, x)
    return DeltaResult(float(best[0]), "lower", best[1], best[2], method="ascent")


def cheap_upper_delta(A, alpha):
    """delta <= (1+alpha)/2 mu_2(A) + (1-alpha)/2 ||A||_2 (DESIGN)."""
    c, r = (1 + alpha) / 2, (1 - alpha) / 2
    value = c * log_norm(A) + r * spectral_norm(A)
    return value


# --- the relaxation lambda_max(S0 + w (P^T T P + Q^T T^-1 Q)) -----------------------

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
    from scipy.optimize import minimize

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


def upper_delta(A, alpha, bound="relaxation", scaling_candidates=(), lower=None):
    """A certified upper bound on delta(A): the min of the relaxation and the cheap bound."""
    d = A.shape[0]
    cheap = cheap_upper_delta(A, alpha)
    if alpha == 1.0:
        value, x = top_eigenpair(sym(A))
        return DeltaResult(value, "upper", np.ones(d), x, method="log_norm")
    if bound == "cheap":
        _, x = top_eigenpair(sym(A))
        return DeltaResult(cheap, "upper", np.where(x * (A @ x) > 0, 1.0, alpha), x,
                           method="cheap")
    if bound != "relaxation":
        raise ValueError(f"bound must be 'relaxation' or 'cheap', got {bound!r}.")
    relax = flow_relaxation(A, alpha)
    value, t, v = minimize_relaxation(relax, candidates=scaling_candidates, lower=lower)
    D = np.where(v * (A @ v) > 0, 1.0, alpha)
    if cheap < value:
        return DeltaResult(cheap, "upper", D, v, method="cheap")
    return DeltaResult(value, "upper", D, v, scaling=t, method="relaxation")


# --- one explicit Euler step: max_D ||I + h D A||_2 --------------------------------

def exact_euler_norm(A, alpha, h):
    """max over the vertices of ||I + h D A||_2 (exact)."""
    d = A.shape[0]
    Ds = vertices(d, alpha) if alpha < 1.0 else np.ones((1, d))
    best, best_D = -np.inf, None
    for start in range(0, len(Ds), _CHUNK):
        block = Ds[start:start + _CHUNK]
        J = np.eye(d)[None] + h * block[:, :, None] * A[None]
        top = np.linalg.norm(J, 2, axis=(1, 2))
        k = int(np.argmax(top))
        if top[k] > best:
            best, best_D = float(top[k]), block[k].copy()
    return DeltaResult(best, "exact", best_D, method="vertices")


def upper_euler_norm(A, alpha, h, delta_upper=None, scaling_candidates=()):
    """Certified bound on max_D ||I + h D A||_2: relaxation, or
    sqrt(1 + 2 h delta_upper + h^2 ||A||_2^2), whichever is smaller."""
    d = A.shape[0]
    if alpha == 1.0:
        return DeltaResult(spectral_norm(np.eye(d) + h * A), "exact", np.ones(d), method="norm")
    value, t, v = minimize_relaxation(euler_relaxation(A, alpha, h), candidates=scaling_candidates)
    value = math.sqrt(max(value, 0.0))
    if delta_upper is not None:
        cheap = 1 + 2 * h * delta_upper + (h * spectral_norm(A)) ** 2
        if cheap >= 0 and math.sqrt(cheap) < value:
            return DeltaResult(math.sqrt(cheap), "upper", np.ones(d), method="cheap")
    return DeltaResult(value, "upper", np.where(v * (A @ v) > 0, 1.0, alpha), v,
                       scaling=t, method="relaxation")

