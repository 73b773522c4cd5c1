"""The skew-symmetric structure matrix J of the Hamiltonian layers."""

import numpy as np


def structure_matrix(J, n):
    """Returns the skew-symmetric J (float64 numpy) for state size ``n``.

    ``J=None`` is the canonical [[0, I], [-I, 0]], which needs an even ``n``.

    Raises:
        ValueError: odd ``n`` with the canonical J, wrong shape, or a J that
            is not skew-symmetric.
    """
    if J is None:
        if n % 2:
            raise ValueError(
                f"the canonical J = [[0, I], [-I, 0]] needs an even state size; got "
                f"n = {n}. Use an even last dimension or pass a skew-symmetric "
                "J of shape (n, n).")
        half = n // 2
        eye = np.eye(half)
        zero = np.zeros((half, half))
        return np.block([[zero, eye], [-eye, zero]])
    J = np.asarray(J, dtype=np.float64)
    if J.shape != (n, n):
        raise ValueError(f"J must have shape ({n}, {n}), got {J.shape}.")
    if not np.all(np.isfinite(J)):
        raise ValueError("J must be finite.")
    if not np.array_equal(J, -J.T):
        raise ValueError(
            "J must be exactly skew-symmetric (J == -J.T); the largest entry of "
            f"J + J.T is {np.max(np.abs(J + J.T)):.3g}.")
    return J


def check_skew(J):
    """Validates a user-given J before the state size is known."""
    if J is None:
        return None
    J = np.asarray(J, dtype=np.float64)
    if J.ndim != 2 or J.shape[0] != J.shape[1]:
        raise ValueError(f"J must be a square matrix, got shape {J.shape}.")
    return structure_matrix(J, J.shape[0])
