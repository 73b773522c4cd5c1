"""Norm clips: the layers around an ODE block, so that a whole network has a certified bound.

Both run on every Keras backend (``keras.ops``; see
``bounds.operator_norms.clip_singular_values``).
"""

import keras

from contractive_keras.bounds.operator_norms import clip_singular_values
from contractive_keras.bounds.operator_norms import scale_conv_to_norms


@keras.saving.register_keras_serializable(package="contractive_keras")
class SpectralNormClip(keras.constraints.Constraint):
    """Clips the singular values of every slice of a stacked (W, m, n) weight.

    The result is the Frobenius-nearest matrix with ||W_k||_2 <= max_norm_k
    (Eckart-Young / Mirsky), computed slice by slice.

    Args:
        max_norm: a float, or one float per slice.

    Example:

    >>> import numpy as np
    >>> w = SpectralNormClip(1.0)(np.diag([3.0, 0.5]).astype("float32"))
    >>> float(np.linalg.norm(w, 2)) <= 1.0
    True
    """

    def __init__(self, max_norm):
        if isinstance(max_norm, (list, tuple)):
            self.max_norm = [float(x) for x in max_norm]
        else:
            self.max_norm = float(max_norm)
        if min(self.max_norm if isinstance(self.max_norm, list) else [self.max_norm]) < 0:
            raise ValueError(f"max_norm must be >= 0, got {max_norm}.")

    def __call__(self, w):
        return clip_singular_values(w, self.max_norm)

    def get_config(self):
        return {"max_norm": self.max_norm}


@keras.saving.register_keras_serializable(package="contractive_keras")
class ConvNormClip(keras.constraints.Constraint):
    """Bounds the l2 operator norm of a 2-D convolution by ``max_norm``.

    For a kernel K of shape (kh, kw, cin, cout), any stride >= 1 and zero
    padding: conv(x) = P(x) K_mat with K_mat = K as a (kh kw cin, cout)
    matrix and P(x) the patches of x (im2col), in which each input value
    appears at most kh kw times, so ||P(x)||_F <= sqrt(kh kw) ||x||_2 and

        ||conv(x) - conv(y)||_2 <= sqrt(kh kw) ||K_mat||_2 ||x - y||_2.

    Without ``input_shape`` the constraint clips the singular values of K_mat
    at max_norm / sqrt(kh kw) (the Frobenius-nearest such kernel), so the
    convolution is max_norm-Lipschitz.  With ``input_shape=(H, W)`` (a stride-1
    convolution on that grid) it uses the tight circulant bound instead
    (Sedghi et al. 2019, ``bounds.operator_norms.conv_operator_norm``) and
    scales the kernel down to it when it is above ``max_norm``.
    ``certify.lipschitz_bound`` measures the circulant norm either way.

    Args:
        max_norm: the bound, > 0.
        input_shape: (H, W) of the convolution's input grid, or None.

    Example:

    >>> import numpy as np
    >>> k = ConvNormClip(1.0)(np.ones((3, 3, 1, 4), "float32"))
    >>> bool(3 * np.linalg.norm(keras.ops.convert_to_numpy(k).reshape(9, 4), 2) <= 1.0)
    True
    """

    def __init__(self, max_norm, input_shape=None):
        self.max_norm = float(max_norm)
        if not self.max_norm > 0:
            raise ValueError(f"max_norm must be > 0, got {max_norm}.")
        self.input_shape = None if input_shape is None else [int(v) for v in input_shape]
        if self.input_shape is not None and (len(self.input_shape) != 2
                                             or min(self.input_shape) < 1):
            raise ValueError(f"input_shape must be the (H, W) grid, got {input_shape!r}.")

    def __call__(self, w):
        value = keras.ops.convert_to_tensor(w)
        if len(value.shape) != 4:
            raise ValueError(f"ConvNormClip takes a (kh, kw, cin, cout) Conv2D kernel, "
                             f"got shape {tuple(value.shape)}.")
        if self.input_shape is not None:
            return scale_conv_to_norms(value[None], [self.max_norm], self.input_shape)[0]
        kh, kw, cin, cout = (int(v) for v in value.shape)
        matrix = keras.ops.reshape(value, (kh * kw * cin, cout))
        clipped = clip_singular_values(matrix, self.max_norm / (kh * kw) ** 0.5)
        return keras.ops.reshape(clipped, (kh, kw, cin, cout))

    def get_config(self):
        config = {"max_norm": self.max_norm}
        if self.input_shape is not None:
            config["input_shape"] = self.input_shape
        return config
