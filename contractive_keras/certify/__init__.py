"""Certificates of layers and models, computed from what the layers describe.

Verify a model without trusting the training code (shared/DESIGN.md,
"CH-NODE", "Stabilized NODE", "Certified robustness").  Every certificate
function returns one type, ``Certificate`` (value, what it certifies: the
computed "map" or the exact "flow", how: "exact" or "upper", and the
per-factor breakdown):

* ``layer_certificate``: an ODE layer's map (fixed-step schemes) or flow;
* ``lipschitz_bound``: a whole chain model, input -> logits;
* ``certified_radius``: per-input l2 radii of a model or of logits, by the
  tightest bound that applies (pairwise read-out margins, else the global
  sqrt(2) L form), as a ``CertifiedRadius`` whose ``bound`` says which
  (``bound_used`` says it for a model beforehand);
* ``summary``: flat scalars for logging, both families;
* ``body_bound_fn``: the certified body bound as a differentiable tensor,
  for certified-training losses (``ode_guarantee`` for ODE blocks);
* ``bsm_norms``: measured backward sensitivity (Theorem 2);
* Theorem 1-2 arithmetic: ``theorem1_gamma``, ``log_norm_bound``,
  ``worst_case_max_step_size``, ``contraction_constants``,
  ``contraction_rate``.

Backends: every certificate acts on the weights, read as NumPy float64
arrays, so a model built or trained under ``KERAS_BACKEND=tensorflow``,
``jax`` or ``torch`` gets the same certificate to float64 rounding; inputs,
logits and kernels may be NumPy arrays or any backend's tensors.
``body_bound_fn`` is written with ``keras.ops`` and differentiable on every
backend.  ``bsm_norms`` (a measurement by ``tf.GradientTape``) is
TensorFlow-only and refuses in one line elsewhere.

Example:

>>> from contractive_keras import certify, models        # doctest: +SKIP
>>> model = models.build("stable_node")                   # doctest: +SKIP
>>> certify.lipschitz_bound(model).value                  # doctest: +SKIP
"""

from contractive_keras.bounds.certificate import Certificate
from contractive_keras.bounds.certificate import Factor
from contractive_keras.bounds.step_bound import MAX_EXACT_UNITS
from contractive_keras.bounds.theorem1 import log_norm_bound
from contractive_keras.bounds.theorem1 import theorem1_gamma
from contractive_keras.bounds.theorem1 import worst_case_max_step_size
from contractive_keras.certify.bsm import bsm_norms
from contractive_keras.certify.layer import check_discretization
from contractive_keras.certify.layer import contraction_constants
from contractive_keras.certify.layer import contraction_rate
from contractive_keras.certify.layer import layer_certificate
from contractive_keras.certify.layer import step_lipschitz_bounds
from contractive_keras.certify.model import body_and_readout
from contractive_keras.certify.model import lipschitz_bound
from contractive_keras.certify.radius import CertifiedRadius
from contractive_keras.certify.radius import bound_used
from contractive_keras.certify.radius import certified_radius
from contractive_keras.certify.radius import pairwise_radius
from contractive_keras.certify.report import summary
from contractive_keras.certify.training_bound import body_bound_fn
from contractive_keras.certify.training_bound import ode_guarantee

__all__ = [
    "Certificate", "CertifiedRadius", "Factor", "MAX_EXACT_UNITS", "body_and_readout", "body_bound_fn", "bound_used", "bsm_norms",
    "certified_radius", "check_discretization", "contraction_constants", "contraction_rate",
    "layer_certificate", "lipschitz_bound", "log_norm_bound", "ode_guarantee", "pairwise_radius",
    "step_lipschitz_bounds", "summary", "theorem1_gamma", "worst_case_max_step_size",
]
