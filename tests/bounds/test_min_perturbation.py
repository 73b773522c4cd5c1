"""stability.min_perturbation: feasibility, minimality against independent solvers, invariances."""

import itertools

import numpy as np
import pytest
from scipy.optimize import minimize

from contractive_keras import stability
from tests.stability_oracles import brute_force_delta


def slsqp_min_norm(A, alpha, delta_bar, relaxation=False, trials=6, seed=0):
    """Independent solver: SLSQP over Delta (and slack factors) with the smooth
    equality constraints delta_bar I - S_v(A + Delta) = L_v L_v^T, one per
    vertex D_v (S_v = sym(D_v B)), or, with ``relaxation``, one constraint
    for delta_bar I - (c sym B + (r/2)(T + B^T T^-1 B)) with T = exp(tau)
    also free."""
    rng = np.random.default_rng(seed)
    d = A.shape[0]
    il = np.tril_indices(d)
    nl = len(il[0])
    c, r = (1 + alpha) / 2, (1 - alpha) / 2
    if relaxation:
        blocks = 1
    else:
        vertices = list(itertools.product((alpha, 1.0), repeat=d))
        blocks = len(vertices)
    extra = d if relaxation else 0

    def constraints(z):
        B = A + z[:d * d].reshape(d, d)
        out = []
        for k in range(blocks):
            L = np.zeros((d, d))
            L[il] = z[d * d + extra + k * nl: d * d + extra + (k + 1) * nl]
            if relaxation:
                t = np.exp(z[d * d:d * d + d])
                S = c * (B + B.T) / 2 + r / 2 * (np.diag(t) + B.T @ (B / t[:, None]))
            else:
                M = np.diag(vertices[k]) @ B
                S = (M + M.T) / 2
            out.append((delta_bar * np.eye(d) - S - L @ L.T)[il])
        return np.concatenate(out)

    best = None
    for _ in range(trials):
        z0 = np.concatenate([0.3 * rng.standard_normal(d * d),
                             np.log(np.linalg.norm(A, 2)) + 0.3 * rng.standard_normal(extra),
                             rng.standard_normal(blocks * nl)])
        res = minimize(lambda z: np.sum(z[:d * d] ** 2), z0,
                       jac=lambda z: np.concatenate([2 * z[:d * d], np.zeros(len(z) - d * d)]),
                       constraints=[dict(type="eq", fun=constraints)], method="SLSQP",
                       options=dict(maxiter=3000, ftol=1e-15))
        if np.abs(constraints(res.x)).max() < 1e-10 and (best is None or res.fun < best):
            best = res.fun
    assert best is not None, "the reference solver found no feasible point"
    return float(np.sqrt(best))


CASES = [(2, 0.1, 0.3, 0), (2, 0.5, 1.0, 1), (2, 0.1, 0.8, 2), (2, 0.9, 0.5, 3),
         (3, 0.3, 0.8, 4)]


@pytest.mark.parametrize("d,alpha,drop,seed", CASES)
def test_exact_perturbation_is_minimal_and_reaches_delta_bar(d, alpha, drop, seed):
    A = np.random.default_rng(seed).standard_normal((d, d))
    delta_bar = brute_force_delta(A, alpha) - drop
    result = stability.min_perturbation(A, alpha, delta_bar)
    assert result.method == "exact" and result.converged
    assert result.delta.kind == "exact"
    assert brute_force_delta(A + result.matrix, alpha) == pytest.approx(delta_bar, abs=1e-6)
    assert result.norm == pytest.approx(np.linalg.norm(result.matrix))
    assert result.norm_lower <= result.norm <= result.norm_lower * (1 + 1e-6)
    reference = slsqp_min_norm(A, alpha, delta_bar, trials=6 if d == 2 else 2, seed=seed)
    assert result.norm == pytest.approx(reference, rel=1e-6)


