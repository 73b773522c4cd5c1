"""The model and the optimizer a ``TrainConfig`` describes."""

import keras

from contractive_keras import models
from contractive_keras.training.config import MODEL_FIELDS


def parse_gamma(value):
    """``"auto"`` stays ``"auto"``; a number (or its string) becomes a float."""
    if value is None or value == "auto":
        return value
    return float(value)


def model_overrides(config):
    """The ``models.build`` options a config sets (None fields left out)."""
    overrides = {}
    for key in MODEL_FIELDS:
        if key == "depth":
            continue  # build's own argument
        value = getattr(config, key)
        if value is not None:
            overrides[key] = parse_gamma(value) if key == "gamma" else value
    return overrides


def build_model(config):
    """The model named by ``config.model`` with the run's options."""
    return models.build(config.model, depth=config.depth, **model_overrides(config))


def build_optimizer(config, steps_per_epoch):
    """Adam with the learning rate multiplied by ``lr_decay`` after each epoch:
    lr(step) = learning_rate * lr_decay ** floor(step / steps_per_epoch)."""
    schedule = keras.optimizers.schedules.ExponentialDecay(
        config.learning_rate, decay_steps=steps_per_epoch, decay_rate=config.lr_decay, staircase=True
    )
    optimizer = keras.optimizers.Adam(learning_rate=schedule)
    if config.mixed_precision and keras.mixed_precision.global_policy().name == "mixed_float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer
