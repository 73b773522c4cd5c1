"""delta(A) = max over diagonal D in [alpha, 1]^d of mu_2(D A) (NumPy, float64).

shared/DESIGN.md, "Stabilized NODE", equation (1): the flow of
u' = sigma(A u + b) with sigma' in [alpha, 1] is exp(delta t1)-Lipschitz.
mu_2(D A) is convex in D, so the maximum sits at one of the 2^d vertices
D in {alpha, 1}^d.  Every value says what it is (``DeltaResult.kind``):

* exact: enumeration of the vertices, batched symmetric eigenvalue problems;
* lower: alternating maximisation (x <- top eigenvector of sym(D A), then the
  best D for that x, D_i = 1 if x_i (A x)_i > 0 else alpha): each step can
  only increase mu_2(D A), and it stops at a vertex (an attained value);
* upper: the relaxation of ``bounds.relaxation`` minimised over a positive
  diagonal T, or the cheap bound (1+alpha)/2 mu_2(A) + (1-alpha)/2 ||A||_2,
  whichever is smaller (a certified bound).

Example:

>>> import numpy as np
>>> result = delta(np.array([[0.5, 2.0], [-1.0, 0.3]]), min_slope=0.1)
>>> result.kind, round(result.value, 4)
('exact', 1.2436)
"""

import dataclasses
import math

import numpy as np

from contractive_keras.bounds.operator_norms import log_norm
from contractive_keras.bounds.operator_norms import spectral_norm
from contractive_keras.bounds.operator_norms import sym
from contractive_keras.bounds.operator_norms import top_eigenpair
from contractive_keras.bounds.relaxation import flow_relaxation
from contractive_keras.bounds.relaxation import minimize_relaxation
from contractive_keras.bounds.threads import single_threaded_blas
from contractive_keras.bounds.validation import as_square
from contractive_keras.bounds.validation import check_alpha

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


def _vertex_block(start, stop, d, alpha):
    index = np.arange(start, stop, dtype=np.int64)
    bits = (index[:, None] >> np.arange(d, dtype=np.int64)) & 1
    return np.where(bits == 1, 1.0, alpha)


def vertices(d, alpha):
    """All 2^d vertices of [alpha, 1]^d (rows)."""
    return _vertex_block(0, 2 ** d, d, alpha)


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


@single_threaded_blas
def delta(A, min_slope, method="auto", *, bound="relaxation", starts=8, seed=0, scaling=None):
    """delta(A) = max over D = diag in [alpha, 1]^d of mu_2(D A), equation (1).

    Args:
        A: square (d, d) matrix.
        min_slope: alpha, the lower slope bound, in (0, 1].
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
        ValueError: non-square or non-finite A, min_slope outside (0, 1], unknown
            method, or "exact" for d > 24.
    """
    A = as_square(A)
    alpha = check_alpha(min_slope, "min_slope")
    d = A.shape[0]
    if method == "auto":
        method = "exact" if d <= EXACT_MAX_DIM else "upper"
    if method == "exact":
        if d > EXACT_HARD_LIMIT:
            raise ValueError(f"method='exact' enumerates 2^d vertices; d = {d} is above "
                             f"{EXACT_HARD_LIMIT}: use 'upper' or 'lower'.")
        return exact_delta(A, alpha)
    if method == "lower":
        return lower_delta(A, alpha, starts=starts, seed=seed)
    if method == "upper":
        candidates = [] if scaling is None else [np.asarray(s, np.float64)
                                                 for s in np.atleast_2d(scaling)]
        lower = lower_delta(A, alpha, starts=2, seed=seed).value
        return upper_delta(A, alpha, bound=bound, scaling_candidates=candidates, lower=lower)
    raise ValueError(f"method must be 'auto', 'exact', 'lower' or 'upper', got {method!r}.")
