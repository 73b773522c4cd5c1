"""Certified l2 radii of a classifier's predictions (Lipschitz-margin certificates).

A prediction y at x is certified at radius eps when no input within eps
changes it.  With a linear read-out W after a body of certified Lipschitz
bound L_body, z_y - z_j can drop by at most eps L_body ||w_y - w_j||_2, so
(Tsuzuku, Sato and Sugiyama 2018; Leino, Wang and Fredrikson 2021)

    radius(x) = min_{j != y} (z_y - z_j) / (L_body ||w_y - w_j||_2)     ("pairwise")

and, with only a bound L of the whole logit map,
radius(x) = (z_y - max_{j != y} z_j) / (sqrt(2) L)                     ("global").
The pairwise radius is never smaller: ||w_y - w_j|| <= sqrt(2) ||W||_2.
"""

import math
import weakref

import numpy as np
import tensorflow as tf

from contractive_keras.bounds.threads import single_threaded_blas
from contractive_keras.certify.model import body_and_readout
from contractive_keras.certify.model import linear_readout

BOUNDS = ("pairwise", "global")

#: model -> its inference pass as one tf.function (``compiled_forward``)
_FORWARD = weakref.WeakKeyDictionary()


def compiled_forward(model):
    """``model(x, training=False)`` as a ``tf.function``, one per model.

    With ``reduce_retracing`` a second batch size gets a graph with a free
    batch axis, which every later size reuses. In eager mode the
    ODE layers' solver loops run step by step in Python; a graph does not.
    """
    forward = _FORWARD.get(model)
    if forward is None:
        held = weakref.ref(model)  # the cache must not keep the model alive
        forward = tf.function(lambda x: held()(x, training=False), reduce_retracing=True)
        _FORWARD[model] = forward
    return forward


def _logits(model, inputs, batch_size):
    forward = compiled_forward(model)
    outputs = [np.asarray(forward(tf.convert_to_tensor(inputs[i:i + batch_size])), np.float64)
               for i in range(0, len(inputs), batch_size)]
    return np.concatenate(outputs, axis=0)


def pairwise_norms(kernel):
    """(C, C) matrix of ||w_i - w_j||_2 over the read-out's columns (no cancellation)."""
    kernel = np.asarray(kernel, np.float64)
    return np.linalg.norm(kernel[:, :, None] - kernel[:, None, :], axis=0)


def pairwise_radius(logits, kernel, body_bound):
    """min_{j != y} (z_y - z_j) / (L_body ||w_y - w_j||_2) for the predicted y (per row)."""
    logits = np.asarray(logits, np.float64)
    pred = logits.argmax(axis=1)
    norms = pairwise_norms(kernel)[pred] * body_bound                     # (N, classes)
    gaps = logits[np.arange(len(pred)), pred][:, None] - logits
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = np.where(norms > 0, gaps / norms, np.where(gaps > 0, np.inf, 0.0))
    ratios[np.arange(len(pred)), pred] = np.inf
    return ratios.min(axis=1)


def global_radius(logits, lipschitz):
    """(z_y - max_{j != y} z_j) / (sqrt(2) L) for the predicted y (per row)."""
    top2 = np.sort(np.asarray(logits, np.float64), axis=1)[:, -2:]
    return (top2[:, 1] - top2[:, 0]) / (math.sqrt(2.0) * lipschitz)


def bound_used(model, bound="pairwise"):
    """The form ``certified_radius(model, ..., bound=bound)`` uses: "pairwise" or "global".

    "pairwise" needs a linear Dense read-out as the last layer; without one
    the radius falls back to the global sqrt(2) L form.

    Raises:
        ValueError: ``bound`` not in ``BOUNDS``.
    """
    if bound not in BOUNDS:
        raise ValueError(f"bound must be one of {BOUNDS}, got {bound!r}.")
    return "pairwise" if bound == "pairwise" and linear_readout(model) is not None else "global"


@single_threaded_blas
def certified_radius(model, inputs, labels=None, *, bound="pairwise", batch_size=500):
    """l2 radius around each input within which the predicted class cannot change.

    Args:
        model: a chain model with a certified bound (``certify.lipschitz_bound``).
        inputs: a batch in the model's own input units (e.g. [0, 1] pixels).
        labels: true labels; a misclassified input gets radius 0.
        bound: "pairwise" (the tightest: needs a linear Dense read-out, else
            it falls back to "global"; ``bound_used`` says which applies)
            or "global" (margin / (sqrt(2) L)).
        batch_size: rows per forward pass.

    Returns:
        (radius, correct) numpy arrays.
    """
    form = bound_used(model, bound)
    inputs = np.asarray(inputs)
    logits = _logits(model, inputs, batch_size)
    body, kernel = body_and_readout(model)
    if form == "pairwise":
        radius = pairwise_radius(logits, kernel, body.value)
    else:
        readout = 1.0 if kernel is None else float(np.linalg.norm(kernel, 2))
        radius = global_radius(logits, body.value * readout)
    pred = logits.argmax(axis=1)
    correct = np.ones_like(pred, bool) if labels is None else pred == np.asarray(labels)
    return np.where(correct, np.maximum(radius, 0.0), 0.0), correct