@pytest.mark.parametrize("d,alpha,drop,seed", CASES[:3])
def test_certified_perturbation_is_minimal_for_the_relaxation(d, alpha, drop, seed):
    A = np.random.default_rng(seed).standard_normal((d, d))
    delta_bar = brute_force_delta(A, alpha) - drop
    result = stability.min_perturbation(A, alpha, delta_bar, method="upper")
    assert result.method == "upper" and result.delta.kind == "upper"
    assert result.delta.value == pytest.approx(delta_bar, abs=1e-6)
    assert brute_force_delta(A + result.matrix, alpha) <= delta_bar + 1e-9
    exact = stability.min_perturbation(A, alpha, delta_bar, method="exact")
    assert result.norm_lower <= exact.norm * (1 + 1e-9) <= result.norm * (1 + 1e-9)
    reference = slsqp_min_norm(A, alpha, delta_bar, relaxation=True, seed=seed)
    assert result.norm == pytest.approx(reference, rel=1e-6)


def test_no_feasible_point_on_random_rays_is_closer_than_the_projection():
    rng = np.random.default_rng(7)
    A = rng.standard_normal((4, 4))
    delta_bar = brute_force_delta(A, 0.2) - 1.0
    result = stability.min_perturbation(A, 0.2, delta_bar)
    for _ in range(200):
        E = rng.standard_normal((4, 4))
        E /= np.linalg.norm(E)
        lo, hi = 0.0, 100.0
        if brute_force_delta(A + hi * E, 0.2) > delta_bar:
            continue
        for _ in range(50):
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if brute_force_delta(A + mid * E, 0.2) > delta_bar else (lo, mid)
        assert hi >= result.norm * (1 - 1e-9)


def test_perturbation_scales_with_matrix_and_target_and_permutes():
    rng = np.random.default_rng(8)
    A = rng.standard_normal((4, 4))
    delta_bar = brute_force_delta(A, 0.3) - 0.5
    base = stability.min_perturbation(A, 0.3, delta_bar)
    scaled = stability.min_perturbation(3.0 * A, 0.3, 3.0 * delta_bar)
    assert scaled.norm == pytest.approx(3.0 * base.norm, rel=1e-6)
    np.testing.assert_allclose(scaled.matrix, 3.0 * base.matrix, atol=1e-4 * base.norm)
    P = np.eye(4)[[2, 0, 3, 1]]
    permuted = stability.min_perturbation(P @ A @ P.T, 0.3, delta_bar)
    assert permuted.norm == pytest.approx(base.norm, rel=1e-6)
    np.testing.assert_allclose(permuted.matrix, P @ base.matrix @ P.T, atol=1e-4 * base.norm)


def test_corner_cases_have_the_closed_form_answers():
    rng = np.random.default_rng(9)
    A = rng.standard_normal((4, 4))
    # delta_bar above delta (or +inf): nothing to do
    for target in (brute_force_delta(A, 0.5) + 1e-3, float("inf")):
        result = stability.min_perturbation(A, 0.5, target)
        assert result.norm == 0.0 and not result.matrix.any()
    # alpha = 1: clamp the eigenvalues of the symmetric part, keep the skew part
    result = stability.min_perturbation(A, 1.0, 0.0)
    w = np.linalg.eigvalsh((A + A.T) / 2)
    assert result.norm == pytest.approx(np.linalg.norm(np.maximum(w, 0.0)))
    np.testing.assert_allclose(result.matrix, result.matrix.T, atol=1e-12)
    assert stability.log_norm(A + result.matrix) == pytest.approx(0.0, abs=1e-12)
    # d = 1: delta(b) = b (b >= 0), alpha b (b < 0)
    assert stability.min_perturbation([[2.0]], 0.25, 0.5).matrix[0, 0] == pytest.approx(-1.5)
    assert stability.min_perturbation([[2.0]], 0.25, -0.5).matrix[0, 0] == pytest.approx(-4.0)
    assert stability.min_perturbation([[-1.0]], 0.25, -0.5).matrix[0, 0] == pytest.approx(-1.0)


@pytest.mark.parametrize("structure", ["symmetric", "skew"])
def test_symmetric_and_skew_matrices_reach_the_target(structure):
    rng = np.random.default_rng(10)
    G = rng.standard_normal((4, 4))
    A = G + G.T if structure == "symmetric" else G - G.T
    delta_bar = brute_force_delta(A, 0.1) - 0.7
    result = stability.min_perturbation(A, 0.1, delta_bar)
    assert result.converged
    assert brute_force_delta(A + result.matrix, 0.1) == pytest.approx(delta_bar, abs=1e-6)
    assert result.norm <= result.norm_lower * (1 + 1e-6)


