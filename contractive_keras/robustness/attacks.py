"""Gradient attacks in pixel space: FGSM and PGD, L-inf and L2.

Both attacks act on the model's *input*: float32 images in the valid pixel
range (``[0, 1]`` for every zoo model, whose normalisation is a layer inside
the model), so an epsilon is measured in pixel units before normalisation.
Every adversarial image lies in the epsilon-ball around its clean image *and*
in the pixel range: after each step the perturbation is projected onto the
ball, then the image is clipped to ``[clip_min, clip_max]``. Clipping to a box
that contains the clean image never moves a point farther from it (the box
projection is non-expansive), so both constraints hold together.

The attacks are pure TensorFlow (``tf.GradientTape``, ``tf.while_loop``),
batched, and can be traced inside ``tf.function``. They accept anything
``logit_function`` accepts: a Keras model, a SavedModel from
``tf.saved_model.load`` (its ``serve`` endpoint, as written by
``model.export()``, or its ``serving_default`` signature), a
``keras.layers.TFSMLayer``, a path to a ``.keras`` file or a SavedModel
directory, or any callable from images to logits
(``robustness.loading``).

References:
    FGSM: I. Goodfellow, J. Shlens, C. Szegedy, "Explaining and harnessing
    adversarial examples", ICLR 2015.
    PGD: A. Madry, A. Makelov, L. Schmidt, D. Tsipras, A. Vladu, "Towards deep
    learning models resistant to adversarial attacks", ICLR 2018.

Example:

>>> import numpy as np, keras
>>> from contractive_keras.robustness import attacks
>>> model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(),
...                           keras.layers.Dense(10)])
>>> x = np.random.rand(8, 28, 28, 1).astype("float32")
>>> y = np.arange(8) % 10
>>> x_adv = attacks.pgd(model, x, y, eps=0.1, steps=10, seed=0)
>>> bool(np.abs(x_adv - x).max() <= 0.1 + 1e-6)
True
"""

import numpy as np
import tensorflow as tf

from contractive_keras.robustness.loading import logit_function
from contractive_keras.robustness.noise import stateless_seed
from contractive_keras.robustness.norms import NORMS, check_norm

__all__ = ["LOSSES", "NORMS", "attack_loss", "fgsm", "logit_function", "pgd"]

#: Attack objectives: "ce", the cross-entropy of the logits (Goodfellow et
#: al.; Madry et al.), and "margin", max_{i != y} z_i - z_y (Carlini & Wagner
#: 2017). The margin does not saturate: when logits are so large that the
#: float32 softmax is exactly one-hot, the cross-entropy and its gradient are 0
#: at a correctly classified point, the margin's gradient is not.
LOSSES = ("ce", "margin")

# Guards the division by a gradient's L2 norm when the gradient is zero.
_TINY = 1e-12


def _check_loss(loss):
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")


def _check_eps(eps, name="eps"):
    if not isinstance(eps, (int, float)) or isinstance(eps, bool) or not eps >= 0:
        raise ValueError(f"{name} must be a non-negative number, got {eps!r}")
    return float(eps)


def attack_loss(logits, labels, loss="ce"):
    """Per-example attack objective of float32 logits (see ``LOSSES``)."""
    if loss == "ce":
        return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
    true = tf.gather(logits, labels, axis=1, batch_dims=1)
    others = tf.where(tf.one_hot(labels, tf.shape(logits)[1]) > 0, -np.inf, logits)
    return tf.reduce_max(others, axis=1) - true


def _loss_and_gradient(logits_fn, x, y, loss="ce"):
    """Per-example attack objective and its gradient in x."""
    with tf.GradientTape() as tape:
        tape.watch(x)
        logits = tf.cast(logits_fn(x), tf.float32)
        value = attack_loss(logits, y, loss)
    return value, tape.gradient(value, x)


