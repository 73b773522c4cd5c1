"""Independent references for the stability tests (no contractive_keras code)."""

import itertools

import numpy as np


def brute_force_delta(A, alpha):
    """delta(A) = max over D in {alpha, 1}^d of mu_2(D A): one eigvalsh per vertex."""
    best = -np.inf
    for D in itertools.product((alpha, 1.0), repeat=A.shape[0]):
        M = np.diag(D) @ A
        best = max(best, np.linalg.eigvalsh((M + M.T) / 2).max())
    return best
