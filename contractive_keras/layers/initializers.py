"""Initializers of the stacked per-step weights of the ODE layers."""

import keras
import numpy as np


@keras.saving.register_keras_serializable(package="contractive_keras")
class StepwiseIdentity(keras.initializers.Initializer):
    """``gain * I`` in every slice of a stacked (steps, p, n) weight (every backend).

    Deterministic: it draws no random numbers.

    Example:

    >>> init = StepwiseIdentity(0.02)
    >>> tuple(init((2, 4, 4)).shape)
    (2, 4, 4)
    """

    def __init__(self, gain=1.0):
        self.gain = float(gain)

    def __call__(self, shape, dtype=None):
        dtype = dtype or "float32"
        *lead, p, n = shape
        # Built in NumPy (exact: gain and 0 in any float dtype), one conversion:
        # no kernels for JAX to compile per shape.
        eye = np.broadcast_to(np.eye(p, n, dtype=np.float64) * self.gain, tuple(shape))
        return keras.ops.convert_to_tensor(eye, dtype=dtype)

    def get_config(self):
        return {"gain": self.gain}
