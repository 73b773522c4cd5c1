"""KbFieldOptions: the activation and K, b options of CHNODE, HDNN and ResNetODE."""

import math

import keras

from contractive_keras.layers import activations


def serialize(obj):
    """keras.saving.serialize_keras_object, None-safe."""
    return None if obj is None else keras.saving.serialize_keras_object(obj)


def resolve_activation(activation, slope_bound=None):
    """Returns ``(callable, S)`` for an activation with slopes in [0, S].

    Args:
        activation: a name of ``activations.SLOPE_INTERVALS`` or any callable /
            Keras activation name; those need ``slope_bound``.
        slope_bound: S; for a known name it may only loosen the known bound.

    Raises:
        ValueError: unknown activation without ``slope_bound``, a bound below
            the known one, or a non-positive ``slope_bound``.
    """
    names = sorted(activations.SLOPE_INTERVALS)
    if isinstance(activation, str) and activation in activations.SLOPE_INTERVALS:
        sloped = activations.get(activation)
        known = sloped.slopes[1]
        if slope_bound is None:
            return sloped.fn, known
        if float(slope_bound) < known:
            raise ValueError(
                f"activation_slope_bound={slope_bound} is below the true "
                f"slope bound {known} of {activation!r}.")
        fn = sloped.fn
    elif isinstance(activation, str):
        if slope_bound is None:
            raise ValueError(
                f"activation={activation!r} has no known slope bound; allowed "
                f"names: {names}, or pass a callable together with "
                "activation_slope_bound=S such that 0 <= sigma'(x) <= S for all x.")
        fn = keras.activations.get(activation)
    else:
        if not callable(activation) or slope_bound is None:
            raise ValueError(
                f"activation={activation!r}: a custom activation must be a "
                "callable with activation_slope_bound=S given (0 <= sigma' <= S); "
                f"known names: {names}.")
        fn = activation
    slope_bound = float(slope_bound)
    if not (slope_bound > 0.0 and math.isfinite(slope_bound)):
        raise ValueError(
            f"activation_slope_bound must be a finite number > 0, got {slope_bound}.")
    return fn, slope_bound


class KbFieldOptions:
    """The options CHNODE, HDNN and ResNetODE share for their field.

    An activation with a known slope bound S (``resolve_activation``) and
    the initializers, regularizers and constraints of the stacked per-step
    K (the kernel) and b (the bias), under Keras's names.  Mix in before
    ``PerStepODE``: its ``__init__`` takes these options by keyword and
    passes ``solver`` and the rest (``PerStepODE``'s and the Keras layer
    arguments) on; merge ``field_options_config()`` into ``get_config``.
    Configs saved with the old names (``K_initializer``, ``b_initializer``,
    ``K_regularizer``, ``b_regularizer``) load through ``legacy_names``.
    """

    legacy_names = {
        "K_initializer": "kernel_initializer", "b_initializer": "bias_initializer",
        "K_regularizer": "kernel_regularizer", "b_regularizer": "bias_regularizer",
    }

    def __init__(self, solver=None, *, activation="tanh", activation_slope_bound=None,
                 kernel_initializer="random_normal", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, kernel_constraint=None,
                 bias_constraint=None, **kwargs):
        super().__init__(solver, **kwargs)
        self.activation_fn, self.slope_bound = resolve_activation(
            activation, activation_slope_bound)
        self.activation = activation
        self.activation_slope_bound = activation_slope_bound
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)
        self.kernel_constraint = keras.constraints.get(kernel_constraint)
        self.bias_constraint = keras.constraints.get(bias_constraint)

    def field_options_config(self):
        return {
            "activation": self.activation if isinstance(self.activation, str)
            else serialize(self.activation),
            "activation_slope_bound": self.activation_slope_bound,
            "kernel_initializer": serialize(self.kernel_initializer),
            "bias_initializer": serialize(self.bias_initializer),
            "kernel_regularizer": serialize(self.kernel_regularizer),
            "bias_regularizer": serialize(self.bias_regularizer),
            "kernel_constraint": serialize(self.kernel_constraint),
            "bias_constraint": serialize(self.bias_constraint),
        }

    @classmethod
    def from_config(cls, config):
        config = cls.upgrade_config(config)
        if isinstance(config.get("activation"), dict):
            config["activation"] = keras.saving.deserialize_keras_object(config["activation"])
        return cls(**config)
