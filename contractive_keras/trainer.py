"""The names this module held before training moved to ``contractive_keras.training``.

>>> from contractive_keras.trainer import Trainer, TrainConfig   # doctest: +SKIP

is ``from contractive_keras.training import Trainer, TrainConfig``; new code
imports from ``contractive_keras.training``.
"""

from contractive_keras.training import (
    TrainConfig, Trainer, TrainingDiverged, build_model, build_optimizer, hardware_summary, is_chief,
    select_strategy, write_json)

__all__ = [
    "TrainConfig", "Trainer", "TrainingDiverged", "build_model", "build_optimizer", "hardware_summary",
    "is_chief", "select_strategy", "write_json",
]
