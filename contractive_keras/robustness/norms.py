"""The two threat-model norms of attacks and certificates, and how their balls nest.

Radii are measured on the model's input (pixels in [0, 1] for every zoo
model), over all values of one example. For ``d`` input values the L-inf
ball of radius ``eps`` lies inside the L2 ball of radius ``sqrt(d) eps``
(``||delta||_2 <= sqrt(d) ||delta||_inf``), so an L2 certificate at
``sqrt(d) eps`` certifies the L-inf ball of radius ``eps``.
"""

import math

__all__ = ["NORMS", "check_norm", "l2_radius_factor"]

NORMS = ("linf", "l2")


def check_norm(norm):
    """Raises ``ValueError`` unless ``norm`` is one of ``NORMS``."""
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")


def l2_radius_factor(norm, input_dim=None):
    """The L2 radius of the smallest L2 ball holding a ``norm`` ball of radius 1.

    1 for ``"l2"``; ``sqrt(input_dim)`` for ``"linf"``, which needs the number
    of input values per example.
    """
    check_norm(norm)
    if norm == "l2":
        return 1.0
    if not input_dim or input_dim < 1:
        raise ValueError("norm='linf' needs the input dimension (images= or input_dim=)")
    return math.sqrt(input_dim)
