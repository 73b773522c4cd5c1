"""The certified delta_bar sets and the projection onto them (TensorFlow, float64, graph mode).

The math behind ``constraints.DeltaBarProjection``.  For a fixed positive
diagonal T the certified sets of ``bounds.relaxation`` are weighted
spectral-norm balls (completing the square in the relaxation):

* flow:  lambda_max(c sym B + (r/2)(T + B^T T^-1 B)) <= delta_bar
         <=>  ||L (B - B0) W||_2 <= 1,  L = sqrt(r / (2t)),  B0 = -(c/r) t,
         W = R^(-1/2),  R = delta_bar + alpha t / (2r)      (certifies delta);
* euler: lambda_max(Q_h(B, T)) <= (1 + h delta_bar)^2, Q_h = B^T P B +
         sym(N B) + C0 with P = h^2(1+alpha^2)/2 + h(1-alpha)/4 (t + k^2/t),
         N = k (1 + h(1-alpha)/t), C0 = 1 + h(1-alpha)/t, k = h(1+alpha)
         <=>  ||sqrt(P) (B - B0) W||_2 <= 1,  B0 = -N/(2P),
         W = R^(-1/2),  R = (1 + h delta_bar)^2 - C0 + N^2/(4P).
         It certifies max_D ||I + h D B||_2 <= 1 + h delta_bar, hence both
         the Euler map (Lipschitz <= (1 + h delta_bar)^N <= exp(delta_bar t1))
         and delta <= delta_bar (mu_2(D B) <= (||I + h D B|| - 1)/h).
(all products with diagonal vectors act on rows / columns).  Clipping the
singular values of Y = L (A - B0) W at 1 is the exact projection in the
metric ||L Delta W||_F and costs one symmetric eigendecomposition (of
Y^T Y); the result is in the certified set by construction, with a margin
for the rounding to the variable's dtype.  T is the warm-started state, improved at
the new kernel every few calls (descent on log t along the log-sum-exp
smoothed gradient, accepting only steps that lower the relaxation value at
the stored kernel, so that the kernel stays certified), and a full
re-optimisation when the kernel is far outside the current ball (first
call, weights loaded or set by hand).

Before any of that, a certified test without an eigendecomposition
(``certified_inside``): lambda_max(Y^T Y) <= tr((Y^T Y)^(2^k))^(2^-k), k
squarings of a d x d matrix, tight to a factor d^(2^-k) (1.016 in ||Y||_2
for d = 64, k = 7).  When it proves ||Y||_2 <= 1 the kernel is kept as it
is and nothing else runs; otherwise the projection above runs.
"""

import numpy as np
import tensorflow as tf

_F64 = tf.float64


class Geometry:
    """The certified set of one mode ("flow" or "euler") as a function of t."""

    def __init__(self, alpha, delta_bar, step_size=None):
        self.alpha = float(alpha)
        self.delta_bar = float(delta_bar)
        self.h = None if step_size is None else float(step_size)
        self.c, self.r = (1 + self.alpha) / 2, (1 - self.alpha) / 2

    @property
    def mode(self):
        return "flow" if self.h is None else "euler"

    def ball(self, t):
        """(L, W, B0, R) as float64 vectors for scaling t."""
        if self.h is None:
            R = self.delta_bar + self.alpha * t / (2 * self.r)
            return tf.sqrt(self.r / (2 * t)), tf.math.rsqrt(tf.maximum(R, 1e-300)), -(self.c / self.r) * t, R
        h, a = self.h, self.alpha
        k = h * (1 + a)
        P = h * h * (1 + a * a) / 2 + h * (1 - a) / 4 * (t + k * k / t)
        N = k * (1 + h * (1 - a) / t)
        C0 = 1 + h * (1 - a) / t
        R = (1 + h * self.delta_bar) ** 2 - C0 + N * N / (4 * P)
        return tf.sqrt(P), tf.math.rsqrt(tf.maximum(R, 1e-300)), -N / (2 * P), R

    def relaxation(self, B, t):
        """The relaxation matrix S0 + w (P^T T P + Q^T T^-1 Q) and (P, Q)."""
        d = B.shape[-1]
        eye = tf.eye(d, dtype=_F64)
        sym = 0.5 * (B + tf.transpose(B))
        if self.h is None:
            S0, w, P, Q = self.c * sym, self.r / 2, eye, B
        else:
            h, a = self.h, self.alpha
            k = h * (1 + a)
            S0 = eye + k * sym + h * h * (1 + a * a) / 2 * tf.matmul(B, B, transpose_a=True)
            w, P, Q = h * (1 - a) / 4, B, 2 * eye + k * B
        M = S0 + w * (tf.matmul(P, t[:, None] * P, transpose_a=True)
                      + tf.matmul(Q, Q / t[:, None], transpose_a=True))
        return M, w, P, Q

    def valid(self, t):
        return tf.reduce_all(self.ball(t)[3] > 0) & tf.reduce_all(t > 0)

    def initial_scaling(self, B):
        """A scalar t (as a vector) with R > 0, from a log grid around ||B||."""
        d = B.shape[-1]
        scale = tf.maximum(tf.norm(B) / np.sqrt(d), 1e-3) + abs(self.delta_bar)
        grid = scale * tf.constant(np.logspace(-3, 4, 141), _F64)
        R = self.ball(grid)[3]
        if self.h is None:
            # Smallest grid point with R > 0 and t >= ||B||-scale (the cheap bound's t).
            ok = (R > 0) & (grid >= scale)
        else:
            ok = R >= tf.reduce_max(R) * 0.5
        index = tf.argmax(tf.cast(ok, tf.int32))
        return tf.fill([d], tf.gather(grid, index))   # gather: no compile-time constant for XLA


