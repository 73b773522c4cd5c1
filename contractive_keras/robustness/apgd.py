"""Auto-PGD (APGD-CE, APGD-DLR, APGD-T): PGD with momentum and an adaptive step size.

APGD (Croce & Hein 2020, Algorithm 1) needs no step size: it starts at
``eta = 2 eps``, moves with momentum ``alpha = 0.75``, and at checkpoints
``w_j = ceil(p_j N)`` (``p_0 = 0``, ``p_1 = 0.22``,
``p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)``) halves ``eta`` for an
example and restarts it from its best point ``x_max`` when the loss went up in
fewer than a fraction ``rho`` of the steps since the last checkpoint, or when
``eta`` was not halved at the last checkpoint and the best loss has not moved
since (condition 1 is strict, "<", as in the paper; the reference code
uses "<="). The DLR loss (eq. 6) is invariant to shifting and scaling the logits,
so it keeps a gradient where a saturated softmax makes the cross-entropy's
vanish; APGD-T runs the targeted DLR loss (eq. 7) against the top other
classes of the clean logits in turn.

Like ``attacks``, the attacks act on pixels in ``[clip_min, clip_max]``,
every iterate lies in the eps-ball (L-inf or L2) and in the pixel box, they
are pure TensorFlow (``tf.while_loop``, stateless random starts), batched,
traceable in ``tf.function``, and accept anything ``logit_function`` accepts.
Steps, restarts and targets run on the whole batch (fixed shapes); per
example the first misclassified point is kept.

References:
    F. Croce, M. Hein, "Reliable evaluation of adversarial robustness with an
    ensemble of diverse parameter-free attacks", ICML 2020 (Algorithm 1,
    eqs. 6 and 7); reference implementation: github.com/fra31/auto-attack.

Example:

>>> import numpy as np, keras
>>> from contractive_keras.robustness.apgd import apgd, apgd_targeted
>>> model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(),
...                           keras.layers.Dense(10)])
>>> x = np.random.rand(8, 28, 28, 1).astype("float32")
>>> y = np.arange(8) % 10
>>> x_adv = apgd(model, x, y, eps=0.1, loss="dlr", steps=10, seed=0)
>>> bool(np.abs(x_adv - x).max() <= 0.1 + 1e-6)
True
>>> x_adv = apgd_targeted(model, x_mnist, y_mnist, 0.3, target_classes=3)  # doctest: +SKIP
"""

import math

import tensorflow as tf

from contractive_keras.robustness.attacks import (
    _TINY, _as_seed, _ascent_direction, _check_eps, _flat_l2_norm, _inputs, _project, _random_start)
from contractive_keras.robustness.loading import logit_function
from contractive_keras.robustness.norms import check_norm

__all__ = ["LOSSES", "apgd", "apgd_targeted", "checkpoints", "dlr_loss", "targeted_dlr_loss"]

#: The untargeted losses of ``apgd``: "ce", the cross-entropy, and "dlr", the
#: Difference of Logits Ratio (eq. 6).
LOSSES = ("ce", "dlr")

# Momentum of the update (Algorithm 1, alpha); the paper fixes it.
_ALPHA = 0.75


def _top(logits, k):
    """The k largest logits per example, descending (``z_pi1 >= z_pi2 >= ...``)."""
    if logits.shape.rank == 2 and logits.shape[1] is not None and logits.shape[1] < k:
        raise ValueError(f"this DLR loss needs at least {k} classes, got {logits.shape[1]}")
    return tf.math.top_k(logits, k).values


def dlr_loss(logits, labels):
    """Untargeted DLR loss (eq. 6), per example.

    ``-(z_y - max_{i != y} z_i) / (z_pi1 - z_pi3 + 1e-12)`` with ``pi`` the
    classes sorted by decreasing logit. Positive iff the example is
    misclassified; unchanged when the logits are shifted or scaled by a
    positive factor. Needs at least 3 classes.
    """
    logits = tf.convert_to_tensor(logits, tf.float32)
    labels = tf.cast(labels, tf.int32)
    top = _top(logits, 3)
    true = tf.gather(logits, labels, axis=1, batch_dims=1)
    others = tf.where(tf.one_hot(labels, tf.shape(logits)[1]) > 0, -math.inf, logits)
    return -(true - tf.reduce_max(others, axis=1)) / (top[:, 0] - top[:, 2] + 1e-12)


