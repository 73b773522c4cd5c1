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

The in-graph functions (``spectral_extremes``, ``c1_c2``, ``theorem1_gamma`` on
tensors, ``K_scale_to_cap``, ``round_up``) are ``keras.ops`` and run on every
Keras backend, in float64 where the backend keeps it
(``backend.float64_in_graph()``); on JAX without x64 they run in float32
with outward allowances (``backend_ops.eig_slack`` / ``arith_slack``):
c1 rounded down, c2 and gamma up, the guarantee kept.  ``constants`` reads
its weights as float64 NumPy arrays whatever the backend.
"""

import dataclasses
import math

import keras
import numpy as np

from contractive_keras import backend
from contractive_keras.bounds import backend_ops
from contractive_keras.bounds.backend_ops import F64_SLACK
from contractive_keras.bounds.operator_norms import conv_operator_norm
from contractive_keras.bounds.operator_norms import conv_operator_norm_tf
from contractive_keras.bounds.operator_norms import rounding_unit

ops = keras.ops


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
    """Per-step extremes: (lam_max(K^T K), lam_min(L^T L), lam_max(L^T L)).

    Args: K (W, m, n) tensor, or with ``spatial = (H, W)`` stacked convolution
    kernels (W, kh, kw, n, m) whose lam_max(K^T K) is the squared circulant
    bound of their operator norm on that grid; L (W, p, n); kappa, S floats.
    Returns ``backend_ops.wide()`` tensors of shape (W,) (float64 unless JAX
    runs without x64), inflated / deflated by a relative slack so that they
    bound the exact eigenvalues of the given weights.
    """
    L = backend_ops.as_wide(L)
    p, n = int(L.shape[-2]), int(L.shape[-1])
    ll = backend_ops.eigvalsh(backend_ops.matmul(ops.swapaxes(L, -1, -2), L))
    l_slack = backend_ops.eig_slack(L.dtype, p, n)
    if spatial is None:
        K = backend_ops.as_wide(K)
        m, n_k = int(K.shape[-2]), int(K.shape[-1])
        k_max = ops.max(backend_ops.eigvalsh(backend_ops.matmul(ops.swapaxes(K, -1, -2), K)), axis=-1)
        k_slack = backend_ops.eig_slack(K.dtype, m, n_k)
    else:
        norm = conv_operator_norm_tf(K, spatial)   # already an upper bound
        k_max = ops.square(norm)
        k_slack = backend_ops.arith_slack(norm.dtype)
    l_max = ops.max(ll, axis=-1)
    l_min = ops.min(ll, axis=-1)
    k_max = backend_ops.maximum(k_max, 0.0) * (1.0 + k_slack)
    l_max = backend_ops.maximum(l_max, 0.0) * (1.0 + l_slack)
    l_min = backend_ops.maximum(l_min - l_slack * l_max, 0.0)
    return k_max, l_min, l_max


def c1_c2(K, L, kappa, slope_bound, spatial=None):
    """(c1, c2) as wide-float scalars, c1 rounded down and c2 up (``spectral_extremes``)."""
    k_max, l_min, l_max = spectral_extremes(K, L, kappa, slope_bound, spatial)
    slack = backend_ops.arith_slack(k_max.dtype)
    c1 = (kappa + ops.min(l_min)) * (1.0 - slack)
    c2 = (kappa + ops.max(l_max + slope_bound * k_max)) * (1.0 + slack)
    return c1, c2


def c1_c2_numpy(K, L, kappa, slope_bound, spatial=None):
    """``c1_c2`` in NumPy float64 on weights of any backend (``backend.to_numpy``).

    The certificates' version: the same value whichever backend built the
    weights (the graph version may run in float32 on JAX without x64).
    """
    L = backend.to_numpy(L, np.float64)
    ll = np.linalg.eigvalsh(np.swapaxes(L, -1, -2) @ L)
    if spatial is None:
        K = backend.to_numpy(K, np.float64)
        k_max = np.linalg.eigvalsh(np.swapaxes(K, -1, -2) @ K)[..., -1]
    else:
        K = backend.to_numpy(K, np.float64)
        k_max = np.array([conv_operator_norm(k, spatial) for k in K]) ** 2
    l_max, l_min = ll[..., -1], ll[..., 0]
    k_max = np.maximum(k_max, 0.0) * (1.0 + F64_SLACK)
    l_max = np.maximum(l_max, 0.0) * (1.0 + F64_SLACK)
    l_min = np.maximum(l_min - F64_SLACK * l_max, 0.0)
    c1 = (kappa + float(np.min(l_min))) * (1.0 - F64_SLACK)
    c2 = (kappa + float(np.max(l_max + slope_bound * k_max))) * (1.0 + F64_SLACK)
    return c1, c2


def one_minus_alpha_sq(c1, c2):
    """1 - alpha^2 = 4 c1 c2 / (c1 + c2)^2, without cancellation (floats or tensors)."""
    return 4.0 * c1 * c2 / (c1 + c2) ** 2


def _is_number(value):
    return isinstance(value, (float, int, np.floating, np.integer))


def theorem1_gamma(c1, c2, eps, j2=1.0):
    """Smallest gamma of Theorem 1, rounded up: sqrt((alpha^2 + eps) j2 / (1 - alpha^2 - eps)).

    Works on Python floats and on tensors of any backend (inside
    ``CHNODE.call``).  The gap 1 - alpha^2 (four roundings) is lowered by
    8 units of its dtype before eps is subtracted, so that gap - eps is
    never overestimated however close gap is to eps; (1 - s) / s decreases
    in s, so gamma only grows.  The result is then raised by the dtype's
    ``arith_slack`` (float64: ``F64_SLACK``).

    Raises:
        ValueError: (floats) eps >= 1 - alpha^2: no gamma satisfies Theorem 1.
    """
    gap = one_minus_alpha_sq(c1, c2)
    if _is_number(gap):
        if not gap > eps:
            raise ValueError(
                f"eps={eps} must be < 1 - alpha^2 = {gap:.6g} (c1={c1:.6g}, c2={c2:.6g}).")
        dtype = "float64"
    else:
        dtype = backend_ops.dtype_name(gap.dtype)
    u = backend_ops.unit(dtype) / 2
    slack = gap * (1.0 - 8.0 * u) - eps
    return ((1.0 - slack) * j2 / slack) ** 0.5 * (1.0 + backend_ops.arith_slack(dtype))


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
    c1, c2 = c1_c2_numpy(K, L, kappa, slope_bound, spatial)
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
    with a margin covering the rounding of the product in ``dtype``.  Any
    backend; computed in ``backend_ops.wide()`` (see the module docstring).

    Returns:
        (factors of shape (W, 1, 1) in ``dtype``, (c1, c2) of the rescaled
        weights in the wide dtype, c1 rounded down and c2 up) -- one
        eigenvalue computation for both.
    """
    k_max, l_min, l_max = spectral_extremes(K, L, kappa, slope_bound, spatial)
    slack = backend_ops.arith_slack(k_max.dtype)
    c1 = (kappa + ops.min(l_min)) * (1.0 - slack)
    budget = (q_max * c1 - kappa - l_max) / slope_bound
    unit = rounding_unit(dtype)
    shape = tuple(int(v) for v in K.shape)
    # Rounding each entry moves the operator norm by at most
    # sqrt(taps) (unit / 2) ||K_mat||_F <= (unit / 2) sqrt(taps min(n, m)) ||K||
    # (a convolution's Frobenius norm is at most sqrt(rank) times its norm).
    taps = int(np.prod(shape[1:-2])) if spatial is not None else 1
    rows = taps * min(shape[-2], shape[-1])
    radius = ops.sqrt(backend_ops.maximum(budget, 0.0))
    # Trigger above a half margin (a K projected by the constraint, whose
    # target has the full margin, is left untouched), rescale to the full one.
    trigger = radius * (1.0 - 2.0 * unit * np.sqrt(rows))
    target = radius * (1.0 - 4.0 * unit * np.sqrt(rows))
    norm = ops.sqrt(k_max)
    scaled = norm > trigger
    tiny = 1e-300 if backend_ops.dtype_name(norm.dtype) == "float64" else 1e-30
    factor = ops.where(scaled, target / backend_ops.maximum(norm, tiny), ops.ones_like(norm))
    # lambda_max of the rounded product fl(fl(factor) * K): exact when the
    # factor is 1; else sigma_max <= target (1 + unit/2) (1 + unit/2 sqrt(rows))
    # (rounding of the factor, then of each entry: ||dK||_2 <= ||dK||_F);
    # a float32 computation (JAX without x64) also rounds the factor and
    # the square: its arith_slack covers both.
    extra = 1.0 if backend_ops.dtype_name(k_max.dtype) == "float64" else 1.0 + slack
    k_eff = ops.where(scaled,
                      ops.square(target) * ((1.0 + 1.01 * unit * (1.0 + np.sqrt(rows))) * extra),
                      k_max)
    c2 = (kappa + ops.max(l_max + slope_bound * k_eff)) * (1.0 + slack)
    factor = ops.reshape(ops.cast(factor, dtype), (-1,) + (1,) * (len(shape) - 1))
    return factor, (c1, c2)


def round_up(value64, dtype):
    """Casts a wide-float tensor to ``dtype`` rounding toward +inf (any backend).

    A float32 ``value64`` (JAX without x64) is returned as it is: the
    functions producing it already round outward.
    """
    value64 = ops.convert_to_tensor(value64)
    low = ops.cast(value64, dtype)
    up = backend_ops.next_up(low)
    return ops.where(ops.cast(low, value64.dtype) < value64, up, low)