def _top_weights(values, beta):
    z = beta * (values - values[-1])
    p = tf.exp(z)
    return p / tf.reduce_sum(p)


def scaling_bounds(geometry, A):
    """[lo, hi] for t: six decades either side of the kernel's scale.

    Any t > 0 certifies whatever it certifies; the band only keeps the ball's
    coordinates well conditioned (a zero kernel with delta_bar = 0 would
    otherwise drive t to 0 and the ball to a point).
    """
    d = A.shape[-1]
    scale = tf.norm(A) / np.sqrt(d) + abs(geometry.delta_bar) + 1e-6
    return scale * 1e-6, scale * 1e6


def optimize_scaling(geometry, B, t, iterations, bounds=None):
    """Descent on log t of lambda_max(relaxation), smoothed direction, exact acceptance."""
    lo, hi = scaling_bounds(geometry, B) if bounds is None else bounds

    def value_and_direction(t):
        M, w, P, Q = geometry.relaxation(B, t)
        values, V = tf.linalg.eigh(M)
        scale = tf.maximum(tf.reduce_max(tf.abs(values)), 1e-12)
        p = _top_weights(values, 1e3 / scale)
        PV, QV = tf.matmul(P, V), tf.matmul(Q, V)
        grad = w * (tf.linalg.matvec(PV ** 2, p) * t - tf.linalg.matvec(QV ** 2, p) / t)
        return values[-1], grad

    value, grad = value_and_direction(t)

    def body(i, t, value, grad, step):
        direction = grad / tf.maximum(tf.reduce_max(tf.abs(grad)), 1e-300)
        trial = tf.clip_by_value(t * tf.exp(-step * direction), lo, hi)
        trial_value, trial_grad = value_and_direction(trial)
        accept = (trial_value < value) & geometry.valid(trial)
        t = tf.where(accept, trial, t)
        value = tf.where(accept, trial_value, value)
        grad = tf.where(accept, trial_grad, grad)
        step = tf.where(accept, tf.minimum(step * 1.5, 2.0), step * 0.5)
        return i + 1, t, value, grad, step

    _, t, _, _, _ = tf.while_loop(
        lambda i, *_: i < iterations, body,
        (tf.constant(0), t, value, grad, tf.constant(0.5, _F64)))
    return t


# Squarings of the trace-power bound and its relative rounding allowance.
TRACE_POWER_SQUARINGS = 7
_TRACE_POWER_ROUNDING = 1e-10


def trace_power_bound(G, squarings=TRACE_POWER_SQUARINGS):
    """An upper bound on lambda_max of a symmetric PSD G: tr(G^p)^(1/p), p = 2^squarings.

    With c_0 = tr(G), X_0 = G / c_0 and c_j = tr(X_{j-1}^2) = ||X_{j-1}||_F^2,
    X_j = X_{j-1}^2 / c_j (each X_j has trace 1, so nothing overflows),
    tr(G^p) = c_0^p prod_j c_j^(p / 2^j), hence

        lambda_max(G) <= tr(G^p)^(1/p) = c_0 prod_{j=1..k} c_j^(2^-j)
                      <= d^(1/p) lambda_max(G).

    Rounding (float64): a squaring of a trace-1 PSD X errs by at most
    ~d^1.5 u relative to ||X^2||_F; the error doubles at each later squaring
    and enters with weight 2^-j, so every level adds at most ~2 d^1.5 u
    (1.3e-13 at d = 64) to the relative error of the bound; callers allow
    1e-10 (``_TRACE_POWER_ROUNDING``), far above that sum for d <= 1024.
    """
    c0 = tf.linalg.trace(G)
    X = G / tf.maximum(c0, 1e-300)
    log_factor = tf.zeros([], _F64)
    for j in range(1, squarings + 1):
        c = tf.reduce_sum(tf.square(X))
        log_factor += tf.math.log(tf.maximum(c, 1e-300)) / 2.0 ** j
        if j < squarings:
            X = tf.matmul(X, X) / c
    return c0 * tf.exp(log_factor)