def targeted_dlr_loss(logits, labels, targets):
    """Targeted DLR loss (eq. 7), per example.

    ``-(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2 + 1e-12)``: maximising it
    pushes the target logit ``z_t`` above the true one ``z_y``. Needs at least
    4 classes.
    """
    logits = tf.convert_to_tensor(logits, tf.float32)
    top = _top(logits, 4)
    true = tf.gather(logits, tf.cast(labels, tf.int32), axis=1, batch_dims=1)
    target = tf.gather(logits, tf.cast(targets, tf.int32), axis=1, batch_dims=1)
    return -(true - target) / (top[:, 0] - 0.5 * (top[:, 2] + top[:, 3]) + 1e-12)


def checkpoints(steps):
    """The step-size checkpoints ``w_j = ceil(p_j * steps)`` of APGD, ``w_0 = 0`` first.

    ``p_0 = 0``, ``p_1 = 0.22``, ``p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03,
    0.06)`` while ``p_j <= 1`` (Croce & Hein 2020, section 3.2); repeated
    values (few steps) appear once. ``checkpoints(100)`` is
    ``[0, 22, 41, 57, 70, 80, 87, 93, 99]``.
    """
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    previous, p, points = 0.0, 0.22, [0]
    while p <= 1.0:
        # round() absorbs float drift in p (0.22 + 0.19 = 0.41000000000000003).
        w = math.ceil(round(p * steps, 9))
        if w != points[-1]:
            points.append(w)
        previous, p = p, p + max(p - previous - 0.03, 0.06)
    return points


def _per_example(mask, x):
    """A per-example (N,) tensor reshaped to broadcast against x (N, ...)."""
    return tf.reshape(mask, tf.concat([tf.shape(mask), tf.ones_like(tf.shape(x)[1:])], 0))


def _start(x, eps, norm, seed, clip_min, clip_max):
    """Algorithm 1's x^(0): uniform in the L-inf ball; for L2, as the reference
    implementation, a Gaussian direction scaled to the sphere of radius eps."""
    if norm == "linf":
        return _random_start(x, eps, norm, seed, clip_min, clip_max)
    direction = tf.random.stateless_normal(tf.shape(x), seed)
    delta = eps * direction / tf.maximum(_flat_l2_norm(direction), _TINY)
    return _project(x + delta, x, eps, norm, clip_min, clip_max)


def _check_common(norm, eps, steps, restarts, rho):
    check_norm(norm)
    eps = _check_eps(eps)
    checkpoints(steps)  # validates steps
    if not isinstance(restarts, int) or isinstance(restarts, bool) or restarts < 1:
        raise ValueError(f"restarts must be a positive int, got {restarts!r}")
    if not isinstance(rho, (int, float)) or isinstance(rho, bool) or not 0 <= rho <= 1:
        raise ValueError(f"rho must be a number in [0, 1], got {rho!r}")
    return eps


