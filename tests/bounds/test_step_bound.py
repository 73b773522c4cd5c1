"""Lipschitz certificates of one explicit step and of the flow, against measured ratios."""

import itertools
import math

import numpy as np
import pytest

from contractive_keras import stability

TABLEAUS = {  # an independent copy: (a, b)
    "euler": ([[0.0]], [1.0]),
    "midpoint": ([[0, 0], [0.5, 0]], [0.0, 1.0]),
    "rk4": ([[0, 0, 0, 0], [0.5, 0, 0, 0], [0, 0.5, 0, 0], [0, 0, 1, 0]], [1 / 6, 1 / 3, 1 / 3, 1 / 6]),
}


def rk_step(u, A, b, alpha, h, scheme):
    """One step of the scheme on u' = leaky_relu_alpha(A u + b), rows of u."""
    a, weights = TABLEAUS[scheme]
    sigma = lambda z: np.maximum(z, alpha * z)
    ks = []
    for i in range(len(weights)):
        stage = u + h * sum(a[i][j] * ks[j] for j in range(i))
        ks.append(sigma(stage @ A.T + b))
    return u + h * sum(w * k for w, k in zip(weights, ks))


def measured_ratio(step, d, rng, pairs=400):
    u = rng.standard_normal((pairs, d)) * 3
    v = u + rng.standard_normal((pairs, d)) * 10.0 ** rng.uniform(-6, 1, (pairs, 1))
    return np.max(np.linalg.norm(step(u) - step(v), axis=1) / np.linalg.norm(u - v, axis=1))


def worst_vertex_step_norm(A, alpha, h):
    best = 0.0
    for D in itertools.product((alpha, 1.0), repeat=A.shape[0]):
        best = max(best, np.linalg.norm(np.eye(len(D)) + h * np.diag(D) @ A, 2))
    return best


def test_exact_euler_step_norm_matches_brute_force_and_bounds_the_upper():
    rng = np.random.default_rng(0)
    for d in (1, 2, 4, 6):
        for alpha in (0.1, 0.7):
            A = rng.standard_normal((d, d)) * 2
            h = 0.3
            exact = stability.step_lipschitz_bound(A, alpha, h, "euler", method="exact")
            upper = stability.step_lipschitz_bound(A, alpha, h, "euler", method="upper")
            assert exact.method == "exact"
            assert exact.value == pytest.approx(worst_vertex_step_norm(A, alpha, h), rel=1e-12)
            assert upper.method == "upper" and upper.value >= exact.value - 1e-12
            # and the cheap bound of the design notes is never better than the relaxation
            cheap = math.sqrt(1 + 2 * h * stability.delta(A, alpha, "upper").value
                              + h * h * np.linalg.norm(A, 2) ** 2)
            assert upper.value <= cheap + 1e-12


@pytest.mark.parametrize("scheme", ["euler", "midpoint", "rk4"])
def test_step_bound_dominates_measured_ratios(scheme):
    rng = np.random.default_rng(1)
    for d in (3, 8, 20):
        A = rng.standard_normal((d, d)) * 1.5 / np.sqrt(d)
        b = rng.standard_normal(d)
        for h in (0.05, 0.5):
            bound = stability.step_lipschitz_bound(A, 0.1, h, scheme).value
            ratio = measured_ratio(lambda u: rk_step(u, A, b, 0.1, h, scheme), d, rng)
            assert ratio <= bound * (1 + 1e-9)


def test_euler_step_bound_is_attained_by_a_slope_pattern():
    """The exact Euler bound is sharp: a pair straddling the kinks realises it."""
    rng = np.random.default_rng(2)
    A = rng.standard_normal((3, 3))
    h, alpha = 0.4, 0.2
    exact = stability.step_lipschitz_bound(A, alpha, h, "euler", method="exact")
    J = np.eye(3) + h * np.diag(exact.details["slopes"]) @ A
    _, _, Vt = np.linalg.svd(J)
    # choose b so that A u + b has the signs of the vertex at u = 0, then a tiny pair
    b = np.where(exact.details["slopes"] == 1.0, 1.0, -1.0)
    u = np.zeros((1, 3))
    v = u + 1e-6 * Vt[0]
    ratio = np.linalg.norm(rk_step(u, A, b, alpha, h, "euler") - rk_step(v, A, b, alpha, h, "euler"))
    assert ratio / 1e-6 == pytest.approx(exact.value, rel=1e-6)


def test_flow_certificate_of_a_kernel_bounds_a_fine_integration():
    rng = np.random.default_rng(3)
    d = 5
    A = rng.standard_normal((d, d))
    b = rng.standard_normal(d)
    certificate = stability.kernel_certificate(A, min_slope=0.2, t1=1.0)
    assert certificate.certifies == "flow" and certificate.details["delta"].kind == "exact"
    assert certificate.value == pytest.approx(math.exp(certificate.details["delta"].value))
    steps = 2000                                   # RK4, far below the step of any effect
    flow = lambda u: _integrate(u, A, b, 0.2, 1.0 / steps, steps)
    assert measured_ratio(flow, d, rng, pairs=100) <= certificate.value * (1 + 1e-6)


def _integrate(u, A, b, alpha, h, steps):
    for _ in range(steps):
        u = rk_step(u, A, b, alpha, h, "rk4")
    return u


def test_map_certificate_is_the_power_of_the_step_bound():
    rng = np.random.default_rng(4)
    A = rng.standard_normal((4, 4))
    certificate = stability.kernel_certificate(A, min_slope=0.1, t1=2.0, solver="rk4", steps=8)
    assert certificate.certifies == "map"
    step = stability.step_lipschitz_bound(A, 0.1, 0.25, "rk4")
    assert certificate.value == pytest.approx(step.value ** 8)
    assert certificate.details["step_size"] == 0.25
    b = rng.standard_normal(4)
    block = lambda u: _integrate_scheme(u, A, b, 0.1, 0.25, 8, "rk4")
    assert measured_ratio(block, 4, rng) <= certificate.value


def _integrate_scheme(u, A, b, alpha, h, steps, scheme):
    for _ in range(steps):
        u = rk_step(u, A, b, alpha, h, scheme)
    return u


def test_certificates_refuse_lower_bounds_and_bad_arguments():
    with pytest.raises(ValueError, match="exact or upper"):
        stability.kernel_certificate(np.eye(2), min_slope=0.5, method="lower")
    with pytest.raises(ValueError, match="min_slope"):
        stability.kernel_certificate(np.eye(2), min_slope=None)
    with pytest.raises(ValueError, match="steps"):
        stability.kernel_certificate(np.eye(2), min_slope=0.5, solver="euler")
    with pytest.raises(ValueError, match="Runge-Kutta"):
        stability.step_lipschitz_bound(np.eye(2), 0.5, 0.1, "dopri5")
    with pytest.raises(ValueError, match="step_size"):
        stability.step_lipschitz_bound(np.eye(2), 0.5, 0.0)
