"""Theorems 1 and 2 of the CH-NODE, in float64, rounded toward safety.

Notation of shared/DESIGN.md ("CH-NODE"): M_k(s) = K_k^T diag(s) K_k + L_k^T L_k
+ kappa I has its spectrum in [c1, c2] with

    c1 = kappa + min_k lambda_min(L_k^T L_k)
    c2 = kappa + max_k (lambda_max(L_k^T L_k) + S lambda_max(K_k^T K_k)),

alpha = (c2 - c1) / (c2 + c1), and Theorem 1 asks
gamma^2 >= (alpha^2 + eps) j2 / (1 - alpha^2 - eps), j2 = lambda_max(J J^T).

Everything is written through q = c2 / c1 and ``gap = 1 - alpha^2 = 4 q / (1 + q)^2``
(no cancellation when alpha is close to 1).  Theorem 1 with a given gamma is
equivalent to ``gap >= g(gamma) = eps + j2 / (gamma^2 + j2)``, i.e. to
``q <= q_max(g) = (2 - g + 2 sqrt(1 - g)) / g``.  The same cap with g ~ 2 eps
keeps the "auto" gamma finite (1 - alpha^2 - eps >= min(eps, (1 - eps) / 2)).
"""

import dataclasses
import math

import numpy as np
import tensorflow as tf

from contractive_keras.bounds.operator_norms import conv_operator_norm_tf
from contractive_keras.bounds.operator_norms import rounding_unit

# Relative slack for float64 eigenvalues of matrices up to a few hundred rows:
# LAPACK's symmetric eigensolver is backward stable, errors ~ n * 2^-52 * norm.
_F64_SLACK = 1e-13


def max_ratio(g):
    """q_max(g): the largest c2 / c1 with 4 q / (1 + q)^2 >= g, for 0 < g < 1."""
    g = np.float64(g)
    return float((2.0 - g + 2.0 * np.sqrt(1.0 - g)) / g)


def ratio_threshold(eps, j2, gamma=None):
    """g such that Theorem 1 holds iff 1 - alpha^2 >= g.

    gamma=None is the cap of the "auto" mode, g = min(2 eps, (1 + eps) / 2).
    """
    if gamma is None:
        return min(2.0 * eps, 0.5 * (1.0 + eps))
    return eps + j2 / (gamma * gamma + j2)


def spectral_extremes(K, L, kappa, slope_bound, spatial=None):
    """Per-step float64 extremes: (lam_max(K^T K), lam_min(L^T L), lam_max(L^T L)).

    Args: K (W, m, n) tensor, or with ``spatial = (H, W)`` stacked convolution
    kernels (W, kh, kw, n, m) whose lam_max(K^T K) is the squared circulant
    bound of their operator norm on that grid; L (W, p, n); kappa, S floats.
    Returns float64 tensors of shape (W,), inflated / deflated by a relative
    slack so that they bound the exact eigenvalues of the given weights.
    """
    L = tf.cast(L, tf.float64)
    ll = tf.linalg.eigvalsh(tf.matmul(L, L, transpose_a=True))
    if spatial is None:
        K = tf.cast(K, tf.float64)
        k_max = tf.reduce_max(tf.linalg.eigvalsh(tf.matmul(K, K, transpose_a=True)), axis=-1)
    else:
        k_max = tf.square(conv_operator_norm_tf(K, spatial))
    l_max = tf.reduce_max(ll, axis=-1)
    l_min = tf.reduce_min(ll, axis=-1)
    k_max = tf.maximum(k_max, 0.0) * (1.0 + _F64_SLACK)
    l_max = tf.maximum(l_max, 0.0) * (1.0 + _F64_SLACK)
    l_min = tf.maximum(l_min - _F64_SLACK * l_max, 0.0)
    return k_max, l_min, l_max


def c1_c2(K, L, kappa, slope_bound, spatial=None):
    """(c1, c2) as float64 scalars, c1 rounded down and c2 up (``spectral_extremes``)."""
    k_max, l_min, l_max = spectral_extremes(K, L, kappa, slope_bound, spatial)
    kappa = tf.constant(kappa, tf.float64)
    c1 = (kappa + tf.reduce_min(l_min)) * (1.0 - _F64_SLACK)
    c2 = (kappa + tf.reduce_max(l_max + slope_bound * k_max)) * (1.0 + _F64_SLACK)
    return c1, c2


