"""L2-norm pooling: 1-Lipschitz spatial downsampling for Lipschitz networks."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="contractive_keras")
class L2NormPooling2D(keras.layers.Layer):
    """Pools each channel by the L2 norm of its (non-overlapping) windows.

        y[b, i, j, c] = sqrt(sum over window (i, j) of x[b, ., ., c]^2 + floor)

    Each output is the Euclidean norm of the window's values (and of the
    constant sqrt(floor)), a 1-Lipschitz function of those values; the
    windows are disjoint (strides = pool_size), so
    ||y(x) - y(x')||_2^2 = sum_windows (|x_w| - |x'_w|)^2 <= ||x - x'||_2^2:
    the layer is 1-Lipschitz in L2 (factor 1 in a certified bound), and it is
    gradient-norm preserving wherever no window is zero.  The floor (default
    1e-12) keeps the gradient finite at zero windows; it does not change the
    Lipschitz constant.  (This is deel-lip's ``ScaledL2NormPooling2D``.)

    Args:
        pool_size: int or (ph, pw) window; the stride is the same (disjoint windows).
        padding: "valid" (drop incomplete windows) or "same" (zero-pad them).
        floor: the constant under the square root, >= 0.

    Input shape:
        (batch, height, width, channels) (channels last).

    Output shape:
        (batch, height // ph, width // pw, channels) for "valid", ceil for "same".

    Example:

    >>> import numpy as np
    >>> x = np.zeros((1, 2, 2, 1), "float32"); x[0, :, :, 0] = [[3.0, 0.0], [0.0, 4.0]]
    >>> round(float(L2NormPooling2D(2)(x)[0, 0, 0, 0]), 4)
    5.0
    """

    def __init__(self, pool_size=2, padding="valid", floor=1e-12, **kwargs):
        super().__init__(**kwargs)
        if isinstance(pool_size, int):
            pool_size = (pool_size, pool_size)
        pool_size = tuple(pool_size)
        if len(pool_size) != 2 or any(isinstance(p, bool) or not isinstance(p, int) or p < 1
                                      for p in pool_size):
            raise ValueError(f"pool_size must be an int or two ints >= 1, got {pool_size!r}.")
        if padding not in ("valid", "same"):
            raise ValueError(f"padding must be 'valid' or 'same', got {padding!r}.")
        self.pool_size = pool_size
        self.padding = padding
        self.floor = float(floor)
        if not self.floor >= 0:
            raise ValueError(f"floor must be >= 0, got {floor!r}.")

    def call(self, inputs):
        ph, pw = self.pool_size
        if self.padding == "same":
            # Zero-pad to whole windows (as "same" pooling does: the larger
            # half after); zeros leave the window sums unchanged.
            height, width = ops.shape(inputs)[1], ops.shape(inputs)[2]
            pad_h = (-height) % ph
            pad_w = (-width) % pw
            inputs = ops.pad(inputs, [[0, 0], [pad_h // 2, pad_h - pad_h // 2],
                                      [pad_w // 2, pad_w - pad_w // 2], [0, 0]])
        mean_squares = ops.average_pool(ops.square(inputs), self.pool_size,
                                        strides=self.pool_size, padding="valid")
        return ops.sqrt(mean_squares * float(ph * pw) + self.floor)

    def compute_output_shape(self, input_shape):
        batch, height, width, channels = input_shape
        out = []
        for size, pool in zip((height, width), self.pool_size):
            if size is None:
                out.append(None)
            elif self.padding == "valid":
                out.append(size // pool)
            else:
                out.append(-(-size // pool))
        return (batch, out[0], out[1], channels)

    def get_config(self):
        config = super().get_config()
        config.update({"pool_size": list(self.pool_size), "padding": self.padding,
                       "floor": self.floor})
        return config
