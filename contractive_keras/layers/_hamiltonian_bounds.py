"""Theorem 1 arithmetic for CH-NODE, in float64, rounded toward safety.

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

import numpy as np
import tensorflow as tf

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


def spectral_extremes(K, L, kappa, slope_bound):
    """Per-step float64 extremes: (lam_max(K^T K), lam_min(L^T L), lam_max(L^T L)).

    Args: K (W, m, n), L (W, p, n) tensors (any float dtype), kappa, S floats.
    Returns float64 tensors of shape (W,), inflated / deflated by a relative
    slack so that they bound the exact eigenvalues of the given weights.
    """
    K = tf.cast(K, tf.float64)
    L = tf.cast(L, tf.float64)
    kk = tf.linalg.eigvalsh(tf.matmul(K, K, transpose_a=True))
    ll = tf.linalg.eigvalsh(tf.matmul(L, L, transpose_a=True))
    k_max = tf.reduce_max(kk, axis=-1)
    l_max = tf.reduce_max(ll, axis=-1)
    l_min = tf.reduce_min(ll, axis=-1)
    k_max = tf.maximum(k_max, 0.0) * (1.0 + _F64_SLACK)
    l_max = tf.maximum(l_max, 0.0) * (1.0 + _F64_SLACK)
    l_min = tf.maximum(l_min - _F64_SLACK * l_max, 0.0)
    return k_max, l_min, l_max


def c1_c2(K, L, kappa, slope_bound):
    """(c1, c2) as float64 scalars, c1 rounded down and c2 up."""
    k_max, l_min, l_max = spectral_extremes(K, L, kappa, slope_bound)
    kappa = tf.constant(kappa, tf.float64)
    c1 = (kappa + tf.reduce_min(l_min)) * (1.0 - _F64_SLACK)
    c2 = (kappa + tf.reduce_max(l_max + slope_bound * k_max)) * (1.0 + _F64_SLACK)
    return c1, c2


def one_minus_alpha_sq(c1, c2):
    """1 - alpha^2 = 4 c1 c2 / (c1 + c2)^2, without cancellation."""
    return 4.0 * c1 * c2 / tf.square(c1 + c2)


def theorem1_gamma(c1, c2, eps, j2):
    """Smallest gamma of Theorem 1 (float64): sqrt((alpha^2+eps) j2 / (1-alpha^2-eps))."""
    gap = one_minus_alpha_sq(c1, c2)
    slack = gap - eps
    gamma_sq = (1.0 - slack) * j2 / slack
    return tf.sqrt(gamma_sq) * (1.0 + _F64_SLACK)


def K_scale_to_cap(K, L, kappa, slope_bound, q_max, dtype):
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
    k_max, l_min, l_max = spectral_extremes(K, L, kappa, slope_bound)
    c1 = (kappa + tf.reduce_min(l_min)) * (1.0 - _F64_SLACK)
    budget = (q_max * c1 - kappa - l_max) / slope_bound
    unit = float(np.finfo(tf.as_dtype(dtype).as_numpy_dtype).eps)
    rows = min(K.shape[-2], K.shape[-1])
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
    return tf.cast(factor, dtype)[:, None, None], (c1, c2)


def round_up(value64, dtype):
    """Casts a float64 tensor to ``dtype`` rounding toward +inf."""
    low = tf.cast(value64, dtype)
    up = tf.math.nextafter(low, tf.constant(np.inf, dtype))
    return tf.where(tf.cast(low, tf.float64) < value64, up, low)