def _flat_l2_norm(t):
    axes = tf.range(1, tf.rank(t))
    return tf.sqrt(tf.reduce_sum(tf.square(t), axis=axes, keepdims=True))


def _ascent_direction(gradient, norm):
    """The steepest-ascent unit step for the norm's ball (first order)."""
    if norm == "linf":
        return tf.sign(gradient)
    return gradient / tf.maximum(_flat_l2_norm(gradient), _TINY)


def _project(x_adv, x, eps, norm, clip_min, clip_max):
    """Perturbation onto the eps-ball around x, then image onto the pixel box."""
    delta = x_adv - x
    if norm == "linf":
        delta = tf.clip_by_value(delta, -eps, eps)
    else:
        delta = delta * tf.minimum(1.0, eps / tf.maximum(_flat_l2_norm(delta), _TINY))
    return tf.clip_by_value(x + delta, clip_min, clip_max)


def _inputs(images, labels):
    x = tf.convert_to_tensor(images, tf.float32)
    y = tf.cast(tf.convert_to_tensor(labels), tf.int32)
    return x, y


def fgsm(model, images, labels, eps, *, norm="linf", loss="ce", clip_min=0.0, clip_max=1.0):
    """Fast gradient (sign) method: one step up the cross-entropy (or margin).

    ``x_adv = clip(x + eps * sign(grad))`` for ``norm="linf"`` (Goodfellow et
    al. 2015, eq. 3), ``x_adv = clip(x + eps * grad / ||grad||_2)`` for
    ``norm="l2"`` (the fast gradient method), where ``grad`` is the gradient of
    the cross-entropy of the model's logits with respect to the pixels and
    ``clip`` keeps the image in ``[clip_min, clip_max]``.

    Args:
        model: anything ``logit_function`` accepts; it must return logits.
        images: float32 images ``(N, ...)`` in ``[clip_min, clip_max]``.
        labels: integer labels ``(N,)``.
        eps: radius of the attack in pixel units (>= 0).
        norm: ``"linf"`` or ``"l2"`` (the L2 norm over all pixels of one image).
        loss: ``"ce"`` (cross-entropy) or ``"margin"`` (see ``LOSSES``).
        clip_min, clip_max: the valid pixel range.

    Returns:
        A float32 tensor of adversarial images, shape of ``images``.

    Example:
        >>> x_adv = fgsm(model, x, y, eps=0.1)            # doctest: +SKIP
    """
    check_norm(norm)
    _check_loss(loss)
    eps = _check_eps(eps)
    logits_fn = logit_function(model)
    x, y = _inputs(images, labels)
    _, gradient = _loss_and_gradient(logits_fn, x, y, loss)
    x_adv = x + eps * _ascent_direction(gradient, norm)
    return _project(x_adv, x, eps, norm, clip_min, clip_max)


def _random_start(x, eps, norm, seed, clip_min, clip_max):
    """A point drawn uniformly from the eps-ball around x, clipped to the box."""
    shape = tf.shape(x)
    if norm == "linf":
        delta = tf.random.stateless_uniform(shape, seed, -eps, eps)
    else:
        # Uniform in the L2 ball: Gaussian direction, radius eps * U^(1/d).
        seed_direction, seed_radius = tf.unstack(
            tf.random.experimental.stateless_split(seed, 2)
        )
        direction = tf.random.stateless_normal(shape, seed_direction)
        direction /= tf.maximum(_flat_l2_norm(direction), _TINY)
        dim = tf.cast(tf.reduce_prod(shape[1:]), tf.float32)
        radius_shape = tf.concat([shape[:1], tf.ones_like(shape[1:])], axis=0)
        u = tf.random.stateless_uniform(radius_shape, seed_radius)
        delta = eps * tf.pow(u, 1.0 / dim) * direction
    return _project(x + delta, x, eps, norm, clip_min, clip_max)


def _as_seed(seed):
    if seed is None:
        return tf.random.uniform([2], maxval=2**31 - 1, dtype=tf.int32)
    return stateless_seed(seed)


