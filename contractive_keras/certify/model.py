"""Certified Lipschitz bounds of whole models (chains of layers), input -> logits.

Lip(f_L o ... o f_1) <= prod_i Lip(f_i) (l2 norms throughout): each layer
contributes a certified factor, ODE blocks through the certificate of the
map they compute (``certify.layer_certificate``), linear layers through
their operator norms (``bounds.operator_norms``).  For a linear read-out
W the model's logit differences are bounded pairwise by
L_body ||w_i - w_j||_2 (``body_and_readout``), tighter than sqrt(2) Lip.

Backends: the weights are read as NumPy float64 arrays (``backend.to_numpy``)
and every bound is computed in NumPy, so a model built or trained under
``KERAS_BACKEND=tensorflow``, ``jax`` or ``torch`` gets the same certificate,
to float64 rounding.
"""

import keras
import numpy as np

from contractive_keras import backend
from contractive_keras.bounds import certificate
from contractive_keras.bounds.operator_norms import conv_operator_norm
from contractive_keras.bounds.operator_norms import spectral_norm
from contractive_keras.bounds.threads import single_threaded_blas
from contractive_keras.certify.layer import describes_itself
from contractive_keras.certify.layer import layer_certificate
from contractive_keras.layers.group_sort import GroupSort
from contractive_keras.layers.l2_norm_pooling import L2NormPooling2D

_LINEAR = (keras.activations.linear, None)
KNOWN = ("InputLayer, Rescaling, Conv2D (linear, stride 1), Dense (linear), Flatten, Reshape, "
         "GroupSort, L2NormPooling2D and the package's ODE layers with a fixed-step solver")
#: Layers that are 1-Lipschitz in l2 whatever their weights: GroupSort permutes
#: coordinates within each group; L2NormPooling2D maps each disjoint window w to
#: sqrt(|w|^2 + floor), whose gradient w / sqrt(|w|^2 + floor) has norm <= 1.
ONE_LIPSCHITZ = {GroupSort: "groupsort (a permutation)", L2NormPooling2D: "l2-norm pooling (disjoint windows)"}


def conv_input_grid(layer):
    """(H, W) of the grid a Conv2D layer reads (its circulant bound depends on it)."""
    return tuple(int(s) for s in keras.tree.flatten(layer.input)[0].shape[1:3])


def applied_kernel(layer):
    """The kernel a Dense / Conv2D layer applies: ``layer.applied_kernel()`` for a
    reparametrised one (``layers.OrthonormalDense``, ``OrthonormalConv2D``), else its weights."""
    applied = getattr(layer, "applied_kernel", None)
    return applied() if callable(applied) else layer.kernel


def _conv_factor(layer):
    if layer.activation not in _LINEAR or tuple(layer.strides) != (1, 1) or \
            tuple(layer.dilation_rate) != (1, 1):
        raise ValueError(f"{layer.name}: only linear stride-1 Conv2D layers are certified.")
    return conv_operator_norm(backend.to_numpy(applied_kernel(layer), np.float64),
                              conv_input_grid(layer)), \
        "conv2d (circulant bound)"


def layer_factor(layer):
    """(certified factor, kind) of one layer of a chain model.

    Raises:
        ValueError: a layer of unknown kind, a nonlinear Dense / Conv2D, or
            an ODE layer with an adaptive solver.
    """
    if describes_itself(layer):
        return layer_certificate(layer).value, "ode block (map certificate)"
    if type(layer) in ONE_LIPSCHITZ:
        return 1.0, ONE_LIPSCHITZ[type(layer)]
    if isinstance(layer, keras.layers.InputLayer):
        return 1.0, "input"
    if isinstance(layer, (keras.layers.Flatten, keras.layers.Reshape)):
        return 1.0, "reshape (isometry)"
    if isinstance(layer, keras.layers.Rescaling):
        return float(np.max(np.abs(backend.to_numpy(layer.scale, np.float64)))), "rescaling"
    if isinstance(layer, keras.layers.Dense):
        if layer.activation not in _LINEAR:
            raise ValueError(f"{layer.name}: only linear Dense layers are certified.")
        return spectral_norm(backend.to_numpy(applied_kernel(layer), np.float64)), "dense"
    if isinstance(layer, keras.layers.Conv2D):
        return _conv_factor(layer)
    raise ValueError(f"cannot certify layer {layer.name} of type {type(layer).__name__}; "
                     f"known: {KNOWN}.")


@single_threaded_blas
def lipschitz_bound(model):
    """Certified l2 Lipschitz bound of a chain model (input -> logits).

    Returns:
        ``Certificate`` (certifies "map"), one ``Factor`` per layer.
    """
    factors = []
    for layer in model.layers:
        value, kind = layer_factor(layer)
        factors.append((layer.name, kind, value))
    return certificate.product(factors, "map")


def linear_readout(model):
    """The last layer when it is a linear Dense read-out, else None."""
    last = model.layers[-1]
    if isinstance(last, keras.layers.Dense) and last.activation in _LINEAR:
        return last
    return None


@single_threaded_blas
def body_and_readout(model):
    """(certificate of the body up to the read-out, read-out kernel W or None).

    With a linear Dense read-out z = W^T h + c, the logit difference
    z_i - z_j = (w_i - w_j)^T h + const is L_body ||w_i - w_j||_2-Lipschitz
    in the input.  Without one, the body is the whole model and W is None.
    """
    readout = linear_readout(model)
    layers = model.layers[:-1] if readout is not None else model.layers
    factors = []
    for layer in layers:
        value, kind = layer_factor(layer)
        factors.append((layer.name, kind, value))
    body = certificate.product(factors, "map")
    kernel = None if readout is None else backend.to_numpy(readout.kernel, np.float64)
    return body, kernel
