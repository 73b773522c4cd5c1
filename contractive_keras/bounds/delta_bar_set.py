"""The certified delta_bar sets and the projection onto them (any backend, in the graph).

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

Backends: written with ``keras.ops`` (``ops.while_loop`` / ``ops.cond``), it
runs in float64 on TensorFlow (graph, XLA), PyTorch and JAX with x64.  On
JAX without x64 it runs in float32: every "certified" test and every aim
inside the ball then uses ``tolerance(float32, d)``, four times the
``backend_ops.eig_slack`` of a d x d Gram matrix (forming Y and Y^T Y and the
symmetric eigensolver each err by less than that, relative to ||Y||^2), in
place of float64's 1e-12, and the trace-power bound its float32 rounding
allowance (``trace_power_rounding``); the projected kernel stays inside
the certified set, deeper by about that tolerance.
"""

import keras
import numpy as np

from contractive_keras.bounds import backend_ops

ops = keras.ops


def _tiny(dtype):
    return 1e-300 if backend_ops.dtype_name(dtype) == "float64" else 1e-30


def tolerance(dtype, d):
    """Relative slack of the ball tests in ``dtype`` (float64: 1e-12, see the module docstring)."""
    if backend_ops.dtype_name(dtype) == "float64":
        return 1e-12
    return 4.0 * backend_ops.eig_slack(dtype, d, d)


def _norm(x):
    return ops.sqrt(ops.sum(ops.square(x)))


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
            return (ops.sqrt(self.r / (2 * t)), ops.rsqrt(backend_ops.maximum(R, _tiny(R.dtype))),
                    -(self.c / self.r) * t, R)
        h, a = self.h, self.alpha
        k = h * (1 + a)
        P = h * h * (1 + a * a) / 2 + h * (1 - a) / 4 * (t + k * k / t)
        N = k * (1 + h * (1 - a) / t)
        C0 = 1 + h * (1 - a) / t
        R = (1 + h * self.delta_bar) ** 2 - C0 + N * N / (4 * P)
        return ops.sqrt(P), ops.rsqrt(backend_ops.maximum(R, _tiny(R.dtype))), -N / (2 * P), R

    def relaxation(self, B, t):
        """The relaxation matrix S0 + w (P^T T P + Q^T T^-1 Q) and (P, Q)."""
        d = int(B.shape[-1])
        eye = ops.eye(d, dtype=B.dtype)
        sym = 0.5 * (B + ops.transpose(B))
        if self.h is None:
            S0, w, P, Q = self.c * sym, self.r / 2, eye, B
        else:
            h, a = self.h, self.alpha
            k = h * (1 + a)
            S0 = eye + k * sym + h * h * (1 + a * a) / 2 * backend_ops.matmul(ops.transpose(B), B)
            w, P, Q = h * (1 - a) / 4, B, 2 * eye + k * B
        M = S0 + w * (backend_ops.matmul(ops.transpose(P), t[:, None] * P)
                      + backend_ops.matmul(ops.transpose(Q), Q / t[:, None]))
        return M, w, P, Q

    def valid(self, t):
        return ops.logical_and(ops.all(self.ball(t)[3] > 0), ops.all(t > 0))

    def initial_scaling(self, B):
        """A scalar t (as a vector) with R > 0, from a log grid around ||B||."""
        d = int(B.shape[-1])
        scale = backend_ops.maximum(_norm(B) / np.sqrt(d), 1e-3) + abs(self.delta_bar)
        grid = scale * ops.convert_to_tensor(np.logspace(-3, 4, 141), B.dtype)
        R = self.ball(grid)[3]
        if self.h is None:
            # Smallest grid point with R > 0 and t >= ||B||-scale (the cheap bound's t).
            ok = (R > 0) & (grid >= scale)
        else:
            ok = R >= ops.max(R) * 0.5
        index = ops.argmax(ops.cast(ok, "int32"))
        # take: no compile-time constant for XLA
        return ops.ones((d,), B.dtype) * ops.take(grid, index)


def _top_weights(values, beta):
    z = beta * (values - values[-1])
    p = ops.exp(z)
    return p / ops.sum(p)