def one_minus_alpha_sq(c1, c2):
    """1 - alpha^2 = 4 c1 c2 / (c1 + c2)^2, without cancellation (floats or tensors)."""
    return 4.0 * c1 * c2 / (c1 + c2) ** 2


def theorem1_gamma(c1, c2, eps, j2=1.0):
    """Smallest gamma of Theorem 1, rounded up: sqrt((alpha^2 + eps) j2 / (1 - alpha^2 - eps)).

    Works on Python floats and on float64 tensors (inside ``CHNODE.call``).

    Raises:
        ValueError: (floats) eps >= 1 - alpha^2: no gamma satisfies Theorem 1.
    """
    gap = one_minus_alpha_sq(c1, c2)
    if not tf.is_tensor(gap) and not gap > eps:
        raise ValueError(
            f"eps={eps} must be < 1 - alpha^2 = {gap:.6g} (c1={c1:.6g}, c2={c2:.6g}).")
    slack = gap - eps
    return ((1.0 - slack) * j2 / slack) ** 0.5 * (1.0 + _F64_SLACK)


def log_norm_bound(c1, c2, gamma, j2=1.0):
    """Upper bound on mu_2((J - gamma I) M) over symmetric M with spectrum in [c1, c2].

    With M = beta (I + E), ||E||_2 <= alpha:
    x^T (J - gamma I) M x = -(gamma x + J x)^T M x
    <= -beta (gamma - alpha sqrt(gamma^2 + |J x|^2)) |x|^2, so
    mu_2 <= -beta (gamma - alpha sqrt(gamma^2 + j2)); attained for the
    canonical J by a reflection-type M, and <= -rho / 2 whenever gamma
    satisfies Theorem 1 (which is Theorem 2).
    """
    beta = 0.5 * (c1 + c2)
    alpha = (c2 - c1) / (c2 + c1)
    return -beta * (gamma - alpha * math.sqrt(gamma * gamma + j2))


def worst_case_max_step_size(c1, c2, gamma, j2=1.0):
    """Largest h with ||I + h (J - gamma I) M||_2 <= 1 for every admissible M.

    Admissible: symmetric M with spectrum in [c1, c2] (every CH-NODE field
    with these bounds, whatever K and the slopes).  Writing y = M x, y ranges
    over the ball of centre beta x and radius alpha beta, and the condition
    reads h <= 2 v^T y / ((gamma^2 + j2) |y|^2) with v = gamma x + J x, whose
    minimum over the ball is (gamma - alpha V) / (beta (1 - alpha^2)),
    V = sqrt(gamma^2 + j2).  Hence

        h_max = (gamma - alpha V) (c1 + c2) / (V^2 c1 c2),

    exact for the canonical J, a valid lower bound for any skew J.  Returns 0
    when gamma does not satisfy the (eps = 0) Theorem 1 inequality.
    """
    V = math.sqrt(gamma * gamma + j2)
    alpha = (c2 - c1) / (c2 + c1)
    margin = gamma - alpha * V
    if margin <= 0.0:
        return 0.0
    return margin * (c1 + c2) / (V * V * c1 * c2)


@dataclasses.dataclass(frozen=True)
class Theorem1Constants:
    """The constants of Theorems 1-2 for one CH-NODE's weights (floats).

    Attributes:
        c1, c2: bounds of the spectrum of M = K^T diag(s) K + L^T L + kappa I.
        alpha: (c2 - c1) / (c2 + c1); one_minus_alpha_sq: 1 - alpha^2.
        beta: (c1 + c2) / 2.
        gamma: the damping the layer uses; gamma_min: Theorem 1's bound.
        eps, kappa, j2 (= lambda_max(J J^T)), slope_bound (S).
        rho: Theorem 2's rate, eps beta (gamma^2 + j2) / gamma.
        max_ratio: with a fixed gamma, the largest c2 / c1 its projection
            allows (None for gamma = "auto").
    """

    c1: float
    c2: float
    alpha: float
    one_minus_alpha_sq: float
    beta: float
    gamma: float
    gamma_min: float
    eps: float
    kappa: float
    j2: float
    slope_bound: float
    rho: float
    max_ratio: float = None

    def as_dict(self):
        """The constants as a dict of floats (``max_ratio`` only when set)."""
        values = dataclasses.asdict(self)
        if values["max_ratio"] is None:
            del values["max_ratio"]
        return values