def _runs(logits_fn, x, y, loss_fn, seeds, found, adv, eps, norm, steps, rho, clip_min, clip_max):
    """Algorithm 1 from one random start per seed, all examples at once.

    Returns ``(found, adv, best)``: ``found``/``adv`` updated with the first
    misclassified iterate of each example not found before, and per example
    the best-loss point ``x_max`` over the runs.
    """
    expand = lambda mask: _per_example(mask, x)  # noqa: E731

    def evaluate(point, found, adv):
        with tf.GradientTape() as tape:
            tape.watch(point)
            logits = tf.cast(logits_fn(point), tf.float32)
            value = loss_fn(logits)
        wrong = tf.argmax(logits, -1, output_type=tf.int32) != y
        adv = tf.where(expand(wrong & ~found), point, adv)
        return value, tape.gradient(value, point), found | wrong, adv

    # intervals[k] = w_j - w_{j-1} if k = w_j is a checkpoint (j >= 1), else 0.
    points, intervals = checkpoints(steps), [0] * (steps + 1)
    for previous, w in zip(points, points[1:]):
        intervals[w] = w - previous
    intervals = tf.constant(intervals, tf.float32)

    def body(k, x_k, x_prev, grad, f_k, eta, x_max, g_max, f_max, f_check, reduced, ups, found, adv):
        # z = P(x + eta d(grad)); x' = P(x + a (z - x) + (1 - a)(x - x_prev)), with
        # a = 1 for the first step (no momentum yet), alpha after.
        a = tf.where(k == 0, 1.0, _ALPHA)
        z = _project(x_k + expand(eta) * _ascent_direction(grad, norm), x, eps, norm, clip_min, clip_max)
        x_new = _project(x_k + a * (z - x_k) + (1.0 - a) * (x_k - x_prev), x, eps, norm,
                         clip_min, clip_max)
        f_new, g_new, found, adv = evaluate(x_new, found, adv)
        ups += tf.cast(f_new > f_k, tf.float32)
        better = f_new > f_max
        x_max, g_max = tf.where(expand(better), x_new, x_max), tf.where(expand(better), g_new, g_max)
        f_max = tf.where(better, f_new, f_max)
        # Checkpoint k + 1 = w_j: condition 1 (the loss rose in fewer than a
        # fraction rho of the steps since w_{j-1}) or condition 2 (eta not
        # halved at w_{j-1} and f_max unchanged since) halves eta and restarts
        # the example from x_max.
        length = intervals[k + 1]
        check = length > 0
        halve = check & ((ups < rho * length) | (~reduced & (f_max <= f_check)))
        eta = tf.where(halve, 0.5 * eta, eta)
        x_new, g_new = tf.where(expand(halve), x_max, x_new), tf.where(expand(halve), g_max, g_new)
        f_new = tf.where(halve, f_max, f_new)
        reduced, f_check = tf.where(check, halve, reduced), tf.where(check, f_max, f_check)
        ups = tf.where(check, tf.zeros_like(ups), ups)
        return (k + 1, x_new, x_k, g_new, f_new, eta, x_max, g_max, f_max, f_check, reduced, ups,
                found, adv)

    best = best_loss = None
    for seed in tf.unstack(seeds):
        x0 = _start(x, eps, norm, seed, clip_min, clip_max)
        f0, g0, found, adv = evaluate(x0, found, adv)
        eta = tf.fill(tf.shape(f0), 2.0 * eps)  # per example: halved independently
        # As the reference implementation: no condition 2 at the first checkpoint.
        state = (tf.constant(0), x0, x0, g0, f0, eta, x0, g0, f0, f0, tf.ones_like(found),
                 tf.zeros_like(f0), found, adv)
        state = tf.while_loop(lambda k, *_: k < steps, body, state)
        x_max, f_max, found, adv = state[6], state[8], state[-2], state[-1]
        if best is None:
            best, best_loss = x_max, f_max
        else:
            better = f_max > best_loss
            best, best_loss = tf.where(expand(better), x_max, best), tf.where(better, f_max, best_loss)
    return found, adv, best


