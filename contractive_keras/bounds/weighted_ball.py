"""Frobenius projection onto the certified (relaxation) set of delta, in NumPy float64.

For a fixed positive diagonal T the relaxation's sublevel set
{B : lambda_max(c sym B + (r/2)(T + B^T T^-1 B)) <= delta_bar} is a weighted
spectral-norm ball ||L (B - B0) W||_2 <= 1 (L, W, B0 diagonal), onto which
the exact Frobenius projection is computed by accelerated projected gradient
in the ball's coordinates.  The distance v(T) to that ball is convex in T (the
constraint is jointly convex in (B, T)), with gradient <Z, dM/dT> from the
projection's multiplier Z, and is minimised over T by L-BFGS-B: the result is
the Frobenius projection onto {B : min_T relaxation(B, T) <= delta_bar}.
"""

import math

import numpy as np


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
    from scipy.optimize import minimize  # SciPy: heavy, imported on first use

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
