"""Initializers of the stacked per-step weights of the ODE layers."""

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="contractive_keras")
class StepwiseIdentity(keras.initializers.Initializer):
    """``gain * I`` in every slice of a stacked (steps, p, n) weight.

    Example:

    >>> init = StepwiseIdentity(0.02)
    >>> init((2, 4, 4)).shape
    TensorShape([2, 4, 4])
    """

    def __init__(self, gain=1.0):
        self.gain = float(gain)

    def __call__(self, shape, dtype=None):
        dtype = dtype or "float32"
        *lead, p, n = shape
        eye = self.gain * tf.eye(p, n, dtype=dtype)
        return tf.broadcast_to(eye, list(shape))

    def get_config(self):
        return {"gain": self.gain}
