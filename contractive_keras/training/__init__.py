"""Training: configuration, strategy, the distributed loop, reports.

* ``config``: ``TrainConfig`` (one field per train.py flag), ``make_config``
  (unset fields from the model's reference recipe), ``option_problems`` (which
  options do not apply to a model), ``check_paths``;
* ``strategy``: ``select_strategy`` for train.py's ``--strategy`` values
  (``STRATEGIES``), ``is_chief``;
* ``builders``: the model, the optimizer and the loss a config describes;
* ``steps``: one distributed training step and one evaluation step;
* ``loop``: ``Trainer``, the custom loop with checkpoints, and
  ``TrainingDiverged``;
* ``report``: certificate values, the robustness table, hardware summary,
  TensorBoard scalars, atomic JSON writes.

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
from contractive_keras.training.loop import Trainer, TrainingDiverged
from contractive_keras.training.report import (
    certificate_summary, certified_accuracies, hardware_summary, robustness_table, write_json)
from contractive_keras.training.strategy import STRATEGIES, is_chief, select_strategy

__all__ = [
    "LOSSES", "LOSS_BOUNDS", "MODEL_FIELDS", "STRATEGIES", "TrainConfig", "Trainer",
    "TrainingDiverged", "build_loss", "build_model", "build_optimizer", "certificate_summary",
    "certified_accuracies", "check_paths", "default_model_dir", "hardware_summary",
    "is_chief", "make_config", "model_overrides", "option_problems", "robustness_table",
    "select_strategy", "write_json",
]
