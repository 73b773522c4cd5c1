"""OrthonormalDense: a Dense layer whose kernel is the Bjorck orthonormalisation of its weights."""

import keras
from keras import ops

from contractive_keras.bounds.orthonormalization import bjorck_orthonormalize
from contractive_keras.layers import dispatch

#: Operator-norm bound of the applied kernel: 1 in exact arithmetic (the Bjorck
#: map s -> s (3 - s^2) / 2 never exceeds 1 on [0, sqrt(3)]), plus float32 rounding.
MAX_NORM = 1.0 + 1e-5


@keras.saving.register_keras_serializable(package="contractive_keras")
class OrthonormalDense(keras.layers.Dense):
    """``Dense`` applying ``bjorck_orthonormalize(kernel)``: all singular values ~1.

    The trainable ``kernel`` is a free parametrisation; the layer applies
    W = Bjorck(kernel / ||kernel||_2) (Anil et al. 2019, eq. 5; module
    ``bounds.orthonormalization``), differentiated through, as deel-lip's
    ``SpectralDense``.  With GroupSort around it the network is
    gradient-norm preserving, which is what lets a 1-Lipschitz network
    reach its certified bound.  ``applied_kernel()`` is the matrix used;
    ``certify`` takes its exact spectral norm (about 1, never assumed).

    Args:
        units: output width.
        iterations: Bjorck steps per call (15 orthonormalises to float32
            precision every singular value above ~1e-3 of the largest).
        **kwargs: ``keras.layers.Dense`` arguments; ``activation`` must stay
            linear for the layer to be certified, and a ``kernel_constraint``
            is refused (the parametrisation already bounds the norm).

    Example:

    >>> import numpy as np
    >>> layer = OrthonormalDense(3)
    >>> _ = layer(np.zeros((1, 6), "float32"))
    >>> w = np.asarray(layer.applied_kernel())
    >>> bool(np.allclose(w.T @ w, np.eye(3), atol=1e-5))
    True
    """

    def __init__(self, units, iterations=15, **kwargs):
        if kwargs.get("kernel_constraint") is not None:
            raise ValueError("OrthonormalDense takes no kernel_constraint: the applied kernel "
                             "is orthonormalised in every call.")
        kwargs.setdefault("kernel_initializer", "orthogonal")
        super().__init__(units, **kwargs)
        if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 0:
            raise ValueError(f"iterations must be an int >= 0, got {iterations!r}.")
        self.iterations = iterations
        # The norm the parametrisation guarantees, float32 rounding included
        # (``certify.body_bound_fn(mode="constraint")`` checks it).
        self.max_norm = MAX_NORM

    def applied_kernel(self):
        """The (input_dim, units) kernel the layer multiplies by."""
        return bjorck_orthonormalize(self.kernel, self.iterations)

    def call(self, inputs):
        outputs = dispatch.matmul(inputs, ops.cast(self.applied_kernel(), inputs.dtype))
        if self.use_bias:
            outputs = outputs + self.bias
        return self.activation(outputs) if self.activation is not None else outputs

    def get_config(self):
        config = super().get_config()
        config["iterations"] = self.iterations
        config.pop("kernel_constraint", None)
        return config
