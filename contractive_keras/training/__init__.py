"""Training: configuration, devices, the loops, reports, on every Keras backend.

* ``config``: ``TrainConfig`` (one field per train.py flag), ``make_config``
  (unset fields from the model's reference recipe), ``option_problems`` (which
  options do not apply to a model), ``check_paths``;
* ``strategy``: ``select_strategy`` (TensorFlow) and ``select_distribution``
  (JAX, PyTorch) for train.py's ``--strategy`` values (``STRATEGIES``), ``is_chief``;
* ``builders``: the model, the optimizer and the loss a config describes;
* ``trainer``: ``Trainer``, the one entry point, which picks the loop of the
  Keras backend in use;
* ``base``: what every loop shares (data, epochs, records, summary), and
  ``TrainingDiverged``;
* ``loop`` + ``steps``: the ``tf.distribute`` loop and its steps (TensorFlow);
* ``keras_loop`` + ``checkpoints``: the loop over Keras's own train step and its
  checkpoints (JAX, PyTorch; no TensorFlow);
* ``report`` + ``summaries``: certificate values, the robustness table, hardware
  summary, TensorBoard scalars, atomic JSON writes.

Only ``loop`` and ``steps`` import TensorFlow, and only on TensorFlow.

Example:

>>> from contractive_keras.training import Trainer, make_config
>>> config = make_config("resnet", depth=4, epochs=1, model_dir="/tmp/r")  # doctest: +SKIP
>>> summary = Trainer(config).run()                                        # doctest: +SKIP
"""

from contractive_keras.training.builders import (
    build_loss, build_model, build_optimizer, model_overrides)
from contractive_keras.training.config import (
    LOSS_BOUNDS, LOSSES, MODEL_FIELDS, TrainConfig, check_paths, default_model_dir, make_config,
    option_problems)
from contractive_keras.training.base import TrainingDiverged
from contractive_keras.training.report import (
    certificate_summary, certified_accuracies, hardware_summary, robustness_table, write_json)
from contractive_keras.training.strategy import (
    STRATEGIES, is_chief, select_distribution, select_strategy)
from contractive_keras.training.trainer import Trainer

__all__ = [
    "LOSSES", "LOSS_BOUNDS", "MODEL_FIELDS", "STRATEGIES", "TrainConfig", "Trainer",
    "TrainingDiverged", "build_loss", "build_model", "build_optimizer", "certificate_summary",
    "certified_accuracies", "check_paths", "default_model_dir", "hardware_summary",
    "is_chief", "make_config", "model_overrides", "option_problems", "robustness_table",
    "select_distribution", "select_strategy", "write_json",
]
