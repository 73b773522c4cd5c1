"""Certified l2 radii of a classifier's predictions (Lipschitz-margin certificates).

A prediction y at x is certified at radius eps when no input within eps
changes it.  With a linear read-out W after a body of certified Lipschitz
bound L_body, z_y - z_j can drop by at most eps L_body ||w_y - w_j||_2, so
(Tsuzuku, Sato and Sugiyama 2018; Leino, Wang and Fredrikson 2021)

    radius(x) = min_{j != y} (z_y - z_j) / (L_body ||w_y - w_j||_2)     ("pairwise")

and, with only a bound L of the whole logit map,
radius(x) = (z_y - max_{j != y} z_j) / (sqrt(2) L)                     ("global").
The pairwise radius is never smaller: ||w_y - w_j|| <= sqrt(2) ||W||_2.

Backends: the radii are NumPy float64 computations; logits, inputs, labels
and kernels may be NumPy arrays or tensors of any Keras backend, and a model
built under TensorFlow, JAX or torch is run by ``compiled_forward``.
"""

import dataclasses
import math
import weakref

import numpy as np

from contractive_keras import backend
from contractive_keras.bounds.threads import single_threaded_blas
from contractive_keras.certify.model import body_and_readout
from contractive_keras.certify.model import linear_readout

BOUNDS = ("pairwise", "global")

#: model -> its inference pass, compiled once (``compiled_forward``)
_FORWARD = weakref.WeakKeyDictionary()


def compiled_forward(model):
    """``model(x, training=False)`` compiled once per model, for the backend in use.

    The one backend dispatch of the certified radius: on TensorFlow a
    ``tf.function`` with ``reduce_retracing`` (a second batch size gets a
    graph with a free batch axis, which every later size reuses; in eager
    mode the ODE layers' solver loops would run step by step in Python); on
    JAX and torch Keras's own ``model.predict_on_batch`` (a jitted stateless
    call on JAX, a no-grad call on torch; ``_logits`` pads the batches to one
    size so that JAX traces once).  The result is array-like.
    """
    forward = _FORWARD.get(model)
    if forward is None:
        held = weakref.ref(model)  # the cache must not keep the model alive
        if backend.is_tensorflow():
            import tensorflow as tf  # pylint: disable=import-outside-toplevel
            forward = tf.function(lambda x: held()(x, training=False), reduce_retracing=True)
        else:
            forward = lambda x: held().predict_on_batch(x)  # noqa: E731
        _FORWARD[model] = forward
    return forward


def _logits(model, inputs, batch_size):
    """float64 logits of ``model`` at ``inputs`` (a NumPy array), ``batch_size`` rows at a time."""
    forward = compiled_forward(model)
    size = min(batch_size, len(inputs))
    outputs = []
    for start in range(0, len(inputs), size):
        chunk = inputs[start:start + size]
        rows = len(chunk)
        if rows < size and not backend.is_tensorflow():     # one input shape: one JAX trace
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], size - rows, axis=0)])
        outputs.append(backend.to_numpy(forward(chunk), np.float64)[:rows])
    return np.concatenate(outputs, axis=0)


def pairwise_norms(kernel):
    """(C, C) matrix of ||w_i - w_j||_2 over the read-out's columns (no cancellation)."""
    kernel = backend.to_numpy(kernel, np.float64)
    return np.linalg.norm(kernel[:, :, None] - kernel[:, None, :], axis=0)


def pairwise_radius(logits, kernel, body_bound):
    """min_{j != y} (z_y - z_j) / (L_body ||w_y - w_j||_2) for the predicted y (per row)."""
    logits = backend.to_numpy(logits, np.float64)
    pred = logits.argmax(axis=1)
    norms = pairwise_norms(kernel)[pred] * body_bound                     # (N, classes)
    gaps = logits[np.arange(len(pred)), pred][:, None] - logits
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = np.where(norms > 0, gaps / norms, np.where(gaps > 0, np.inf, 0.0))
    ratios[np.arange(len(pred)), pred] = np.inf
    return ratios.min(axis=1)


def global_radius(logits, lipschitz):
    """(z_y - max_{j != y} z_j) / (sqrt(2) L) for the predicted y (per row)."""
    top2 = np.sort(backend.to_numpy(logits, np.float64), axis=1)[:, -2:]
    return (top2[:, 1] - top2[:, 0]) / (math.sqrt(2.0) * lipschitz)


def bound_used(model, bound="pairwise"):
    """The form ``certified_radius(model, ..., bound=bound)`` uses: "pairwise" or "global".

    "pairwise" needs a linear Dense read-out as the last layer; without one
    the radius falls back to the global sqrt(2) L form.

    Raises:
        ValueError: ``bound`` not in ``BOUNDS``.
    """
    _check_bound(bound)
    return "pairwise" if bound == "pairwise" and linear_readout(model) is not None else "global"