def test_warm_start_from_a_nearby_problem_gives_the_same_projection():
    rng = np.random.default_rng(11)
    A = rng.standard_normal((3, 3))
    delta_bar = brute_force_delta(A, 0.2) - 0.5
    first = stability.min_perturbation(A, 0.2, delta_bar)
    A2 = A + 1e-3 * rng.standard_normal((3, 3))
    cold = stability.min_perturbation(A2, 0.2, delta_bar)
    warm = stability.min_perturbation(A2, 0.2, delta_bar, warm_start=first)
    assert warm.norm == pytest.approx(cold.norm, rel=1e-6)


def test_large_matrices_get_a_certified_perturbation():
    rng = np.random.default_rng(12)
    A = rng.standard_normal((24, 24)) / np.sqrt(24)
    delta_bar = stability.delta(A, 0.1, "lower").value - 0.5
    result = stability.min_perturbation(A, 0.1, delta_bar)
    assert result.method == "upper" and result.delta.kind == "upper"
    assert result.delta.value <= delta_bar + 1e-6
    # the certificate is checkable: lambda_max of the relaxation at the returned T
    B, t = A + result.matrix, result.delta.scaling
    M = 0.55 * (B + B.T) / 2 + 0.45 / 2 * (np.diag(t) + B.T @ (B / t[:, None]))
    assert np.linalg.eigvalsh(M).max() <= delta_bar + 1e-6
    assert stability.delta(B, 0.1, "lower").value <= delta_bar + 1e-9
    assert 0 < result.norm_lower <= result.norm


@pytest.mark.parametrize("kwargs,match", [
    (dict(delta_bar=float("nan")), "NaN"),
    (dict(delta_bar=-float("inf")), "inf"),
    (dict(min_slope=0.0), "min_slope"),
    (dict(min_slope=2.0), "min_slope"),
    (dict(method="lower"), "method"),
])
def test_bad_targets_and_arguments_are_refused(kwargs, match):
    args = dict(A=np.eye(3), min_slope=0.5, delta_bar=0.0)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        stability.min_perturbation(**args)


def test_non_square_and_oversized_exact_are_refused():
    with pytest.raises(ValueError, match="square"):
        stability.min_perturbation(np.ones((2, 3)), 0.5, 0.0)
    with pytest.raises(ValueError, match="exact"):
        stability.min_perturbation(np.eye(17), 0.5, 0.0, method="exact")


@pytest.mark.parametrize("seed", range(5))
def test_dual_value_rounding_bound_covers_the_float_error_of_the_dual_value(seed):
    """|fl(q(w)) - q(w)| <= the a priori bound, q(w) evaluated exactly in rationals."""
    from fractions import Fraction

    from contractive_keras.bounds.min_perturbation import dual_value_rounding_bound

    rng = np.random.default_rng(seed)
    d, k = 3, 7
    A = rng.standard_normal((d, d))
    Gs = np.array([(rng.uniform(0.1, 1, d)[:, None] * np.outer(x, x)).ravel()
                   for x in rng.standard_normal((k, d))])
    w = rng.uniform(0, 2, k) * 10.0 ** rng.integers(-3, 3, k)
    delta_bar = float(rng.uniform(-1, 1))
    s = Gs @ A.ravel() - delta_bar
    step = w @ Gs
    q_float = float(w @ s - 0.5 * step @ step)
    F = Fraction
    s_exact = [sum(F(g) * F(a) for g, a in zip(row, A.ravel())) - F(delta_bar) for row in Gs]
    step_exact = [sum(F(wi) * F(Gs[i, j]) for i, wi in enumerate(w)) for j in range(d * d)]
    q_exact = sum(F(wi) * si for wi, si in zip(w, s_exact)) - sum(x * x for x in step_exact) / 2
    bound = dual_value_rounding_bound(Gs, A, delta_bar, s, w)
    assert abs(F(q_float) - q_exact) <= F(bound)
    assert bound < 1e-12 * (abs(q_float) + 1)  # a few ulps, not a loosened bound