def pgd(
    model,
    images,
    labels,
    eps,
    *,
    norm="linf",
    loss="ce",
    steps=40,
    step_size=None,
    random_start=True,
    restarts=1,
    seed=None,
    clip_min=0.0,
    clip_max=1.0,
):
    """Projected gradient descent (ascent on the loss) of Madry et al. 2018.

    From a random point of the eps-ball (or the clean image), ``steps`` times:
    ``x <- Proj(x + step_size * d)`` with ``d = sign(grad)`` (L-inf) or
    ``grad / ||grad||_2`` (L2), where ``Proj`` projects the perturbation onto
    the eps-ball and then clips the image to ``[clip_min, clip_max]``. With
    ``restarts > 1`` the attack runs from several random starts and keeps, per
    example, a misclassified result if any, else the one with the highest loss.

    Args:
        model: anything ``logit_function`` accepts; it must return logits.
        images: float32 images ``(N, ...)`` in ``[clip_min, clip_max]``.
        labels: integer labels ``(N,)``.
        eps: radius in pixel units (>= 0).
        norm: ``"linf"`` or ``"l2"``.
        loss: ``"ce"`` (cross-entropy) or ``"margin"`` (see ``LOSSES``).
        steps: number of gradient steps (>= 1).
        step_size: step length; default ``2.5 * eps / steps`` (Madry et al.).
        random_start: start from a uniform point of the ball (else from x).
        restarts: number of starts (>= 1); needs ``random_start`` if > 1.
        seed: int or shape-(2,) int tensor for the stateless random start;
            ``None`` draws one. The same seed gives the same result.
        clip_min, clip_max: the valid pixel range.

    Returns:
        A float32 tensor of adversarial images, shape of ``images``.

    Example:
        >>> x_adv = pgd(model, x, y, eps=0.1, steps=20, seed=0)   # doctest: +SKIP
    """
    check_norm(norm)
    _check_loss(loss)
    eps = _check_eps(eps)
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    if not isinstance(restarts, int) or restarts < 1:
        raise ValueError(f"restarts must be a positive int, got {restarts!r}")
    if restarts > 1 and not random_start:
        raise ValueError("restarts > 1 needs random_start=True (starts would coincide)")
    step_size = 2.5 * eps / steps if step_size is None else _check_eps(step_size, "step_size")
    logits_fn = logit_function(model)
    x, y = _inputs(images, labels)
    seeds = tf.random.experimental.stateless_split(_as_seed(seed), restarts)

    def body(i, x_adv):
        _, gradient = _loss_and_gradient(logits_fn, x_adv, y, loss)
        x_adv = x_adv + step_size * _ascent_direction(gradient, norm)
        return i + 1, _project(x_adv, x, eps, norm, clip_min, clip_max)

    best = best_loss = best_wrong = None
    for r in range(restarts):
        start = _random_start(x, eps, norm, seeds[r], clip_min, clip_max) if random_start else x
        _, x_adv = tf.while_loop(lambda i, _: i < steps, body, (tf.constant(0), start))
        if restarts == 1:
            return x_adv
        logits = tf.cast(logits_fn(x_adv), tf.float32)
        value = attack_loss(logits, y, loss)
        wrong = tf.argmax(logits, -1, output_type=tf.int32) != y
        if best is None:
            best, best_loss, best_wrong = x_adv, value, wrong
            continue
        # A misclassified result beats a correct one; otherwise the higher loss wins.
        better = (wrong & ~best_wrong) | ((wrong == best_wrong) & (value > best_loss))
        mask = tf.reshape(better, tf.concat([tf.shape(better), tf.ones_like(tf.shape(x)[1:])], 0))
        best = tf.where(mask, x_adv, best)
        best_loss = tf.where(better, value, best_loss)
        best_wrong = best_wrong | wrong
    return best
