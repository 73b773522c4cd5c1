"""Argument checks shared by the stability bounds (shared/DESIGN.md, "Stabilized NODE")."""

import math

import numpy as np

from contractive_keras import backend


def as_square(A, name="A"):
    """``A`` (NumPy, nested lists, or any Keras backend's tensor or variable) as a
    finite float64 (d, d) array, or a ValueError naming it."""
    try:
        array = np.array(backend.to_numpy(A, np.float64), dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name} must be a real square matrix: {error}") from None
    if array.ndim != 2 or array.shape[0] != array.shape[1] or array.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty square matrix, got shape {array.shape}.")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} has non-finite entries.")
    return array


def check_alpha(alpha, name="alpha"):
    """The lower slope bound ``alpha`` as a float in (0, 1], or a ValueError naming ``name``."""
    try:
        value = float(alpha)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number in (0, 1], got {alpha!r}.") from None
    if not (0.0 < value <= 1.0):
        raise ValueError(f"{name} must be in (0, 1] (the slopes of sigma lie in [{name}, 1]), "
                         f"got {alpha!r}.")
    return value


def check_delta_bar(delta_bar):
    """``delta_bar`` as a float; NaN and -inf (no finite Delta reaches it) refused."""
    try:
        value = float(delta_bar)
    except (TypeError, ValueError):
        raise ValueError(f"delta_bar must be a number, got {delta_bar!r}.") from None
    if math.isnan(value):
        raise ValueError("delta_bar is NaN.")
    if value == -math.inf:
        raise ValueError("delta_bar = -inf: no finite perturbation reaches it "
                         "(delta(B) is finite for every matrix B).")
    return value


def check_step(step_size):
    value = float(step_size)
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"step_size must be a positive finite number, got {step_size!r}.")
    return value
