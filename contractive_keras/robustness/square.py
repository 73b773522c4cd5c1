"""Square attack: a score-based, gradient-free attack in pixel space, L-inf and L2.

The Square attack (Andriushchenko et al. 2020) is a random search on the
margin loss ``L(x) = z_y(x) - max_{j != y} z_j(x)`` of the logits ``z``: each
query proposes a change of the current perturbation inside one random square
window and keeps it iff the margin decreases. It reads only the logits, never a
gradient, so it is not fooled by gradient masking (a zero, undefined or
saturated gradient): an attack to run beside FGSM / PGD (``attacks``) when the
gradient attacks may fail for the wrong reason.

As in ``attacks``, radii are in pixel units of the model's input, every
returned image lies in the eps-ball around its clean image and in
``[clip_min, clip_max]``, and ``model`` is anything ``logit_function``
accepts. ``queries`` counts the model evaluations per image after the clean
one: the initial point and ``queries - 1`` random-search steps. An image stops
being queried as soon as it is misclassified (margin <= 0, as the reference).
Per image the best point found is returned, or the clean image if no point
lowered its margin: the returned margin is never above the clean margin.

Randomness is stateless (``tf.random.stateless_*``): the seed is split into
one seed for the initialisation and one for the steps, folded with the step
index; the same seed gives the same images.

References:
    M. Andriushchenko, F. Croce, N. Flammarion, M. Hein, "Square Attack: a
    query-efficient black-box adversarial attack via random search", ECCV
    2020 (Algorithm 1: the random search; Algorithm 2: the L-inf sampling
    distribution; Algorithm 3: the L2 sampling distribution). The schedule of
    the square size and the L2 initialisation follow the authors' reference
    implementation (github.com/max-andr/square-attack).

Example:

>>> from contractive_keras.robustness.square import square           # doctest: +SKIP
>>> x_adv = square(model, x, y, eps=0.1, queries=1000, seed=0)         # doctest: +SKIP
>>> x_adv = square(model, x, y, eps=2.0, norm="l2", queries=1000)      # doctest: +SKIP
"""

import math

import numpy as np
import tensorflow as tf

from contractive_keras.robustness.attacks import (
    _as_seed, _check_eps, _flat_l2_norm, _inputs, _project, attack_loss)
from contractive_keras.robustness.loading import logit_function
from contractive_keras.robustness.norms import check_norm

__all__ = ["square", "square_fraction"]

# p halves after these iterations of a 10000-iteration run (the reference's schedule).
_HALVINGS = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)
# L-inf: sign vectors drawn per step; the first that changes the window is used
# (the reference redraws until one does; all 16 fail with probability <= 2^-16).
_SIGN_DRAWS = 16
_TINY = 1e-12


def _is_int(value):
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _check_queries(queries):
    if not _is_int(queries) or queries < 1:
        raise ValueError(f"queries must be a positive int, got {queries!r}")


def _check_p_init(p_init):
    if isinstance(p_init, bool) or not isinstance(p_init, (int, float)) or not 0 < p_init <= 1:
        raise ValueError(f"p_init must be a number in (0, 1], got {p_init!r}")


def square_fraction(p_init, query, queries):
    """The fraction ``p`` of pixels in the square at step ``query`` of ``queries``.

    The reference's piecewise-constant schedule: ``p_init``, halved after each of
    the iterations 10, 50, 200, 500, 1000, 2000, 4000, 6000 and 8000 of a
    10000-iteration run; a run of ``queries`` rescales the step to
    ``floor(query * 10000 / queries)`` (computed exactly in integers).

    Args:
        p_init: the initial fraction, in (0, 1].
        query: the step, an int in ``[0, queries)``.
        queries: the length of the run (>= 1).
    """
    _check_p_init(p_init)
    _check_queries(queries)
    if not _is_int(query) or not 0 <= query < queries:
        raise ValueError(f"query must be an int in [0, queries={queries}), got {query!r}")
    iteration = int(query) * 10000 // int(queries)
    return p_init / 2 ** sum(iteration > t for t in _HALVINGS)


def _side(p, height, width, norm):
    """Square side ``round(sqrt(p H W))`` in ``[1, min(H, W) - 1]``; L2: odd and >= 3 (reference)."""
    side, top = round(math.sqrt(p * height * width)), min(height, width) - 1
    if norm == "linf":
        return min(max(side, 1), top)
    side = max(side, 3)
    side += 1 - side % 2
    return min(side, top if top % 2 else max(top - 1, 1))


