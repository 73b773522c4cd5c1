"""GroupSort: a 1-Lipschitz, gradient-norm-preserving activation (Anil et al. 2019)."""

import keras
from keras import ops

from contractive_keras.layers import dispatch


@keras.saving.register_keras_serializable(package="contractive_keras")
class GroupSort(keras.layers.Layer):
    """Sorts the features in consecutive groups of ``group_size`` along the last axis.

    Anil, Lucas and Grosse 2019 ("Sorting out Lipschitz function
    approximation"): on every region where the order inside each group is
    fixed, the layer is a permutation of its input, so its Jacobian is a
    permutation matrix.  Hence it is 1-Lipschitz in the L2 norm (any norm
    invariant under permutations) and gradient-norm preserving: it keeps a
    certified bound of the layers around it unchanged (factor 1) and, unlike
    ReLU, loses no gradient norm.  ``group_size=2`` (GroupSort2, "MaxMin")
    writes (min(a, b), max(a, b)) for each pair (a, b).

    Args:
        group_size: size of the sorted groups, >= 2; must divide the last
            dimension.  ``group_size`` equal to the last dimension sorts all
            features (FullSort).

    Input shape:
        (batch, ..., channels), channels divisible by ``group_size``.

    Output shape:
        Same as the input; each group in ascending order.

    Example:

    >>> import numpy as np
    >>> GroupSort(2)(np.array([[3.0, 1.0, -1.0, 2.0]], "float32")).numpy().tolist()
    [[1.0, 3.0, -1.0, 2.0]]
    """

    def __init__(self, group_size=2, **kwargs):
        super().__init__(**kwargs)
        if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 2:
            raise ValueError(f"group_size must be an int >= 2, got {group_size!r}.")
        self.group_size = group_size

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels is None or channels % self.group_size:
            raise ValueError(f"the last dimension ({channels}) must be known and divisible by "
                             f"group_size={self.group_size}.")

    def call(self, inputs):
        if self.group_size == 2:
            shape = ops.shape(inputs)
            pairs = ops.reshape(inputs, (-1, shape[-1] // 2, 2))
            low = dispatch.minimum(pairs[..., 0], pairs[..., 1])
            high = dispatch.maximum(pairs[..., 0], pairs[..., 1])
            return ops.reshape(ops.stack([low, high], axis=-1), shape)
        shape = ops.shape(inputs)
        groups = ops.reshape(inputs, (-1, shape[-1] // self.group_size, self.group_size))
        return ops.reshape(ops.sort(groups, axis=-1), shape)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config["group_size"] = self.group_size
        return config
