"""Certified accuracy and radius: the fraction of inputs no perturbation within eps can change.

Two sources of a certificate:

- **logits and a constant** (``certified_radius``, and ``certified_accuracy``
  given logits or a ``lipschitz_constant``): the Lipschitz-margin test of
  Tsuzuku, Sato, Sugiyama, "Lipschitz-margin training", NeurIPS 2018. If the
  logit map ``f`` satisfies ``||f(x) - f(x')||_2 <= L ||x - x'||_2`` (``L``
  the L2 -> L2 Lipschitz constant on the model's input), every logit
  difference ``f_y - f_j`` is ``sqrt(2) L``-Lipschitz, so with the margin
  ``M(x) = f_y(x) - max_{j != y} f_j(x)`` the prediction cannot change within
  ``||delta||_2 < M(x) / (sqrt(2) L)``. A point is certified at L2 radius
  ``eps`` iff it is classified correctly and ``M(x) > sqrt(2) L eps``;
- **a model alone** (``certified_accuracy`` with a model and no constant):
  ``certify.certified_radius``, which uses the tightest read-out bound it can
  certify (the pairwise test ``min_j (z_y - z_j) / (L_body ||w_y - w_j||_2)``
  where it applies; shared/DESIGN.md, "Certified robustness").

An L-inf ball of radius ``eps`` lies in the L2 ball of radius ``sqrt(d) eps``
(``d`` input values; ``norms.l2_radius_factor``), which certifies it.
"""

import math

import numpy as np
import tensorflow as tf

from contractive_keras import certify
from contractive_keras.robustness.loading import logit_function
from contractive_keras.robustness.norms import l2_radius_factor

__all__ = ["certified_accuracy", "certified_radius", "margins"]


def margins(logits, labels):
    """``f_y(x) - max_{i != y} f_i(x)`` per example; negative if misclassified."""
    logits = np.asarray(logits, np.float64)
    labels = np.asarray(labels, np.int64)
    true = np.take_along_axis(logits, labels[:, None], axis=1)[:, 0]
    others = logits.copy()
    np.put_along_axis(others, labels[:, None], -np.inf, axis=1)
    return true - others.max(axis=1)


def _check_lipschitz(lipschitz_constant):
    if not (isinstance(lipschitz_constant, (int, float, np.floating)) and lipschitz_constant > 0
            and math.isfinite(lipschitz_constant)):
        raise ValueError(f"lipschitz_constant must be a finite number > 0, got {lipschitz_constant!r}")
    return float(lipschitz_constant)


def _radii(eps):
    radii = np.atleast_1d(np.asarray(eps, np.float64))
    if radii.ndim != 1 or np.any(~(radii >= 0)):
        raise ValueError(f"eps must be a radius >= 0 or a sequence of them, got {eps!r}")
    return radii


def certified_radius(logits, labels, lipschitz_constant, *, norm="l2", input_dim=None):
    """Per-example certified radius ``max(M, 0) / (sqrt(2) L)`` (Tsuzuku et al. 2018).

    For ``norm="linf"`` the L2 radius is divided by ``sqrt(input_dim)``.

    Args:
        logits: ``(N, C)`` logits of the clean inputs.
        labels: ``(N,)`` true labels.
        lipschitz_constant: certified upper bound ``L`` of the L2 -> L2
            Lipschitz constant of the logit map on the model's input.
        norm: "l2" or "linf", the norm of the radius.
        input_dim: number of input values per example (``linf`` only).

    Returns:
        Float64 array ``(N,)``; 0 for misclassified points.
    """
    lip = _check_lipschitz(lipschitz_constant)
    factor = l2_radius_factor(norm, input_dim)
    return np.maximum(margins(logits, labels), 0.0) / (math.sqrt(2.0) * lip * factor)


def certified_accuracy(model_or_logits, labels, lipschitz_constant=None, eps=0.0, *, norm="l2",
                       images=None, input_dim=None):
    """Fraction of points certified at radius ``eps``.

    With logits, or a model and a ``lipschitz_constant`` ``L``, a point counts
    iff ``M(x) > sqrt(2) * L * eps`` (``norm="l2"``) or
    ``M(x) > sqrt(2) * L * sqrt(d) * eps`` (``norm="linf"``, ``d`` values per
    input), ``M`` the logit margin (Tsuzuku et al. 2018). With a Keras model
    and no constant, it counts iff ``certify.certified_radius`` certifies it
    at L2 radius ``eps`` (``sqrt(d) eps`` for ``linf``). ``eps=0`` gives the
    clean accuracy.

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
        certified = np.asarray(correct, bool)[None, :] & (
            np.asarray(radius, np.float64)[None, :] > factor * radii[:, None])
    else:
        lip = _check_lipschitz(lipschitz_constant)
        logits = model_or_logits if is_logits else logit_function(model_or_logits)(
            tf.convert_to_tensor(images, tf.float32))
        certified = margins(logits, labels)[None, :] > math.sqrt(2.0) * lip * factor * radii[:, None]
    accuracy = certified.mean(axis=1)
    return float(accuracy[0]) if np.ndim(eps) == 0 else accuracy