def _eta(a, b):
    """The paper's ``eta^(a, b)`` (Sec. 3.2), unit norm: concentric rectangles
    around ``(a // 2, b // 2)``, entry ``sum_{k=d}^{m} (k + 1)^-2`` at Chebyshev
    distance ``d`` from the centre, ``m = max(a // 2, b // 2)``."""
    m = max(a // 2, b // 2)
    cumulative = np.concatenate([[0.0], np.cumsum(1.0 / np.arange(1, m + 2) ** 2)])
    d = np.maximum(np.abs(np.arange(a) - a // 2)[:, None], np.abs(np.arange(b) - b // 2)[None, :])
    value = cumulative[m + 1] - cumulative[d]
    return value / max(np.linalg.norm(value), _TINY)


def _pulse(side):
    """Algorithm 3's meta-pulse of a square side: ``eta`` on the top half, ``-eta`` below, unit norm."""
    pulse = np.concatenate([_eta(side // 2, side), -_eta(side - side // 2, side)])
    return (pulse / np.linalg.norm(pulse)).astype(np.float32)


def _uniform_ints(seed, shape, maxval, idx):
    """Stateless ints in ``[0, maxval)`` drawn for the whole batch, then the rows ``idx``."""
    return tf.gather(tf.random.stateless_uniform(shape, seed, 0, maxval, tf.int32), idx)


def _window(rows, cols, height, width, side):
    """Masks ``(n, H, W, 1)`` of the squares ``[r, r + s) x [c, c + s)``, and the local coordinates."""
    i = tf.range(height)[None, :, None] - rows[:, None, None]
    j = tf.range(width)[None, None, :] - cols[:, None, None]
    return ((i >= 0) & (i < side) & (j >= 0) & (j < side))[..., None], i, j


def _window_norm(t):
    """L2 norm over height and width, per image and channel."""
    return tf.sqrt(tf.reduce_sum(tf.square(t), axis=(1, 2), keepdims=True))


def _linf_init(x, eps, seed, clip_min, clip_max):
    """Algorithm 2's initialisation: vertical stripes of +-eps (one sign per column and channel)."""
    n, _, width, channels = x.shape
    signs = tf.random.stateless_uniform([n, 1, width, channels], seed, 0, 2, tf.int32)
    return _project(x + eps * (2.0 * tf.cast(signs, tf.float32) - 1.0), x, eps, "linf", clip_min, clip_max)


def _linf_step(xs, best, eps, side, seed, idx, shape, clip_min, clip_max):
    """Algorithm 2: in a random s x s window (same for all channels) set channel c to
    ``clip(x +- eps)``, one random sign per channel, a sign vector that changes the window."""
    n, height, width, channels = shape
    seeds = tf.unstack(tf.random.experimental.stateless_split(seed, 3))
    rows = _uniform_ints(seeds[0], [n], height - side + 1, idx)
    cols = _uniform_ints(seeds[1], [n], width - side + 1, idx)
    plus = _uniform_ints(seeds[2], [n, _SIGN_DRAWS, channels], 2, idx) > 0
    inside, _, _ = _window(rows, cols, height, width, side)
    up = tf.clip_by_value(xs + eps, clip_min, clip_max)
    down = tf.clip_by_value(xs - eps, clip_min, clip_max)

    def unchanged(target):  # (n, C): the channel's window already holds target (reference: 1e-7)
        return tf.reduce_all((tf.abs(target - best) < 1e-7) | ~inside, axis=(1, 2))

    same_up, same_down = unchanged(up), unchanged(down)
    no_op = tf.reduce_all(tf.where(plus, same_up[:, None], same_down[:, None]), axis=2)
    first = tf.argmax(tf.cast(~no_op, tf.int32), axis=1, output_type=tf.int32)
    plus = tf.gather(plus, first, batch_dims=1)[:, None, None, :]
    return tf.where(inside, tf.where(plus, up, down), best)


def _l2_init(x, eps, seed, clip_min, clip_max):
    """The L2 initialisation (reference): a centred grid of ``H // 5``-blocks, each a meta-pulse
    with a random sign per channel and a random transposition, scaled to norm eps."""
    n, height, width, channels = x.shape
    block = max(min(height, width) // 5, 1)
    rows, cols = height // block, width // block
    seed_sign, seed_flip = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    signs = tf.random.stateless_uniform([n, rows, cols, channels], seed_sign, 0, 2, tf.int32)
    flip = tf.random.stateless_uniform([n, rows, cols, 1], seed_flip, 0, 2, tf.int32) > 0

    def blocks(t):
        return tf.repeat(tf.repeat(t, block, axis=1), block, axis=2)

    pulse = _pulse(block)
    tiles = tf.where(blocks(flip), np.tile(pulse.T, (rows, cols))[..., None],
                     np.tile(pulse, (rows, cols))[..., None])
    delta = tiles * blocks(2.0 * tf.cast(signs, tf.float32) - 1.0)
    top, left = (height - rows * block) // 2, (width - cols * block) // 2
    delta = tf.pad(delta, [[0, 0], [top, height - top - rows * block],
                           [left, width - left - cols * block], [0, 0]])
    x_init = x + eps * delta / tf.maximum(_flat_l2_norm(delta), _TINY)
    return _project(x_init, x, eps, "l2", clip_min, clip_max)


def _l2_step(xs, best, eps, side, pulse, seed, idx, shape, clip_min, clip_max):
    """Algorithm 3: move the perturbation's mass in window 2 and window 1 into window 1, as
    ``old / ||old|| + sign * pulse`` per channel rescaled to the available norm; then rescale
    the whole perturbation to norm eps and clip to the box."""
    n, height, width, channels = shape
    seeds = tf.unstack(tf.random.experimental.stateless_split(seed, 6))
    rows, cols = [_uniform_ints(seeds[k], [n], size - side + 1, idx)
                  for k, size in ((0, height), (1, width))]
    rows2, cols2 = [_uniform_ints(seeds[k], [n], size - side + 1, idx)
                    for k, size in ((2, height), (3, width))]
    signs = 2.0 * tf.cast(_uniform_ints(seeds[4], [n, channels], 2, idx), tf.float32) - 1.0
    flip = (_uniform_ints(seeds[5], [n], 2, idx) > 0)[:, None, None]
    inside, i, j = _window(rows, cols, height, width, side)
    inside2, _, _ = _window(rows2, cols2, height, width, side)
    # The pulse at local coordinates (i, j) of window 1, transposed where flip.
    size = pulse.shape[0]
    local_i = tf.clip_by_value(tf.where(flip, j, i), 0, size - 1)
    local_j = tf.clip_by_value(tf.where(flip, i, j), 0, size - 1)
    new_pulse = tf.gather(tf.reshape(pulse, [-1]), local_i * size + local_j)[..., None]
    window, both = tf.cast(inside, tf.float32), tf.cast(inside | inside2, tf.float32)
    delta = best - xs
    old = delta * window
    new = new_pulse * window * signs[:, None, None, :] + old / (1e-10 + _window_norm(old))
    room = (tf.maximum(eps**2 - tf.square(_flat_l2_norm(delta)), 0.0) / channels
            + tf.square(_window_norm(delta * both)))
    new = new / tf.maximum(_window_norm(new), _TINY) * tf.sqrt(room)
    delta = delta * (1.0 - both) + new
    x_new = xs + eps * delta / tf.maximum(_flat_l2_norm(delta), _TINY)
    return _project(x_new, xs, eps, "l2", clip_min, clip_max)


def square(model, images, labels, eps, *, norm="linf", queries=5000, p_init=0.8, seed=0,
           clip_min=0.0, clip_max=1.0):
    """Untargeted Square attack (Algorithm 1) with the margin loss ``z_y - max_{j != y} z_j``.

    Starts from Algorithm 2's (L-inf) or the reference's (L2) initial point,
    then for ``queries - 1`` steps proposes a new point in the eps-ball (a
    random square of side ``round(sqrt(p H W))``, ``p = square_fraction(...)``)
    and keeps it iff the margin decreases. An image is no longer queried once
    misclassified. Uses only logits, no gradient.

    Args:
        model: anything ``logit_function`` accepts; it must return logits ``(N, C)``.
        images: float32 images ``(N, H, W, C)`` (NHWC, ``H, W >= 2``) in
            ``[clip_min, clip_max]``.
        labels: integer labels ``(N,)`` in ``[0, C)``.
        eps: radius in pixel units (>= 0).
        norm: ``"linf"`` or ``"l2"`` (over all values of one image).
        queries: model evaluations per image after the clean one (>= 1).
        p_init: initial fraction of pixels in the square, in (0, 1].
        seed: int or shape-(2,) int tensor for the stateless draws; ``None``
            draws one. The same seed gives the same result.
        clip_min, clip_max: the valid pixel range.

    Returns:
        A float32 tensor of adversarial images, shape of ``images``: per image
        the point of lowest margin found, or the clean image if none was lower.

    Example:
        >>> x_adv = square(model, x, y, eps=0.1, queries=1000, seed=0)   # doctest: +SKIP
    """
    check_norm(norm)
    eps = _check_eps(eps)
    _check_queries(queries)
    _check_p_init(p_init)
    seed = _as_seed(seed)
    for name, value in (("clip_min", clip_min), ("clip_max", clip_max)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number, got {value!r}")
    if not clip_min < clip_max:
        raise ValueError(f"clip_min must be below clip_max, got {clip_min!r} and {clip_max!r}")
    x, y = _inputs(images, labels)
    if x.shape.rank != 4:
        raise ValueError(f"images must be 4-D (N, H, W, C), got shape {tuple(x.shape)}")
    n, height, width, channels = x.shape
    if height < 2 or width < 2:
        raise ValueError(f"images must be at least 2 x 2 pixels, got H={height}, W={width}")
    if tuple(y.shape) != (n,):
        raise ValueError(f"labels must have shape ({n},), one per image, got {tuple(y.shape)}")
    if n == 0:
        return x
    if tf.reduce_min(x) < clip_min or tf.reduce_max(x) > clip_max:
        raise ValueError(f"images must lie in [clip_min, clip_max] = [{clip_min}, {clip_max}], got "
                         f"values in [{float(tf.reduce_min(x))}, {float(tf.reduce_max(x))}]")
    clip_min, clip_max = float(clip_min), float(clip_max)
    logits_fn = logit_function(model)
    logits = tf.cast(logits_fn(x), tf.float32)
    if logits.shape.rank != 2 or logits.shape[0] != n:
        raise ValueError(f"model must return logits of shape ({n}, classes), got {tuple(logits.shape)}")
    if tf.reduce_min(y) < 0 or tf.reduce_max(y) >= logits.shape[1]:
        raise ValueError(f"labels must be in [0, {logits.shape[1]}), got values in "
                         f"[{int(tf.reduce_min(y))}, {int(tf.reduce_max(y))}]")
    clean = -attack_loss(logits, y, "margin")
    if not tf.reduce_any(clean > 0):
        return x  # every image is already misclassified

    sides = [_side(square_fraction(p_init, q, queries), height, width, norm) for q in range(queries - 1)]
    distinct = sorted(set(sides)) or [1]
    phases = tf.constant([distinct.index(s) for s in sides] or [0], tf.int32)
    sides_t = tf.constant(sides or [1], tf.int32)
    pulses = np.zeros([len(distinct), max(distinct), max(distinct)], np.float32)
    for k, side in enumerate(distinct):
        pulses[k, :side, :side] = _pulse(side)
    init_seed, step_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    shape = (n, height, width, channels)

    def margin(x_query, y_query):
        return -attack_loss(tf.cast(logits_fn(x_query), tf.float32), y_query, "margin")

    def step(i, best, margins):
        idx = tf.where(margins > 0)[:, 0]
        xs, bests = tf.gather(x, idx), tf.gather(best, idx)
        side, seed_i = sides_t[i], tf.random.experimental.stateless_fold_in(step_seed, i)
        if norm == "linf":
            x_new = _linf_step(xs, bests, eps, side, seed_i, idx, shape, clip_min, clip_max)
        else:
            x_new = _l2_step(xs, bests, eps, side, tf.gather(pulses, phases[i]), seed_i, idx,
                             shape, clip_min, clip_max)
        new = margin(x_new, tf.gather(y, idx))
        better = new < tf.gather(margins, idx)
        where = tf.boolean_mask(idx, better)[:, None]
        best = tf.tensor_scatter_nd_update(best, where, tf.boolean_mask(x_new, better))
        margins = tf.tensor_scatter_nd_update(margins, where, tf.boolean_mask(new, better))
        return i + 1, best, margins

    def attack():
        init = _linf_init if norm == "linf" else _l2_init
        start = init(x, eps, init_seed, clip_min, clip_max)
        idx = tf.where(clean > 0)[:, 0]
        margins = tf.tensor_scatter_nd_update(clean, idx[:, None], margin(tf.gather(start, idx),
                                                                           tf.gather(y, idx)))
        best = tf.where((clean > 0)[:, None, None, None], start, x)
        _, best, margins = tf.while_loop(
            lambda i, _, m: (i < queries - 1) & tf.reduce_any(m > 0), step,
            (tf.constant(0), best, margins))
        return tf.where((margins < clean)[:, None, None, None], best, x)

    # A concrete function: traced once per call, without tf.function's retracing warning.
    return tf.function(attack).get_concrete_function()()