def scaling_bounds(geometry, A):
    """[lo, hi] for t: six decades either side of the kernel's scale.

    Any t > 0 certifies whatever it certifies; the band only keeps the ball's
    coordinates well conditioned (a zero kernel with delta_bar = 0 would
    otherwise drive t to 0 and the ball to a point).
    """
    d = int(A.shape[-1])
    scale = _norm(A) / np.sqrt(d) + abs(geometry.delta_bar) + 1e-6
    return scale * 1e-6, scale * 1e6


def optimize_scaling(geometry, B, t, iterations, bounds=None):
    """Descent on log t of lambda_max(relaxation), smoothed direction, exact acceptance."""
    lo, hi = scaling_bounds(geometry, B) if bounds is None else bounds

    def value_and_direction(t):
        M, w, P, Q = geometry.relaxation(B, t)
        values, V = ops.eigh(M)
        scale = backend_ops.maximum(ops.max(ops.abs(values)), 1e-12)
        p = _top_weights(values, 1e3 / scale)
        PV, QV = backend_ops.matmul(P, V), backend_ops.matmul(Q, V)
        grad = w * (backend_ops.matmul(PV ** 2, p) * t - backend_ops.matmul(QV ** 2, p) / t)
        return values[-1], grad

    value, grad = value_and_direction(t)

    def body(i, t, value, grad, step):
        direction = grad / backend_ops.maximum(ops.max(ops.abs(grad)), _tiny(grad.dtype))
        trial = backend_ops.minimum(backend_ops.maximum(t * ops.exp(-step * direction), lo), hi)
        trial_value, trial_grad = value_and_direction(trial)
        accept = ops.logical_and(trial_value < value, geometry.valid(trial))
        t = ops.where(accept, trial, t)
        value = ops.where(accept, trial_value, value)
        grad = ops.where(accept, trial_grad, grad)
        step = ops.where(accept, backend_ops.minimum(step * 1.5, 2.0), step * 0.5)
        return i + 1, t, value, grad, step

    _, t, _, _, _ = ops.while_loop(
        lambda i, *_: i < iterations, body,
        (ops.convert_to_tensor(0, "int32"), t, value, grad,
         ops.convert_to_tensor(0.5, t.dtype)))
    return t


# Squarings of the trace-power bound and its relative rounding allowance (float64).
TRACE_POWER_SQUARINGS = 7
_TRACE_POWER_ROUNDING = 1e-10


def trace_power_rounding(dtype, d, squarings=TRACE_POWER_SQUARINGS):
    """Relative rounding allowance of ``trace_power_bound`` (float64: 1e-10).

    float32: 2 d^1.5 u per squaring (``trace_power_bound``'s docstring),
    doubled, plus the ``tolerance`` of forming Y^T Y.
    """
    if backend_ops.dtype_name(dtype) == "float64":
        return _TRACE_POWER_ROUNDING
    u = backend_ops.unit(dtype) / 2
    return 4.0 * squarings * d ** 1.5 * u + tolerance(dtype, d)


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
    G = ops.convert_to_tensor(G)
    tiny = _tiny(G.dtype)
    c0 = ops.trace(G)
    X = G / backend_ops.maximum(c0, tiny)
    log_factor = ops.zeros((), G.dtype)
    for j in range(1, squarings + 1):
        c = ops.sum(ops.square(X))
        log_factor += ops.log(backend_ops.maximum(c, tiny)) / 2.0 ** j
        if j < squarings:
            X = backend_ops.matmul(X, X) / c
    return c0 * ops.exp(log_factor)


def certified_inside(geometry, A, t):
    """Whether A is certified inside the ball of t, proved without an eigendecomposition.

    ||L (A - B0) W||_2^2 <= trace_power_bound(Y^T Y) (1 + rounding allowance)
    <= (1 - 1e-12)^2: the same slack as the eigendecomposition's test in
    :func:`project`.  False means "not proved", not "outside".
    """
    L, W, B0, _ = geometry.ball(t)
    d = int(A.shape[-1])
    Y = L[:, None] * (A - ops.diag(B0)) * W[None, :]
    bound = trace_power_bound(backend_ops.matmul(ops.transpose(Y), Y))
    return (bound * (1.0 + trace_power_rounding(Y.dtype, d))
            <= (1.0 - tolerance(Y.dtype, d)) ** 2)


