"""Guarantees as pure mathematics on arrays (NumPy, and keras.ops on any backend): no layer here.

The tier below the layers (shared/DESIGN.md, "Layout and public API"):

* ``theorem1``: the CH-NODE constants of Theorems 1-2 (c1, c2, alpha, gamma,
  rho) and the worst-case Euler step;
* ``operator_norms``: log-norm, spectral norms, the circulant bound of a
  convolution, the singular-value clip;
* ``orthonormalization``: Bjorck orthonormalisation (the polar factor),
  differentiable, for the orthonormal layers;
* ``delta``: delta(A) = max_D mu_2(D A), exact / lower / certified upper,
  with its ``relaxation``;
* ``min_perturbation``: the smallest Frobenius Delta with
  delta(A + Delta) = delta_bar (``two_level`` method, ``weighted_ball``
  projection); ``delta_bar_set``: the certified sets the training-time
  projection uses (keras.ops, any backend); ``backend_ops``: the one
  dispatch of the few operations that differ per Keras backend;
* ``step_bound``: one engine for the Lipschitz bound of one explicit
  Runge-Kutta step of any field whose Jacobian is A0 + U diag(s) V^T, s in a
  box (``jacobian_structure``), for both families;
* ``block_certificate``: the certificates of one ODE block (its computed map,
  its exact flow) from its structure;
* ``certificate``: the one ``Certificate`` type;
* ``threads``: one BLAS thread for the many small eigenproblems.
"""

from contractive_keras.bounds.block_certificate import flow_certificate
from contractive_keras.bounds.block_certificate import map_certificate
from contractive_keras.bounds.certificate import Certificate
from contractive_keras.bounds.certificate import Factor
from contractive_keras.bounds.delta import DeltaResult
from contractive_keras.bounds.delta import delta
from contractive_keras.bounds.jacobian_structure import JacobianStructure
from contractive_keras.bounds.min_perturbation import PerturbationResult
from contractive_keras.bounds.min_perturbation import min_perturbation
from contractive_keras.bounds.operator_norms import clip_singular_values
from contractive_keras.bounds.operator_norms import conv_operator_norm
from contractive_keras.bounds.operator_norms import log_norm
from contractive_keras.bounds.operator_norms import spectral_norm
from contractive_keras.bounds.orthonormalization import bjorck_orthonormalize
from contractive_keras.bounds.step_bound import StepBound
from contractive_keras.bounds.step_bound import StepBounds
from contractive_keras.bounds.step_bound import largest_steps
from contractive_keras.bounds.step_bound import step_bounds
from contractive_keras.bounds.theorem1 import Theorem1Constants
from contractive_keras.bounds.theorem1 import log_norm_bound
from contractive_keras.bounds.theorem1 import theorem1_gamma
from contractive_keras.bounds.theorem1 import worst_case_max_step_size
from contractive_keras.bounds.threads import single_threaded_blas

__all__ = [
    "Certificate", "DeltaResult", "Factor", "JacobianStructure", "PerturbationResult",
    "StepBound", "StepBounds", "Theorem1Constants", "bjorck_orthonormalize", "clip_singular_values", "conv_operator_norm", "delta", "flow_certificate", "map_certificate",
    "largest_steps", "log_norm", "log_norm_bound", "min_perturbation",
    "single_threaded_blas", "spectral_norm", "step_bounds", "theorem1_gamma",
    "worst_case_max_step_size",
]
