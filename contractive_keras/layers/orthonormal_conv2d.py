"""OrthonormalConv2D: a stride-1 convolution with an orthonormalised kernel and operator norm 1."""

import keras
from keras import ops

from contractive_keras.bounds.operator_norms import conv_operator_norm_tf
from contractive_keras.bounds.orthonormalization import bjorck_orthonormalize

#: Operator-norm bound of the applied kernel: 1 in exact arithmetic (normalised by
#: its circulant bound), plus float32 rounding.
MAX_NORM = 1.0 + 1e-5


@keras.saving.register_keras_serializable(package="contractive_keras")
class OrthonormalConv2D(keras.layers.Conv2D):
    """``Conv2D`` whose reshaped kernel is orthonormal, scaled to operator norm 1.

    The applied kernel is built from the trainable one in two steps:

    1. the (kh kw cin, cout) matrix of the kernel is Bjorck-orthonormalised
       (``bounds.orthonormalization``), as deel-lip's ``SpectralConv2D``;
    2. it is divided by the circulant-embedding bound of the convolution's l2
       operator norm on the layer's input grid (Sedghi et al. 2019,
       ``bounds.operator_norms.conv_operator_norm_tf``), so the operator
       norm is 1 up to rounding, not the loose sqrt(kh kw).

    Both steps are differentiated through.  Only stride 1 and dilation 1
    (the cases the circulant bound certifies) are accepted.
    ``applied_kernel()`` is the kernel used; ``certify`` bounds it again in
    float64, never assuming 1.

    Args:
        filters, kernel_size: as ``keras.layers.Conv2D``.
        iterations: Bjorck steps per call.
        **kwargs: ``keras.layers.Conv2D`` arguments; strides and dilation
            must be 1, the activation linear (to be certified), and a
            ``kernel_constraint`` is refused.

    Example:

    >>> import numpy as np
    >>> from contractive_keras.bounds import conv_operator_norm
    >>> layer = OrthonormalConv2D(4, 3, padding="same")
    >>> _ = layer(np.zeros((1, 8, 8, 2), "float32"))
    >>> round(conv_operator_norm(np.asarray(layer.applied_kernel(), "float64"), (8, 8)), 4)
    1.0
    """

    def __init__(self, filters, kernel_size, iterations=15, **kwargs):
        if kwargs.get("kernel_constraint") is not None:
            raise ValueError("OrthonormalConv2D takes no kernel_constraint: the applied kernel "
                             "is normalised in every call.")
        kwargs.setdefault("kernel_initializer", "orthogonal")
        super().__init__(filters, kernel_size, **kwargs)
        if tuple(self.strides) != (1, 1) or tuple(self.dilation_rate) != (1, 1):
            raise ValueError(f"OrthonormalConv2D supports strides=1 and dilation_rate=1 only "
                             f"(the circulant bound), got strides={self.strides}, "
                             f"dilation_rate={self.dilation_rate}.")
        if self.data_format != "channels_last":
            raise ValueError("OrthonormalConv2D supports data_format='channels_last' only.")
        if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 0:
            raise ValueError(f"iterations must be an int >= 0, got {iterations!r}.")
        self.iterations = iterations
        # The norm the parametrisation guarantees, float32 rounding included
        # (``certify.body_bound_fn(mode="constraint")`` checks it).
        self.max_norm = MAX_NORM
        self.grid = None

    def build(self, input_shape):
        super().build(input_shape)
        grid = tuple(input_shape[1:3])
        if None in grid:
            raise ValueError(f"{self.name}: OrthonormalConv2D needs a known spatial input "
                             f"shape (its operator norm depends on it), got {input_shape}.")
        self.grid = tuple(int(s) for s in grid)

    def applied_kernel(self):
        """The (kh, kw, cin, cout) kernel the layer convolves with (operator norm 1)."""
        shape = tuple(self.kernel.shape)
        matrix = ops.reshape(self.kernel, (-1, shape[-1]))
        kernel = ops.reshape(bjorck_orthonormalize(matrix, self.iterations), shape)
        norm = ops.cast(conv_operator_norm_tf(kernel, self.grid), kernel.dtype)
        return kernel / norm

    def call(self, inputs):
        outputs = self.convolution_op(inputs, ops.cast(self.applied_kernel(), inputs.dtype))
        if self.use_bias:
            outputs = outputs + self.bias
        return self.activation(outputs) if self.activation is not None else outputs

    def get_config(self):
        config = super().get_config()
        config["iterations"] = self.iterations
        config.pop("kernel_constraint", None)
        return config