def project(geometry, A, t, dtype_eps):
    """Weighted projection of A onto the ball of t; returns (B, inside, sigma_max)."""
    L, W, B0, _ = geometry.ball(t)
    tol = tolerance(A.dtype, int(A.shape[-1]))
    Y = L[:, None] * (A - ops.diag(B0)) * W[None, :]
    s2, V = ops.eigh(backend_ops.matmul(ops.transpose(Y), Y))
    sigma = ops.sqrt(backend_ops.maximum(s2, 0.0))
    # Rounding the result to the variable's dtype moves Y by at most
    # eps * max(L) max(W) ||B||_F in spectral norm: aim inside by twice that.
    margin = 2 * dtype_eps * ops.max(L) * ops.max(W) * (_norm(A) + _norm(B0)) + tol
    radius = 1.0 - margin
    shrink = ops.where(sigma > radius, 1.0 - radius / backend_ops.maximum(sigma, _tiny(sigma.dtype)), 0.0)
    Yc = Y - backend_ops.matmul(backend_ops.matmul(Y, V) * shrink[None, :], ops.transpose(V))
    B = ops.diag(B0) + Yc / L[:, None] / W[None, :]
    # A itself is stored exactly: it needs no rounding margin to be certified.
    inside = sigma[-1] <= 1.0 - tol
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
    A = backend_ops.as_wide(A)
    t = ops.cast(ops.convert_to_tensor(t), A.dtype)
    initialized = ops.convert_to_tensor(initialized)
    refresh = ops.convert_to_tensor(refresh)
    bounds = scaling_bounds(geometry, A)
    t = ops.where(initialized, t, geometry.initial_scaling(A))
    t = ops.where(geometry.valid(t), t, geometry.initial_scaling(A))
    t = backend_ops.minimum(backend_ops.maximum(t, bounds[0]), bounds[1])
    keep = ops.logical_and(initialized, certified_inside(geometry, A, t))
    return ops.cond(keep, lambda: (A, t, ops.convert_to_tensor(False)),
                   lambda: _project_and_refresh(geometry, A, t, dtype, bounds, reopt_iterations,
                                                reopt_threshold, initialized, refresh,
                                                refresh_iterations, reopt_rounds))


def _project_and_refresh(geometry, A, t, dtype, bounds, reopt_iterations, reopt_threshold,
                         initialized, refresh, refresh_iterations, reopt_rounds):
    """:func:`projection` when the cheap test does not prove A inside."""
    eps = backend_ops.unit(dtype)
    B, inside, sigma_max = project(geometry, A, t, eps)
    stale = ops.logical_or(ops.logical_not(initialized), sigma_max > 1 + reopt_threshold)

    def reoptimized():
        # T for A itself, then rounds of: project A, improve T at the projection
        # (which enlarges the ball around it), so the final projection of A
        # moves less than the first.
        t_new = optimize_scaling(geometry, A, t, reopt_iterations, bounds)

        def round_(i, t_round):
            B_round = project(geometry, A, t_round, eps)[0]
            return i + 1, optimize_scaling(geometry, B_round, t_round,
                                           max(reopt_iterations // 4, 1), bounds)

        _, t_new = ops.while_loop(lambda i, _: i < reopt_rounds, round_,
                                  (ops.convert_to_tensor(0, "int32"), t_new))
        return (t_new,) + tuple(project(geometry, A, t_new, eps))

    t, B, inside, sigma_max = ops.cond(stale, reoptimized, lambda: (t, B, inside, sigma_max))
    B = ops.where(inside, A, B)
    B = ops.cast(ops.cast(B, dtype), A.dtype)   # certify what will be stored
    t = ops.cond(refresh, lambda: optimize_scaling(geometry, B, t, refresh_iterations, bounds),
                 lambda: t)
    return B, t, ops.convert_to_tensor(True)
