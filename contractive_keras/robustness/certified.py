"""Certified accuracy: the fraction of inputs no perturbation within eps can change.

The radius itself is ``certify.certified_radius``, from a model alone (the
tightest read-out bound certify can prove: the pairwise test
``min_j (z_y - z_j) / (L_body ||w_y - w_j||_2)`` where it applies;
shared/DESIGN.md, "Certified robustness") or from logits and a certified
constant ``L`` of the logit map (the Lipschitz-margin test of Tsuzuku, Sato,
Sugiyama, "Lipschitz-margin training", NeurIPS 2018: the prediction cannot
change within ``||delta||_2 < M(x) / (sqrt(2) L)``, ``M`` the logit margin).
This module turns radii into accuracies over a list of radii and threat
norms: an L-inf ball of radius ``eps`` lies in the L2 ball of radius
``sqrt(d) eps`` (``d`` input values; ``norms.l2_radius_factor``), which
certifies it.
"""

import numpy as np
import tensorflow as tf

from contractive_keras import certify
from contractive_keras.robustness.loading import logit_function
from contractive_keras.robustness.norms import l2_radius_factor

__all__ = ["certified_accuracy", "margins"]


def margins(logits, labels):
    """``f_y(x) - max_{i != y} f_i(x)`` per example; negative if misclassified."""
    logits = np.asarray(logits, np.float64)
    labels = np.asarray(labels, np.int64)
    true = np.take_along_axis(logits, labels[:, None], axis=1)[:, 0]
    others = logits.copy()
    np.put_along_axis(others, labels[:, None], -np.inf, axis=1)
    return true - others.max(axis=1)


def _radii(eps):
    radii = np.atleast_1d(np.asarray(eps, np.float64))
    if radii.ndim != 1 or np.any(~(radii >= 0)):
        raise ValueError(f"eps must be a radius >= 0 or a sequence of them, got {eps!r}")
    return radii


def certified_accuracy(model_or_logits, labels, lipschitz_constant=None, eps=0.0, *, norm="l2",
                       images=None, input_dim=None):
    """Fraction of points certified at radius ``eps``.

    A point counts iff it is classified correctly and its certified L2
    radius (``certify.certified_radius``) exceeds ``eps`` (``norm="l2"``) or
    ``sqrt(d) eps`` (``norm="linf"``, ``d`` values per input).  With logits,
    or a model and a ``lipschitz_constant`` ``L``, the radius is the global
    ``M(x) / (sqrt(2) L)``, ``M`` the logit margin (Tsuzuku et al. 2018);
    with a Keras model and no constant, certify bounds the model itself.
    ``eps=0`` gives the clean accuracy.

    Args:
        model_or_logits: ``(N, C)`` logits, or a model (anything
            ``logit_function`` accepts) evaluated on ``images``.
        labels: ``(N,)`` true labels.
        lipschitz_constant: ``L``, a certified *upper bound* (a lower bound or
            estimate would make the certificate false); ``None`` only with a
            Keras model, which ``certify`` then bounds itself.
        eps: a radius or a sequence of radii (>= 0), in input units.
        norm: "l2" or "linf".
        images: the inputs, needed with a model, or for ``linf`` to read ``d``.
        input_dim: ``d`` when only logits are given and ``norm="linf"``.

    Returns:
        A float for a scalar ``eps``, else a float64 array, one per radius.

    Example:
        >>> certified_accuracy(model, y, 3.2, [0.1, 0.5], images=x)   # doctest: +SKIP
        >>> certified_accuracy(model, y, eps=[0.1, 0.5], images=x)     # doctest: +SKIP
    """
    radii = _radii(eps)
    if images is not None:
        input_dim = int(np.prod(np.shape(images)[1:]))
    factor = l2_radius_factor(norm, input_dim)
    is_logits = hasattr(model_or_logits, "shape") and not callable(model_or_logits)
    if not is_logits and images is None:
        raise ValueError("images= is required when a model is given")
    if lipschitz_constant is None:
        if is_logits:
            raise ValueError("lipschitz_constant is required with logits (only a model can be "
                             "certified without one)")
        radius, correct = certify.certified_radius(model_or_logits, images, labels)
    else:
        logits = model_or_logits if is_logits else logit_function(model_or_logits)(
            tf.convert_to_tensor(images, tf.float32))
        radius, correct = certify.certified_radius(logits=logits, labels=labels,
                                                   lipschitz_constant=lipschitz_constant)
    certified = np.asarray(correct, bool)[None, :] & (
        np.asarray(radius, np.float64)[None, :] > factor * radii[:, None])
    accuracy = certified.mean(axis=1)
    return float(accuracy[0]) if np.ndim(eps) == 0 else accuracy