def constants(K, L, kappa, slope_bound, eps, j2, gamma, max_ratio=None, spatial=None):
    """``Theorem1Constants`` of stacked weights K (W, m, n), L (W, p, n) and a gamma.

    With ``spatial``, K holds convolution kernels (see ``spectral_extremes``).
    """
    c1, c2 = c1_c2(K, L, kappa, slope_bound, spatial)
    c1, c2 = float(c1), float(c2)
    gap = one_minus_alpha_sq(c1, c2)
    gamma = float(gamma)
    beta = 0.5 * (c1 + c2)
    gamma_min = theorem1_gamma(c1, c2, eps, j2) if gap > eps else math.inf
    return Theorem1Constants(
        c1=c1, c2=c2, alpha=(c2 - c1) / (c2 + c1), one_minus_alpha_sq=gap, beta=beta,
        gamma=gamma, gamma_min=float(gamma_min), eps=float(eps), kappa=float(kappa),
        j2=float(j2), slope_bound=float(slope_bound),
        rho=float(eps) * beta * (gamma * gamma + j2) / gamma,
        max_ratio=None if max_ratio is None else float(max_ratio))


def K_scale_to_cap(K, L, kappa, slope_bound, q_max, dtype, spatial=None):
    """Per-step factors in (0, 1] bringing S ||K_k||^2 to the Theorem 1 budget.

    The budget of step k is q_max * c1 - kappa - lambda_max(L_k^T L_k); the
    factor is 1 wherever K_k is already inside (the normal case, since the
    Keras constraint projects K after every optimizer step), and is computed
    with a margin covering the rounding of the product in ``dtype``.

    Returns:
        (factors of shape (W, 1, 1) in ``dtype``, (c1, c2) float64 of the
        rescaled weights, c1 rounded down and c2 up) -- one eigenvalue
        computation for both.
    """
    k_max, l_min, l_max = spectral_extremes(K, L, kappa, slope_bound, spatial)
    c1 = (kappa + tf.reduce_min(l_min)) * (1.0 - _F64_SLACK)
    budget = (q_max * c1 - kappa - l_max) / slope_bound
    unit = rounding_unit(dtype)
    # Rounding each entry moves the operator norm by at most
    # sqrt(taps) (unit / 2) ||K_mat||_F <= (unit / 2) sqrt(taps min(n, m)) ||K||
    # (a convolution's Frobenius norm is at most sqrt(rank) times its norm).
    taps = int(np.prod(K.shape[1:-2])) if spatial is not None else 1
    rows = taps * min(K.shape[-2], K.shape[-1])
    radius = tf.sqrt(tf.maximum(budget, 0.0))
    # Trigger above a half margin (a K projected by the constraint, whose
    # target has the full margin, is left untouched), rescale to the full one.
    trigger = radius * (1.0 - 2.0 * unit * np.sqrt(rows))
    target = radius * (1.0 - 4.0 * unit * np.sqrt(rows))
    norm = tf.sqrt(k_max)
    scaled = norm > trigger
    factor = tf.where(scaled, target / tf.maximum(norm, 1e-300), tf.ones_like(norm))
    # lambda_max of the rounded product fl(fl(factor) * K): exact when the
    # factor is 1; else sigma_max <= target (1 + unit/2) (1 + unit/2 sqrt(rows))
    # (rounding of the factor, then of each entry: ||dK||_2 <= ||dK||_F).
    k_eff = tf.where(scaled,
                     tf.square(target) * (1.0 + 1.01 * unit * (1.0 + np.sqrt(rows))), k_max)
    c2 = (kappa + tf.reduce_max(l_max + slope_bound * k_eff)) * (1.0 + _F64_SLACK)
    factor = tf.reshape(tf.cast(factor, dtype), [-1] + [1] * (len(K.shape) - 1))
    return factor, (c1, c2)


def round_up(value64, dtype):
    """Casts a float64 tensor to ``dtype`` rounding toward +inf."""
    low = tf.cast(value64, dtype)
    up = tf.math.nextafter(low, tf.constant(np.inf, dtype))
    return tf.where(tf.cast(low, tf.float64) < value64, up, low)
