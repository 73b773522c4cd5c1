"""Robustness of classifiers: reference noise, attacks, certified accuracy, tables.

One concept per module:

- ``noise``: the reference noise protocol (Gaussian, salt & pepper on
  normalised images), ``reference_noise`` for pixel-space models;
- ``attacks``: FGSM and PGD, L-inf and L2, in pixel space;
- ``apgd``: APGD with the cross-entropy or DLR loss, and APGD-T (targeted DLR);
- ``square``: the gradient-free Square attack, L-inf and L2;
- ``standard``: ``run_suite``, the per-image worst case over a suite of
  attacks (AutoAttack's protocol): the one robust accuracy reported;
- ``masking``: ``diagnose``, the gradient-masking checks run with every
  evaluation;
- ``solver_variants``: ``with_solver`` (the same weights under other solver
  settings) and ``transfer_suite`` (attack a tight-tolerance map, classify
  with the inference map);
- ``certified``: certified accuracy over radii, from the radii of
  ``certify.certified_radius`` (re-exported here; for a model, or for logits
  and a constant);
- ``table``: ``Row`` and ``RobustnessTable`` with their exports;
- ``evaluation``: ``evaluate``, the driver that fills a table;
- ``loading``: ``load_model`` (a ``.keras`` file or a SavedModel directory;
  zoo names go through ``zoo.load``) and ``logit_function``, shared by all of the above, the command
  line (``python -m contractive_keras.evaluate``) and ``zoo/build.py``;
- ``norms``: the two threat-model norms.

Every public name is importable from here.

Example:

>>> from contractive_keras import robustness, zoo, data      # doctest: +SKIP
>>> model = zoo.load("chnode_mnist_n8")                       # doctest: +SKIP
>>> table = robustness.evaluate(model, data.load("mnist", "test", 500))  # doctest: +SKIP
>>> print(table.to_markdown())                                # doctest: +SKIP

The attacks are TensorFlow code (they differentiate the model with
``tf.GradientTape`` inside ``tf.function``s): on another Keras backend,
importing this package refuses in one line. Certified accuracy on any
backend: ``certify.certified_radius`` on the model's logits.
"""

from contractive_keras import backend

backend.require_tensorflow(
    "contractive_keras.robustness (noise, attacks and their tables)",
    "certify.certified_radius for certified accuracy")

from contractive_keras.certify.radius import certified_radius  # noqa: E402
from contractive_keras.robustness.apgd import apgd, apgd_targeted, dlr_loss, targeted_dlr_loss  # noqa: E402
from contractive_keras.robustness.attacks import LOSSES, attack_loss, fgsm, pgd  # noqa: E402
from contractive_keras.robustness.certified import certified_accuracy, margins  # noqa: E402
from contractive_keras.robustness.evaluation import ATTACKS, SINGLE_ATTACKS, evaluate  # noqa: E402
from contractive_keras.robustness.masking import MASKED, NOT_MASKED, MaskingReport, diagnose  # noqa: E402
from contractive_keras.robustness.loading import ModelSourceError, load_model, logit_function, source_kind  # noqa: E402
from contractive_keras.robustness.noise import (  # noqa: E402
    NOISE_KINDS, REFERENCE_NOISE, REFERENCE_NORMALIZATION, NoiseSpec, apply_noise, gaussian_noise,
    model_normalization, reference_noise, salt_and_pepper_noise)
from contractive_keras.robustness.norms import NORMS  # noqa: E402
from contractive_keras.robustness.solver_variants import transfer_suite, with_solver  # noqa: E402
from contractive_keras.robustness.square import square  # noqa: E402
from contractive_keras.robustness.standard import SUITES, AttackSpec, SuiteResult, run_suite  # noqa: E402
from contractive_keras.robustness.table import RobustnessTable, Row  # noqa: E402

__all__ = [
    "ATTACKS", "LOSSES", "MASKED", "NOT_MASKED", "AttackSpec", "MaskingReport",
    "ModelSourceError", "NOISE_KINDS", "NORMS", "NoiseSpec", "REFERENCE_NOISE",
    "REFERENCE_NORMALIZATION", "Row", "RobustnessTable", "SINGLE_ATTACKS", "SUITES", "SuiteResult",
    "apgd", "apgd_targeted", "apply_noise", "attack_loss", "certified_accuracy", "certified_radius",
    "diagnose", "dlr_loss", "evaluate", "fgsm", "gaussian_noise", "load_model", "logit_function",
    "margins", "model_normalization", "pgd", "reference_noise", "run_suite", "salt_and_pepper_noise",
    "source_kind", "square", "targeted_dlr_loss", "transfer_suite", "with_solver",
]