def certified_inside(geometry, A, t):
    """Whether A is certified inside the ball of t, proved without an eigendecomposition.

    ||L (A - B0) W||_2^2 <= trace_power_bound(Y^T Y) (1 + rounding allowance)
    <= (1 - 1e-12)^2: the same slack as the eigendecomposition's test in
    :func:`project`.  False means "not proved", not "outside".
    """
    L, W, B0, _ = geometry.ball(t)
    Y = L[:, None] * (A - tf.linalg.diag(B0)) * W[None, :]
    bound = trace_power_bound(tf.matmul(Y, Y, transpose_a=True))
    return bound * (1.0 + _TRACE_POWER_ROUNDING) <= (1.0 - 1e-12) ** 2


def project(geometry, A, t, dtype_eps):
    """Weighted projection of A onto the ball of t; returns (B, inside, sigma_max)."""
    L, W, B0, _ = geometry.ball(t)
    Y = L[:, None] * (A - tf.linalg.diag(B0)) * W[None, :]
    s2, V = tf.linalg.eigh(tf.matmul(Y, Y, transpose_a=True))
    sigma = tf.sqrt(tf.maximum(s2, 0.0))
    # Rounding the result to the variable's dtype moves Y by at most
    # eps * max(L) max(W) ||B||_F in spectral norm: aim inside by twice that.
    margin = 2 * dtype_eps * tf.reduce_max(L) * tf.reduce_max(W) * (
        tf.norm(A) + tf.norm(B0)) + 1e-12
    radius = 1.0 - margin
    shrink = tf.where(sigma > radius, 1.0 - radius / tf.maximum(sigma, 1e-300), 0.0)
    Yc = Y - tf.matmul(tf.matmul(Y, V) * shrink[None, :], V, transpose_b=True)
    B = tf.linalg.diag(B0) + Yc / L[:, None] / W[None, :]
    # A itself is stored exactly: it needs no rounding margin to be certified.
    inside = sigma[-1] <= 1.0 - 1e-12
    return B, inside, sigma[-1]


def projection(geometry, A, t, dtype, reopt_iterations=40, reopt_threshold=1e-2,
               initialized=True, refresh=False, refresh_iterations=8, reopt_rounds=4):
    """One constraint application: returns (B, t, projected), B in the certified set of t.

    First, with a warm-started t, :func:`certified_inside`: when it proves A
    inside the ball of t, B = A, t is returned unchanged (it certifies B) and
    ``projected`` is False; nothing below runs.
    Otherwise, when the state is uninitialised or the kernel lies outside the ball by
    more than ``reopt_threshold`` (relative, in the ball's radius), t is
    first re-optimised for A itself.  With ``refresh`` (a boolean tensor), t
    is then improved at the rounded result B by ``refresh_iterations``
    descent steps that only accept a smaller relaxation value at B, so B
    stays certified by the returned t.
    """
    A = tf.cast(A, _F64)
    bounds = scaling_bounds(geometry, A)
    t = tf.where(initialized, t, geometry.initial_scaling(A))
    t = tf.where(geometry.valid(t), t, geometry.initial_scaling(A))
    t = tf.clip_by_value(t, *bounds)
    keep = tf.logical_and(tf.convert_to_tensor(initialized), certified_inside(geometry, A, t))
    return tf.cond(keep, lambda: (A, t, tf.constant(False)),
                   lambda: _project_and_refresh(geometry, A, t, dtype, bounds, reopt_iterations,
                                                reopt_threshold, initialized, refresh,
                                                refresh_iterations, reopt_rounds))


def _project_and_refresh(geometry, A, t, dtype, bounds, reopt_iterations, reopt_threshold,
                         initialized, refresh, refresh_iterations, reopt_rounds):
    """:func:`projection` when the cheap test does not prove A inside."""
    eps = float(np.finfo(dtype.as_numpy_dtype).eps)
    B, inside, sigma_max = project(geometry, A, t, eps)
    stale = tf.logical_not(initialized) | (sigma_max > 1 + reopt_threshold)

    def reoptimized():
        # T for A itself, then rounds of: project A, improve T at the projection
        # (which enlarges the ball around it), so the final projection of A
        # moves less than the first.
        t_new = optimize_scaling(geometry, A, t, reopt_iterations, bounds)

        def round_(i, t_round):
            B_round = project(geometry, A, t_round, eps)[0]
            return i + 1, optimize_scaling(geometry, B_round, t_round,
                                           max(reopt_iterations // 4, 1), bounds)

        _, t_new = tf.while_loop(lambda i, _: i < reopt_rounds, round_, (tf.constant(0), t_new))
        return (t_new,) + project(geometry, A, t_new, eps)

    t, B, inside, sigma_max = tf.cond(stale, reoptimized, lambda: (t, B, inside, sigma_max))
    B = tf.where(inside, A, B)
    B = tf.cast(tf.cast(B, dtype), _F64)   # certify what will be stored
    t = tf.cond(refresh, lambda: optimize_scaling(geometry, B, t, refresh_iterations, bounds),
                lambda: t)
    return B, t, tf.constant(True)
