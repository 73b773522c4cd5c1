"""The reference noise protocol: Gaussian and salt & pepper noise on normalised images.

The published CH-NODE MNIST table (shared/DESIGN.md) adds noise to *normalised*
test images ``z = (x - mean) / std``: Gaussian noise of variance 0.05 and 0.2
adds ``N(0, var)`` to every value; salt & pepper of amount 0.05 and 0.2
replaces each value, with probability ``amount``, by salt (1) or pepper (-1),
half and half; then every value is clipped to ``[-1, 1]``. That is
``skimage.util.random_noise(z, mode, var=|amount=)`` on such a tensor: it has
negative values, so skimage treats it as signed (pepper and lower clip -1,
instead of 0 for a non-negative tensor).

``gaussian_noise`` and ``salt_and_pepper_noise`` compute that protocol (the
sign rule included); ``reference_noise`` applies it to a model that takes
pixels ``x`` in [0, 1] and normalises internally:
``x' = clip(noise((x - mean) / std), -1, 1) * std + mean``, so the model sees
exactly the reference's noisy tensor. ``x'`` lies in ``[mean - std, mean + std]``,
not in [0, 1]. Noise is stateless and seeded: the same seed and shape give the
same noise.
"""

import collections
import math

import keras
import numpy as np
import tensorflow as tf

from contractive_keras.datasets import NORMALIZATION

__all__ = [
    "NOISE_KINDS", "NoiseSpec", "REFERENCE_NOISE", "REFERENCE_NORMALIZATION", "apply_noise",
    "gaussian_noise", "model_normalization", "reference_noise", "salt_and_pepper_noise",
    "stateless_seed",
]

#: The reference experiment's MNIST ``(mean, std)``; an alias of
#: ``datasets.NORMALIZATION["mnist"]``, where the dataset statistics are defined.
REFERENCE_NORMALIZATION = NORMALIZATION["mnist"]

#: One noise setting: ``kind`` is "gaussian" (``level`` = variance) or
#: "salt_pepper" (``level`` = amount, the fraction of values replaced).
NoiseSpec = collections.namedtuple("NoiseSpec", ["kind", "level"])

NOISE_KINDS = ("gaussian", "salt_pepper")

#: The four noise settings of the published table.
REFERENCE_NOISE = (
    NoiseSpec("gaussian", 0.05),
    NoiseSpec("gaussian", 0.2),
    NoiseSpec("salt_pepper", 0.05),
    NoiseSpec("salt_pepper", 0.2),
)


def stateless_seed(seed):
    """A shape-(2,) int32 seed for ``tf.random.stateless_*`` from an int or a pair."""
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
        return tf.constant([int(seed), 0], tf.int32)
    seed = tf.cast(tf.convert_to_tensor(seed), tf.int32)
    if seed.shape != (2,):
        raise ValueError(f"seed must be an int or a shape-(2,) int tensor, got shape {seed.shape}")
    return seed


def _low_clip(images, low_clip):
    # skimage.util.random_noise: signed (low -1) iff the tensor has a negative value.
    if low_clip is None:
        return tf.where(tf.reduce_min(images) < 0, -1.0, 0.0)
    return tf.constant(float(low_clip))


def gaussian_noise(images, var, seed, *, mean=0.0, clip=True, low_clip=None):
    """Additive Gaussian noise, as ``skimage.util.random_noise(mode="gaussian")``.

    ``out = clip(images + N(mean, var), low_clip, 1)``.

    Args:
        images: float tensor (normalised images in the reference protocol).
        var: variance of the noise (>= 0), not its standard deviation.
        seed: int or shape-(2,) int tensor (stateless: same seed, same noise).
        mean: mean of the noise.
        clip: clip the result to ``[low_clip, 1]``.
        low_clip: lower clip value; ``None`` follows skimage: -1 if ``images``
            (the whole tensor) has a negative value, else 0.

    Returns:
        A float32 tensor shaped like ``images``.

    Example:
        >>> z_noisy = gaussian_noise(z, 0.05, seed=0)     # doctest: +SKIP
    """
    if not var >= 0:
        raise ValueError(f"var must be >= 0, got {var!r}")
    x = tf.convert_to_tensor(images, tf.float32)
    noise = tf.random.stateless_normal(tf.shape(x), stateless_seed(seed), mean, math.sqrt(var))
    out = x + noise
    return tf.clip_by_value(out, _low_clip(x, low_clip), 1.0) if clip else out


