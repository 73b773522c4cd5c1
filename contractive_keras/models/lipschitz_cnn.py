"""The certified classifier skeleton: a 1-Lipschitz-bounded CNN around an ODE block.

shared/DESIGN.md, "Certified robustness": layers whose norms are bounded
after every optimizer step, GroupSort activations, L2-norm pooling and no
input standardisation, so that ``certify.lipschitz_bound`` is a product of
near-tight factors and the pairwise read-out test certifies large radii:

    images in [0, 1] (N, H, W, 1)
      -> conv 3x3, c1 channels (norm 1) -> GroupSort2 -> L2-norm pool 2
      -> [ODE block per pixel on the c1 pooled channels, optional]
      -> conv 3x3, c2 channels (norm 1) -> GroupSort2 -> L2-norm pool 2
      -> flatten -> dense (norm 1) -> GroupSort2
      -> dense read-out (free: the pairwise test uses its column distances)

``kernels="orthonormal"`` (the default) makes the convolutions
``OrthonormalConv2D`` and the dense layer ``OrthonormalDense``: Bjorck-
orthonormalised kernels, every singular value ~1, so the network is
gradient-norm preserving and its certified bound is nearly attained (Anil et
al. 2019).  ``kernels="clipped"`` keeps plain ``Conv2D`` / ``Dense`` layers
whose norms are clipped at 1 after every step (``ConvNormClip``,
``SpectralNormClip``), the zoo's first certified models: singular values
anywhere in [0, 1], which measured far below the orthonormal version
(docs/certified.md).

With ``ode_layer=None`` it is the plain 1-Lipschitz baseline of
docs/certified.md (the size of the deel-torchlip CNN of issue 15).  Layer
names (``conv1``, ``ode``, ``logits``, ...) are fixed: the certified-training
study (scripts/certified_study.py) and the zoo load weights by them.

Example:

>>> from contractive_keras.models.lipschitz_cnn import lipschitz_cnn
>>> model = lipschitz_cnn()
>>> model.output_shape
(None, 10)
"""

import keras

from contractive_keras import datasets
from contractive_keras.constraints import ConvNormClip
from contractive_keras.constraints import SpectralNormClip
from contractive_keras.layers.group_sort import GroupSort
from contractive_keras.layers.l2_norm_pooling import L2NormPooling2D
from contractive_keras.layers.orthonormal_conv2d import OrthonormalConv2D
from contractive_keras.layers.orthonormal_dense import OrthonormalDense

#: Kernel parametrisations of the skeleton (module docstring).
KERNELS = ("orthonormal", "clipped")


def lipschitz_cnn(ode_layer=None, channels=(16, 32), dense=128, num_classes=datasets.NUM_CLASSES,
                  input_shape=datasets.INPUT_SHAPE, normalize_inputs=False, kernels="orthonormal",
                  name="lipschitz_cnn"):
    """Builds the skeleton of the module docstring (kernels start inside their constraints).

    Args:
        ode_layer: an ODE layer applied per pixel after the first pooling
            (it must keep the shape, e.g. ``StabilizedNODE`` or a per-pixel
            ``CHNODE``), or None.
        channels: (c1, c2), the two convolutions' widths.
        dense: width of the hidden dense layer (even: GroupSort2 pairs units).
        num_classes, input_shape: the task.
        normalize_inputs: prepend (x - mean) / std with the MNIST statistics.
            Off by default: it multiplies every certified bound by 1 / std.
        kernels: "orthonormal" or "clipped" (module docstring).
        name: the model's name.

    Raises:
        ValueError: a channel count or dense width GroupSort2 cannot pair,
            or an unknown ``kernels``.
    """
    if kernels not in KERNELS:
        raise ValueError(f"kernels must be one of {KERNELS}, got {kernels!r}.")
    c1, c2 = (int(c) for c in channels)
    if min(c1, c2, int(dense)) < 2 or c1 % 2 or c2 % 2 or int(dense) % 2:
        raise ValueError(f"channels={channels!r} and dense={dense!r} must be even and >= 2 "
                         "(GroupSort2 sorts pairs of units).")
    inputs = keras.Input(shape=input_shape, name="images")
    x = inputs
    if normalize_inputs:
        mean, std = datasets.NORMALIZATION["mnist"]
        x = keras.layers.Rescaling(1.0 / std, offset=-mean / std, name="normalize")(x)
    x = _conv(kernels, c1, "conv1")(x)
    x = GroupSort(2, name="sort1")(x)
    x = L2NormPooling2D(2, name="pool1")(x)
    if ode_layer is not None:
        x = ode_layer(x)
    x = _conv(kernels, c2, "conv2")(x)
    x = GroupSort(2, name="sort2")(x)
    x = L2NormPooling2D(2, name="pool2")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    if kernels == "orthonormal":
        x = OrthonormalDense(int(dense), name="dense1")(x)
    else:
        x = keras.layers.Dense(int(dense), kernel_constraint=SpectralNormClip(1.0),
                               kernel_initializer="orthogonal", name="dense1")(x)
    x = GroupSort(2, name="sort3")(x)
    outputs = keras.layers.Dense(num_classes, name="logits")(x)
    model = keras.Model(inputs, outputs, name=name)
    apply_constraints(model)
    return model


def _conv(kernels, filters, name):
    """A 3x3 'same' convolution of operator norm <= 1 in the chosen parametrisation."""
    if kernels == "orthonormal":
        return OrthonormalConv2D(filters, 3, padding="same", name=name)
    return keras.layers.Conv2D(filters, 3, padding="same", kernel_constraint=ConvNormClip(1.0),
                               kernel_initializer="orthogonal", name=name)


def apply_constraints(model):
    """Assigns ``constraint(variable)`` to every constrained variable of ``model``.

    Keras applies constraints after each optimizer step only; a freshly
    built (or hand-assigned) model starts outside them until this runs.
    """
    for variable in model.trainable_variables:
        if variable.constraint is not None:
            variable.assign(variable.constraint(variable))