def apgd(model, images, labels, eps, *, norm="linf", loss="ce", steps=100, restarts=1, rho=0.75,
         seed=0, clip_min=0.0, clip_max=1.0):
    """Untargeted APGD (Croce & Hein 2020, Algorithm 1) on the CE or DLR loss.

    Args:
        model, images, labels, eps, norm: as for ``attacks.pgd``.
        loss: ``"ce"`` (cross-entropy) or ``"dlr"`` (eq. 6, >= 3 classes).
        steps: iterations per run (>= 1), N_iter of Algorithm 1.
        restarts: random starts (>= 1).
        rho: condition-1 threshold of the checkpoints, in [0, 1].
        seed: int or shape-(2,) int tensor for the stateless random starts;
            ``None`` draws one. The same seed gives the same result.
        clip_min, clip_max: the valid pixel range.

    Returns:
        Float32 adversarial images shaped like ``images``: per example the
        first misclassified point found (the clean image if it is already
        misclassified), else the best-loss point ``x_max`` of the best run.

    Example:
        >>> x_adv = apgd(model, x, y, eps=8 / 255, loss="dlr", seed=0)   # doctest: +SKIP
    """
    eps = _check_common(norm, eps, steps, restarts, rho)
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
    logits_fn = logit_function(model)
    x, y = _inputs(images, labels)
    if loss == "ce":
        loss_fn = lambda logits: tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits)  # noqa: E731
    else:
        loss_fn = lambda logits: dlr_loss(logits, y)  # noqa: E731
    found = tf.argmax(tf.cast(logits_fn(x), tf.float32), -1, output_type=tf.int32) != y
    seeds = tf.random.experimental.stateless_split(_as_seed(seed), restarts)
    found, adv, best = _runs(logits_fn, x, y, loss_fn, seeds, found, x, eps, norm, steps, rho,
                             clip_min, clip_max)
    return tf.where(_per_example(found, x), adv, best)


def apgd_targeted(model, images, labels, eps, *, norm="linf", steps=100, target_classes=9, first_target=2,
                  restarts=1, rho=0.75, seed=0, clip_min=0.0, clip_max=1.0):
    """APGD-T: APGD on the targeted DLR loss (eq. 7), one target class at a time.

    For ``k = first_target, ..., first_target + target_classes - 1`` the
    target of each example is the class of its k-th largest clean logit;
    each target gets ``restarts`` runs of ``steps`` iterations. Success means
    misclassification (any class). ``standard.run_suite`` calls it once per
    target (``target_classes=1``) on the images still robust, as AutoAttack
    does.

    Args:
        model, images, labels, eps, norm, steps, restarts, rho, seed,
        clip_min, clip_max: as ``apgd``.
        target_classes: how many targets (>= 1); the last target's rank
            is at most the number of classes; the model needs at least 4
            classes.
        first_target: rank of the first target (>= 2; 2 is the runner-up).

    Returns:
        Float32 images shaped like ``images``: per example the first
        misclassified point found, else the best-loss point of the last
        target's runs.

    Example:
        >>> x_adv = apgd_targeted(model, x, y, eps=0.3, target_classes=3)   # doctest: +SKIP
    """
    eps = _check_common(norm, eps, steps, restarts, rho)
    if not isinstance(target_classes, int) or isinstance(target_classes, bool) or target_classes < 1:
        raise ValueError(f"target_classes must be a positive int, got {target_classes!r}")
    if not isinstance(first_target, int) or isinstance(first_target, bool) or first_target < 2:
        raise ValueError(f"first_target must be an int >= 2 (rank 1 is the predicted class), got {first_target!r}")
    logits_fn = logit_function(model)
    x, y = _inputs(images, labels)
    clean = tf.cast(logits_fn(x), tf.float32)
    classes = clean.shape[-1]
    last = first_target + target_classes - 1
    if classes is not None and last > classes:
        raise ValueError(f"the last target's rank first_target + target_classes - 1 = {last} must be at most "
                         f"the number of classes, {classes}")
    ranked = tf.math.top_k(clean, last).indices
    found = tf.argmax(clean, -1, output_type=tf.int32) != y
    adv = best = x
    seed = _as_seed(seed)
    for k in range(first_target, last + 1):
        targets = ranked[:, k - 1]
        loss_fn = lambda logits, t=targets: targeted_dlr_loss(logits, y, t)  # noqa: E731
        seeds = tf.random.experimental.stateless_split(
            tf.random.experimental.stateless_fold_in(seed, k), restarts)
        found, adv, best = _runs(logits_fn, x, y, loss_fn, seeds, found, adv, eps, norm, steps, rho,
                                 clip_min, clip_max)
    return tf.where(_per_example(found, x), adv, best)
