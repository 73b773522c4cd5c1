"""The model and the optimizer a ``TrainConfig`` describes."""

import keras

from contractive_keras import certify, losses, models
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


def learning_rate_schedule(config, steps_per_epoch):
    """The run's learning rate as a function of the optimizer step.

    * ``final_learning_rate`` unset: multiplied by ``lr_decay`` after each
      epoch, lr(step) = learning_rate * lr_decay ** floor(step / steps_per_epoch);
    * ``final_learning_rate`` set: linear in the step from ``learning_rate``
      to ``final_learning_rate`` over the ``epochs * steps_per_epoch`` steps
      of the run (``lr_decay`` must then be 1).

    Raises:
        ValueError: both decays asked for, or a final rate that is not positive.
    """
    if config.final_learning_rate is None:
        return keras.optimizers.schedules.ExponentialDecay(
            config.learning_rate, decay_steps=steps_per_epoch, decay_rate=config.lr_decay, staircase=True)
    if not config.final_learning_rate > 0:
        raise ValueError(f"final_learning_rate must be positive, got {config.final_learning_rate}")
    if config.lr_decay != 1.0:
        raise ValueError(f"final_learning_rate (a linear decay per step) and lr_decay={config.lr_decay} "
                         "(a decay per epoch) exclude each other; set lr_decay=1")
    return keras.optimizers.schedules.PolynomialDecay(
        config.learning_rate, decay_steps=steps_per_epoch * config.epochs,
        end_learning_rate=config.final_learning_rate, power=1.0)


def build_optimizer(config, steps_per_epoch):
    """Adam over ``learning_rate_schedule(config, steps_per_epoch)``."""
    schedule = learning_rate_schedule(config, steps_per_epoch)
    optimizer = keras.optimizers.Adam(learning_rate=schedule)
    if config.mixed_precision and keras.mixed_precision.global_policy().name == "mixed_float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def build_loss(config, model):
    """The per-example training loss ``loss(labels, logits)`` of ``config.loss``.

    * ``cross_entropy``: softmax cross-entropy of ``logits / temperature``
      times the temperature (the plain one at temperature 1);
    * ``lipschitz_margin``: ``losses.LipschitzMarginCrossEntropy`` at radius
      ``train_eps`` with the pairwise read-out bound, the body bounded by
      ``certify.body_bound_fn(model, config.loss_bound)``: a certified value
      for the current weights, never an estimate (the model must have a
      linear Dense read-out named ``logits`` and layers certify can bound);
    * ``hinge_kr``: ``losses.MulticlassHingeKR`` with margin ``train_eps``
      (1 when 0) and alpha 10 (Serrurier et al. 2021).

    Raises:
        ValueError: a model the Lipschitz-margin loss cannot bound, with why.
    """
    if config.loss == "lipschitz_margin":
        try:
            readout = model.get_layer("logits")
        except ValueError:
            raise ValueError(f"--loss=lipschitz_margin needs a Dense read-out named 'logits'; "
                             f"--model={config.model} has none") from None
        body = certify.body_bound_fn(model, config.loss_bound)
        return losses.LipschitzMarginCrossEntropy(
            eps=config.train_eps, readout=readout, body_lipschitz=body,
            temperature=config.temperature, reduction=None)
    if config.loss == "hinge_kr":
        return losses.MulticlassHingeKR(alpha=10.0, margin=config.train_eps or 1.0, reduction=None)
    return losses.LipschitzMarginCrossEntropy(eps=0.0, lipschitz=0.0,
                                              temperature=config.temperature, reduction=None)