def _check_bound(bound):
    if bound not in BOUNDS:
        raise ValueError(f"bound must be one of {BOUNDS}, got {bound!r}.")


def _check_constant(name, value):
    if not (isinstance(value, (int, float, np.floating)) and math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


@dataclasses.dataclass(frozen=True)
class CertifiedRadius:
    """Certified l2 radii of a batch and the bound that certified them.

    Attributes:
        radius: float64 (N,): no l2 perturbation smaller than it changes the
            prediction; 0 where the prediction is wrong.
        correct: bool (N,): prediction == label (all True without labels).
        bound: "pairwise" (read-out margins over L_body ||w_y - w_j||) or
            "global" (margin over sqrt(2) L).

    Unpacks as ``radius, correct = certified_radius(...)``.
    """

    radius: np.ndarray
    correct: np.ndarray
    bound: str

    def __iter__(self):
        return iter((self.radius, self.correct))


def _form_and_radius(logits, bound, lipschitz_constant, body_bound, readout_kernel):
    """(form, raw radius) from logits and a bound of the map that made them."""
    if lipschitz_constant is not None:
        if body_bound is not None or readout_kernel is not None:
            raise ValueError("give lipschitz_constant (the whole logit map) or body_bound and "
                             "readout_kernel (the map to the read-out and its kernel), not both")
        return "global", global_radius(logits, _check_constant("lipschitz_constant", lipschitz_constant))
    if body_bound is None:
        raise ValueError("logits need lipschitz_constant, or body_bound (with readout_kernel)")
    body_bound = _check_constant("body_bound", body_bound)
    if readout_kernel is None:
        return "global", global_radius(logits, body_bound)
    if bound == "pairwise":
        return "pairwise", pairwise_radius(logits, readout_kernel, body_bound)
    return "global", global_radius(logits, body_bound * float(np.linalg.norm(readout_kernel, 2)))


@single_threaded_blas
def certified_radius(model=None, inputs=None, labels=None, *, logits=None, lipschitz_constant=None,
                     body_bound=None, readout_kernel=None, bound="pairwise", batch_size=500):
    """l2 radius around each input within which the predicted class cannot change.

    The tightest valid bound applies: with a linear read-out W after a body
    of certified bound L_body, the pairwise radius
    min_{j != y} (z_y - z_j) / (L_body ||w_y - w_j||_2); else the global
    (z_y - max_{j != y} z_j) / (sqrt(2) L) (module docstring).

    Give either a model and its inputs (``certify`` bounds the model itself:
    ``body_and_readout``) or the logits and a certified bound of the map that
    made them: ``lipschitz_constant``, L of the whole logit map (global form),
    or ``body_bound``, L_body of the map to the read-out, with the read-out's
    ``readout_kernel`` W (pairwise form).  A bound must be a certified
    upper bound: an estimate makes the radius false.

    Args:
        model: a chain model with a certified bound (``certify.lipschitz_bound``).
        inputs: the model's inputs, in its own units (e.g. [0, 1] pixels).
        labels: true labels; a misclassified input gets radius 0.
        logits: (N, C) logits, instead of a model.
        lipschitz_constant, body_bound, readout_kernel: with ``logits``, see above.
        bound: "pairwise" (the tightest; without a read-out it falls back to
            "global") or "global" (margin / (sqrt(2) L), L = L_body ||W||_2).
        batch_size: rows per forward pass of the model.

    Returns:
        ``CertifiedRadius`` (radius, correct, bound): ``.bound`` says which
        form certified the radii; it unpacks as ``(radius, correct)``.

    Raises:
        ValueError: neither or both of model and logits (or logits passed
            as the model, the former ``robustness.certified_radius`` call), a
            model without inputs, a bad ``bound``, or a bound that is not a number > 0.
    """
    _check_bound(bound)
    if hasattr(model, "shape") and not callable(model):
        raise ValueError("logits go in logits=: certified_radius(logits=..., labels=..., "
                         "lipschitz_constant=...)")
    if (model is None) == (logits is None):
        raise ValueError("give a model (with inputs) or logits, exactly one of them")
    if model is not None:
        if inputs is None:
            raise ValueError("a model needs inputs")
        if not (lipschitz_constant is None and body_bound is None and readout_kernel is None):
            raise ValueError("a model is bounded by certify itself: pass logits to use a given bound")
        logits = _logits(model, backend.to_numpy(inputs), batch_size)
        body, readout_kernel = body_and_readout(model)
        body_bound = body.value
    logits = backend.to_numpy(logits, np.float64)
    form, radius = _form_and_radius(logits, bound, lipschitz_constant, body_bound, readout_kernel)
    pred = logits.argmax(axis=1)
    correct = np.ones_like(pred, bool) if labels is None else pred == backend.to_numpy(labels)
    return CertifiedRadius(np.where(correct, np.maximum(radius, 0.0), 0.0), correct, form)
