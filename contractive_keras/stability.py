"""Stability of u' = sigma(A u + b): the checking functions, re-exported.

Shared/DESIGN.md, "Stabilized NODE".  With slopes sigma' in [alpha, 1], two
solutions u, v satisfy (u - v)' = D(t) A (u - v) with D(t) = diag of secant
slopes in [alpha, 1]^d, so d/dt ||u - v|| <= mu_2(D A) ||u - v|| and

    ||phi_t1(u) - phi_t1(v)|| <= exp(delta * t1) ||u - v||,
    delta = max_{D in [alpha, 1]^d} mu_2(D A),                          (1)

mu_2 the logarithmic 2-norm (``log_norm``).  This module holds no logic of
its own: it gathers what ``contractive_keras.bounds`` computes for the
stabilized NODE (delta exactly or as a lower or a certified upper bound,
every value saying which; the smallest Frobenius-norm Delta with
delta(A + Delta) = delta_bar; the certificates of a bare kernel's map, flow
or single step).  The certificates of a layer or a model are
``contractive_keras.certify``'s (``layer_certificate``, ``lipschitz_bound``,
``summary``); the training-time projection is
``contractive_keras.constraints.DeltaBarProjection``.  NumPy float64
throughout: the same numbers under every Keras backend, TensorFlow not needed.

Example:

>>> import numpy as np
>>> from contractive_keras import stability
>>> A = np.array([[0.5, 2.0], [-1.0, 0.3]])
>>> result = stability.delta(A, min_slope=0.1)
>>> result.kind, round(result.value, 4)
('exact', 1.2436)
>>> fix = stability.min_perturbation(A, min_slope=0.1, delta_bar=0.0)
>>> fix.delta.kind, abs(fix.delta.value) < 1e-6
('exact', True)
"""

from contractive_keras.bounds.block_certificate import kernel_certificate
from contractive_keras.bounds.block_certificate import step_lipschitz_bound
from contractive_keras.bounds.certificate import Certificate
from contractive_keras.bounds.delta import DeltaResult
from contractive_keras.bounds.delta import delta
from contractive_keras.bounds.min_perturbation import MIN_PERTURBATION_EXACT_DIM
from contractive_keras.bounds.min_perturbation import PerturbationResult
from contractive_keras.bounds.min_perturbation import min_perturbation
from contractive_keras.bounds.operator_norms import log_norm

__all__ = [
    "Certificate",
    "DeltaResult",
    "MIN_PERTURBATION_EXACT_DIM",
    "PerturbationResult",
    "delta",
    "kernel_certificate",
    "log_norm",
    "min_perturbation",
    "step_lipschitz_bound",
]
