"""The models this package builds by name: the registry, the builders and presets.

``MODELS`` holds, once, every model this package builds by name: its builder,
its family, its reference recipe (``REFERENCE_HPARAMS``) and the
model-specific options it accepts. ``train.py`` takes its ``--model`` values
and the rule of which flag applies to which model from here; an option has
the same name as the train.py flag that sets it.

One concept per module:

- ``registry``: ``ModelSpec``, ``MODELS``, ``NAMES``, ``build`` and the option
  rules (every public name is importable from here);
- ``hamiltonian``, ``stabilized``, ``certified``: each family's builders and
  reference recipes;
- ``lipschitz_cnn``: the certified CNN skeleton around an ODE block;
- ``parts``: initializers, penalties, norm bounds and recipe handling the
  builders share.

Hamiltonian family (``chnode``, ``hdnn``, ``resnet``; shared/DESIGN.md,
"CH-NODE", reference MNIST experiment):

    images in [0, 1] (N, 28, 28, 1)
      -> Rescaling: (x - mean) / std, datasets.NORMALIZATION["mnist"]
      -> Conv2D 3x3, 1 -> 8 channels, no activation (lifts each pixel to R^8)
      -> per-pixel ODE block (weights shared over the 28 x 28 grid, N steps)
      -> Flatten -> Dense 10 (logits)

with the reference regularization as Keras regularizers (so it is in
``model.losses``): PyTorch-Adam weight decay wd as an L2 penalty
(wd / 2) ||w||^2 on every trainable weight, and the smoothness penalty
smoothness * h * sum_j 0.5 (||K_{j+1} - K_j||^2 + ||b_{j+1} - b_j||^2) on the
ODE weights. The smoothness coefficient is the stated 1e-3 * h; pass
``smoothness=1e-3 * (depth - 1)`` for the coefficient the reference code's
loop applies.

Stabilized family (``node``, ``stable_node``; DESIGN, "Stabilized NODE"):
flatten -> dense lift to width d = 64 -> u' = sigma(A u + b) on [0, t1 = 1],
explicit Euler with 10 steps -> dense 10; leaky-ReLU slope (the lower
slope bound, option ``min_slope``, as the layer's) 0.1; ``stable_node`` keeps max_D mu_2(D A) <= delta_bar
= 0 after every step, so the ODE block's certified Lipschitz bound is
exp(delta_bar * t1) = 1 for the flow and (1 + h * delta_bar)^N = 1 for the
Euler map. A ``node`` model and a ``stable_node`` model have the same weight
list, so one fine-tunes the other (train.py ``--init_from``).

Certified family (``lipschitz_cnn``, ``chnode_certified``,
``stable_node_certified``; DESIGN, "Certified robustness"): the skeleton of
``models.lipschitz_cnn.lipschitz_cnn`` on [0, 1] pixels (norm-bounded convolutions,
GroupSort, L2-norm pooling, a free dense read-out) with no ODE block, a
per-pixel fixed-gamma CH-NODE or a per-pixel stabilized NODE after the
first pooling; their recipes train against the certificate
(``loss="lipschitz_margin"`` at ``train_eps`` = 1.58, train.py's
``--loss`` / ``--train_eps``).

Example:

>>> from contractive_keras import models
>>> models.NAMES
('chnode', 'hdnn', 'resnet', 'node', 'stable_node', 'lipschitz_cnn', 'chnode_certified', \
'stable_node_certified')
>>> model = models.build("chnode", depth=4)   # doctest: +SKIP
>>> model.output_shape                        # doctest: +SKIP
(None, 10)
"""

from contractive_keras.models.hamiltonian import reference_classifier
from contractive_keras.models.registry import (
    BUILDERS, CERTIFIED, CERTIFIED_FAMILY, COMMON_OPTIONS, HAMILTONIAN, HAMILTONIAN_FAMILY, MODELS,
    MODEL_OPTIONS, NAMES, REFERENCE_HPARAMS, STABILIZED, STABILIZED_FAMILY, TRAINING_KEYS, ModelSpec,
    build, models_accepting, options)

__all__ = ["BUILDERS", "CERTIFIED", "CERTIFIED_FAMILY", "COMMON_OPTIONS", "HAMILTONIAN",
           "HAMILTONIAN_FAMILY", "MODELS", "MODEL_OPTIONS", "ModelSpec", "NAMES",
           "REFERENCE_HPARAMS", "STABILIZED", "STABILIZED_FAMILY", "TRAINING_KEYS", "build",
           "models_accepting", "options", "reference_classifier"]
