"""Robustness of classifiers: reference noise, attacks, certified accuracy, tables.

One concept per module:

- ``noise``: the reference noise protocol (Gaussian, salt & pepper on
  normalised images), ``reference_noise`` for pixel-space models;
- ``attacks``: FGSM and PGD, L-inf and L2, in pixel space;
- ``certified``: certified accuracy and radius (Lipschitz margin, or
  ``certify.certified_radius`` for a model);
- ``table``: ``Row`` and ``RobustnessTable`` with their exports;
- ``evaluation``: ``evaluate``, the driver that fills a table;
- ``loading``: ``load_model`` (a ``.keras`` file, a SavedModel directory or a
  zoo name) and ``logit_function``, shared by all of the above, the command
  line (``python -m contractive_keras.evaluate``) and ``zoo/build.py``;
- ``norms``: the two threat-model norms.

Every public name is importable from here.

Example:

>>> from contractive_keras import robustness, zoo, data      # doctest: +SKIP
>>> model = zoo.load("chnode_mnist_n8")                       # doctest: +SKIP
>>> table = robustness.evaluate(model, data.load("mnist", "test", 500))  # doctest: +SKIP
>>> print(table.to_markdown())                                # doctest: +SKIP
"""

from contractive_keras.robustness.attacks import LOSSES, attack_loss, fgsm, pgd
from contractive_keras.robustness.certified import certified_accuracy, certified_radius, margins
from contractive_keras.robustness.evaluation import ATTACKS, evaluate
from contractive_keras.robustness.loading import FORMATS, ModelSourceError, load_model, logit_function, source_kind
from contractive_keras.robustness.noise import (
    NOISE_KINDS, REFERENCE_NOISE, REFERENCE_NORMALIZATION, NoiseSpec, apply_noise, gaussian_noise,
    model_normalization, reference_noise, salt_and_pepper_noise)
from contractive_keras.robustness.norms import NORMS
from contractive_keras.robustness.table import RobustnessTable, Row

__all__ = [
    "ATTACKS", "FORMATS", "LOSSES", "ModelSourceError", "NOISE_KINDS", "NORMS", "NoiseSpec",
    "REFERENCE_NOISE", "REFERENCE_NORMALIZATION", "Row", "RobustnessTable", "apply_noise",
    "attack_loss", "certified_accuracy", "certified_radius", "evaluate", "fgsm", "gaussian_noise",
    "load_model", "logit_function", "margins", "model_normalization", "pgd", "reference_noise",
    "salt_and_pepper_noise", "source_kind",
]