def salt_and_pepper_noise(images, amount, seed, *, salt_vs_pepper=0.5, clip=True, low_clip=None):
    """Salt & pepper noise, as ``skimage.util.random_noise(mode="s&p")``.

    Each value is flipped with probability ``amount``; a flipped value becomes
    1 (salt) with probability ``salt_vs_pepper``, else ``low_clip`` (pepper).
    Then, like skimage, the whole result is clipped to ``[low_clip, 1]``.

    Args:
        images: float tensor (normalised images in the reference protocol).
        amount: probability of flipping a value, in [0, 1].
        seed: int or shape-(2,) int tensor.
        salt_vs_pepper: fraction of flips that are salt, in [0, 1].
        clip: clip the result to ``[low_clip, 1]``.
        low_clip: pepper value and lower clip; ``None``: -1 if ``images`` has
            a negative value, else 0 (skimage's rule).

    Returns:
        A float32 tensor shaped like ``images``.
    """
    for name, p in (("amount", amount), ("salt_vs_pepper", salt_vs_pepper)):
        if not 0 <= p <= 1:
            raise ValueError(f"{name} must be in [0, 1], got {p!r}")
    x = tf.convert_to_tensor(images, tf.float32)
    seed_flip, seed_salt = tf.unstack(tf.random.experimental.stateless_split(stateless_seed(seed), 2))
    flipped = tf.random.stateless_uniform(tf.shape(x), seed_flip) < amount
    salted = tf.random.stateless_uniform(tf.shape(x), seed_salt) < salt_vs_pepper
    low = _low_clip(x, low_clip)
    out = tf.where(flipped, tf.where(salted, 1.0, low), x)
    return tf.clip_by_value(out, low, 1.0) if clip else out


def apply_noise(kind, images, level, seed):
    """``gaussian_noise`` (``kind="gaussian"``) or ``salt_and_pepper_noise`` ("salt_pepper")."""
    if kind == "gaussian":
        return gaussian_noise(images, level, seed)
    if kind == "salt_pepper":
        return salt_and_pepper_noise(images, level, seed)
    raise ValueError(f"noise kind must be one of {NOISE_KINDS}, got {kind!r}")


def model_normalization(model, default=REFERENCE_NORMALIZATION):
    """The ``(mean, std)`` a Keras model normalises its [0, 1] pixels with.

    Read from its first ``keras.layers.Rescaling`` layer (``models.build``
    names it "normalize"): ``z = scale * x + offset`` means
    ``mean = -offset / scale`` and ``std = 1 / scale``. ``default`` when the
    model has none (e.g. a SavedModel). The noise protocol must use the
    model's own normalisation, whatever the dataset's statistics are.
    """
    for layer in getattr(model, "layers", None) or []:
        if isinstance(layer, keras.layers.Rescaling):
            scale, offset = float(np.ravel(layer.scale)[0]), float(np.ravel(layer.offset)[0])
            return (-offset / scale, 1.0 / scale)
    return default


def reference_noise(pixels, kind, level, seed, *, normalization=REFERENCE_NORMALIZATION):
    """The reference noise protocol for a model that takes [0, 1] pixels.

    Normalise, add noise and clip as the reference does, un-normalise:
    ``noise((x - mean) / std) * std + mean``. A model that normalises
    internally with the same ``mean, std`` then sees exactly the reference's
    noisy tensor. The output lies in ``[mean - std, mean + std]``, not in [0, 1].

    Args:
        pixels: float images in [0, 1].
        kind: "gaussian" (``level`` = variance) or "salt_pepper" (amount).
        level: variance or amount.
        seed: int or shape-(2,) int tensor.
        normalization: the model's ``(mean, std)``.

    Returns:
        A float32 tensor shaped like ``pixels``.

    Example:
        >>> x_noisy = reference_noise(x, "gaussian", 0.2, seed=3)   # doctest: +SKIP
    """
    mean, std = normalization
    z = (tf.convert_to_tensor(pixels, tf.float32) - mean) / std
    return apply_noise(kind, z, level, seed) * std + mean
