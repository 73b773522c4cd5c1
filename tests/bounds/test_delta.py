"""stability.log_norm and stability.delta: exact / lower / upper against brute force."""

import itertools

import numpy as np
import pytest

from contractive_keras import stability
from tests.stability_oracles import brute_force_delta


def random_matrices(seed, count, max_dim=7):
    """Matrices of many shapes, scales and structures."""
    rng = np.random.default_rng(seed)
    for k in range(count):
        d = int(rng.integers(1, max_dim + 1))
        scale = 10.0 ** rng.uniform(-3, 3)
        G = rng.standard_normal((d, d))
        kind = k % 5
        if kind == 1:
            G = G + G.T                       # symmetric
        elif kind == 2:
            G = G - G.T                       # skew
        elif kind == 3:
            G = G - 3 * np.eye(d)             # shifted stable
        elif kind == 4:
            G = np.diag(rng.standard_normal(d))
        alpha = float(rng.choice([1e-3, 0.1, 0.5, 0.9, 1.0]))
        yield scale * G, alpha


def test_log_norm_is_top_eigenvalue_of_symmetric_part():
    rng = np.random.default_rng(0)
    A = rng.standard_normal((5, 5))
    assert stability.log_norm(A) == pytest.approx(np.linalg.eigvalsh(A + A.T).max() / 2, abs=1e-12)
    S = A - A.T
    assert stability.log_norm(S) == pytest.approx(0.0, abs=1e-12)
    assert stability.log_norm(-np.eye(3)) == pytest.approx(-1.0)


def test_exact_delta_matches_brute_force_over_vertices():
    for A, alpha in random_matrices(1, 60):
        result = stability.delta(A, alpha, "exact")
        reference = brute_force_delta(A, alpha)
        assert result.kind == "exact"
        assert result.value == pytest.approx(reference, rel=1e-12, abs=1e-12 * np.abs(A).max())
        # the reported D is a vertex that attains the value
        assert set(np.unique(result.D)) <= {alpha, 1.0}
        M = np.diag(result.D) @ A
        assert np.linalg.eigvalsh((M + M.T) / 2).max() == pytest.approx(result.value, rel=1e-12,
                                                                         abs=1e-13)


@pytest.mark.parametrize("d", [1, 2, 3])
def test_exact_delta_is_the_max_over_a_dense_grid_of_the_box(d):
    """Convexity in D: no interior point of [alpha, 1]^d beats the vertices."""
    rng = np.random.default_rng(d)
    grid = np.linspace(0.2, 1.0, 41 if d < 3 else 17)
    for _ in range(5):
        A = rng.standard_normal((d, d))
        values = []
        for D in itertools.product(grid, repeat=d):
            M = np.diag(D) @ A
            values.append(np.linalg.eigvalsh((M + M.T) / 2).max())
        assert stability.delta(A, 0.2, "exact").value == pytest.approx(max(values), abs=1e-12)


def test_lower_exact_upper_are_ordered_on_random_matrices():
    for A, alpha in random_matrices(2, 80, max_dim=9):
        exact = stability.delta(A, alpha, "exact").value
        tol = 1e-10 * (1 + np.abs(A).max())
        lower = stability.delta(A, alpha, "lower")
        upper = stability.delta(A, alpha, "upper")
        cheap = stability.delta(A, alpha, "upper", bound="cheap")
        assert (lower.kind, upper.kind, cheap.kind) == ("lower", "upper", "upper")
        assert lower.value <= exact + tol
        assert exact <= upper.value + tol
        assert upper.value <= cheap.value + tol
        M = np.diag(lower.D) @ A      # the lower bound is attained by its D
        assert np.linalg.eigvalsh((M + M.T) / 2).max() == pytest.approx(lower.value, abs=tol)


def test_relaxation_is_exact_for_alpha_one_and_scalars():
    rng = np.random.default_rng(3)
    A = rng.standard_normal((6, 6))
    assert stability.delta(A, 1.0, "upper").value == pytest.approx(stability.log_norm(A))
    for a in (-2.0, 0.0, 3.0):
        expected = a if a >= 0 else 0.3 * a
        for method in ("exact", "lower", "upper"):
            assert stability.delta([[a]], 0.3, method).value == pytest.approx(expected, abs=1e-12)


def test_upper_bound_on_larger_matrices_dominates_the_ascent():
    rng = np.random.default_rng(4)
    for d in (20, 40):
        A = rng.standard_normal((d, d)) / np.sqrt(d) - 0.5 * np.eye(d)
        auto = stability.delta(A, 0.1)
        assert auto.kind == "upper"                       # d > 16
        lower = stability.delta(A, 0.1, "lower")
        assert lower.value <= auto.value + 1e-12
        assert auto.value <= stability.delta(A, 0.1, "upper", bound="cheap").value + 1e-12
        # any scaling is a valid certificate: a random one is never below the optimum found
        t = np.exp(rng.standard_normal(d))
        c, r = 0.55, 0.45
        M = c * (A + A.T) / 2 + r / 2 * (np.diag(t) + A.T @ (A / t[:, None]))
        assert np.linalg.eigvalsh(M).max() >= lower.value - 1e-12


def test_delta_is_positively_homogeneous():
    rng = np.random.default_rng(5)
    A = rng.standard_normal((5, 5))
    for s in (1e-3, 7.0):
        for method in ("exact", "upper"):
            assert stability.delta(s * A, 0.2, method).value == pytest.approx(
                s * stability.delta(A, 0.2, method).value, rel=1e-7)


def test_scaling_candidate_is_used_for_the_certificate():
    rng = np.random.default_rng(6)
    A = rng.standard_normal((8, 8))
    best = stability.delta(A, 0.1, "upper")
    again = stability.delta(A, 0.1, "upper", scaling=best.scaling)
    assert again.value <= best.value + 1e-12


@pytest.mark.parametrize("bad", [np.ones((2, 3)), np.ones((2, 2, 2)), np.ones(3), [[np.nan]],
                                 np.zeros((0, 0)), "abc"])
def test_non_square_or_non_finite_matrices_are_refused(bad):
    with pytest.raises(ValueError):
        stability.delta(bad, 0.5)
    with pytest.raises(ValueError):
        stability.log_norm(bad)


@pytest.mark.parametrize("alpha", [0.0, -0.1, 1.5, float("nan"), None])
def test_alpha_outside_the_unit_interval_is_refused(alpha):
    with pytest.raises(ValueError, match="min_slope"):
        stability.delta(np.eye(2), alpha)


def test_unknown_method_and_oversized_exact_are_refused():
    with pytest.raises(ValueError, match="method"):
        stability.delta(np.eye(2), 0.5, "bogus")
    with pytest.raises(ValueError, match="exact"):
        stability.delta(np.eye(25), 0.5, "exact")
    with pytest.raises(ValueError, match="bound"):
        stability.delta(np.eye(2), 0.5, "upper", bound="sdp")
