"""Robustness of classifiers: reference noise, attacks, certificates, tables.

Noise protocol (shared/DESIGN.md; the published CH-NODE MNIST table): the noise
acts on *normalised* test images ``z = (x - 0.1307) / 0.3081``. Gaussian noise
with variance 0.05 and 0.2 adds ``N(0, var)`` to every value; salt & pepper
with amount 0.05 and 0.2 replaces each value, with probability ``amount``, by
salt (1) or pepper (-1), half and half. Then every value is clipped to
``[-1, 1]``. This is exactly what ``skimage.util.random_noise(z, mode,
var=|amount=)`` does to such a tensor: the tensor has negative values, so
skimage treats it as signed (pepper and lower clip -1, instead of 0 for a
non-negative tensor). ``gaussian_noise`` and ``salt_and_pepper_noise`` are that
protocol on normalised images (the sign rule included); ``reference_noise``
applies it to a pixel-space model's input ``x`` in [0, 1] as
``x' = clip(noise((x - mean) / std), -1, 1) * std + mean``, which is exactly the
input a model that normalises internally must see to receive the reference's
noisy tensor. Note what the protocol implies: ``x'`` lies in
``[mean - std, mean + std] = [-0.1774, 0.4388]``, not in [0, 1]; every stroke
pixel brighter than 0.4388 is clipped even where no noise was added, and pepper
is darker than black. Noise is stateless and seeded: the same seed, draw and
batch give the same noise.

Attacks (FGSM, PGD; in ``contractive_keras.attacks``, re-exported here) act in
pixel space before the model's normalisation.

Certificates (Tsuzuku, Sato, Sugiyama, "Lipschitz-margin training", NeurIPS
2018): if the logit map ``f`` satisfies ``||f(x) - f(x')||_2 <= L ||x - x'||_2``
(``L`` the L2 -> L2 Lipschitz constant in pixel space), then for the margin
``M(x) = f_y(x) - max_{i != y} f_i(x)`` the prediction cannot change within
``||delta||_2 < M(x) / (sqrt(2) L)``, since each logit difference moves by at
most ``sqrt(2) L ||delta||_2``. A point is *certified at L2 radius eps* iff it
is classified correctly and ``M(x) > sqrt(2) L eps``. The L-inf ball of radius
eps sits inside the L2 ball of radius ``sqrt(d) eps`` (``d`` pixels), so it is
certified iff ``M(x) > sqrt(2) L sqrt(d) eps``.

Example:

>>> from contractive_keras import robustness, zoo, data      # doctest: +SKIP
>>> model = zoo.load("chnode_mnist_n8")                       # doctest: +SKIP
>>> table = robustness.evaluate(model, data.load("mnist", "test", 500))  # doctest: +SKIP
>>> print(table.to_markdown())                                # doctest: +SKIP
"""

import collections
import math
import zlib

import numpy as np
import tensorflow as tf

from contractive_keras.attacks import LOSSES, NORMS, fgsm, logit_function, pgd
from contractive_keras.evaluate import Row, RobustnessTable

__all__ = [
    "NoiseSpec", "REFERENCE_NOISE", "REFERENCE_NORMALIZATION", "Row",
    "RobustnessTable", "certified_accuracy", "certified_radius", "evaluate",
    "fgsm", "gaussian_noise", "logit_function", "margins", "pgd",
    "reference_noise", "salt_and_pepper_noise",
]

#: Mean and standard deviation of the reference MNIST normalisation.
REFERENCE_NORMALIZATION = (0.1307, 0.3081)

#: One noise setting: ``kind`` is "gaussian" (``level`` = variance) or
#: "salt_pepper" (``level`` = amount, the fraction of values replaced).
NoiseSpec = collections.namedtuple("NoiseSpec", ["kind", "level"])

#: The four noise settings of the published table.
REFERENCE_NOISE = (
    NoiseSpec("gaussian", 0.05),
    NoiseSpec("gaussian", 0.2),
    NoiseSpec("salt_pepper", 0.05),
    NoiseSpec("salt_pepper", 0.2),
)
NOISE_KINDS = ("gaussian", "salt_pepper")
ATTACKS = ("fgsm", "pgd")


def _seed(seed):
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
    noise = tf.random.stateless_normal(tf.shape(x), _seed(seed), mean, math.sqrt(var))
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
    seed_flip, seed_salt = tf.unstack(tf.random.experimental.stateless_split(_seed(seed), 2))
    flipped = tf.random.stateless_uniform(tf.shape(x), seed_flip) < amount
    salted = tf.random.stateless_uniform(tf.shape(x), seed_salt) < salt_vs_pepper
    low = _low_clip(x, low_clip)
    out = tf.where(flipped, tf.where(salted, 1.0, low), x)
    return tf.clip_by_value(out, low, 1.0) if clip else out


def _noise(kind, images, level, seed):
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
    import keras

    layers = getattr(model, "layers", None) or []
    for layer in layers:
        if isinstance(layer, keras.layers.Rescaling):
            scale, offset = float(np.ravel(layer.scale)[0]), float(np.ravel(layer.offset)[0])
            return (-offset / scale, 1.0 / scale)
    return default


def reference_noise(pixels, kind, level, seed, *, normalization=REFERENCE_NORMALIZATION):
    """The reference noise protocol for a model that takes [0, 1] pixels.

    Normalise, add noise and clip as the reference does, un-normalise:
    ``(noise((x - mean) / std)) * std + mean``. A model that normalises
    internally with the same ``mean, std`` then sees exactly the reference's
    noisy tensor. The output is *not* in [0, 1] (see the module docstring).

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
    return _noise(kind, z, level, seed) * std + mean


def margins(logits, labels):
    """``f_y(x) - max_{i != y} f_i(x)`` per example; negative if misclassified."""
    logits = np.asarray(logits, np.float64)
    labels = np.asarray(labels, np.int64)
    true = np.take_along_axis(logits, labels[:, None], axis=1)[:, 0]
    others = logits.copy()
    np.put_along_axis(others, labels[:, None], -np.inf, axis=1)
    return true - others.max(axis=1)


def _dim_factor(norm, input_dim):
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    if norm == "l2":
        return 1.0
    if not input_dim or input_dim < 1:
        raise ValueError("norm='linf' needs the input dimension (images= or input_dim=)")
    return math.sqrt(input_dim)


def _check_lipschitz(lipschitz_constant):
    if not (isinstance(lipschitz_constant, (int, float, np.floating)) and lipschitz_constant > 0
            and math.isfinite(lipschitz_constant)):
        raise ValueError(f"lipschitz_constant must be a finite number > 0, got {lipschitz_constant!r}")
    return float(lipschitz_constant)


def certified_radius(logits, labels, lipschitz_constant, *, norm="l2", input_dim=None):
    """Per-example certified radius ``max(M, 0) / (sqrt(2) L)`` (Tsuzuku et al. 2018).

    For ``norm="linf"`` the L2 radius is divided by ``sqrt(input_dim)``.

    Args:
        logits: ``(N, C)`` logits of the clean inputs.
        labels: ``(N,)`` true labels.
        lipschitz_constant: certified upper bound ``L`` of the L2 -> L2
            Lipschitz constant of the logit map in pixel space.
        norm: "l2" or "linf", the norm of the radius.
        input_dim: number of input values per example (``linf`` only).

    Returns:
        Float64 array ``(N,)``; 0 for misclassified points.
    """
    lip = _check_lipschitz(lipschitz_constant)
    factor = _dim_factor(norm, input_dim)
    return np.maximum(margins(logits, labels), 0.0) / (math.sqrt(2.0) * lip * factor)


def certified_accuracy(model_or_logits, labels, lipschitz_constant, eps, *, norm="l2",
                       images=None, input_dim=None):
    """Fraction of points certified at radius ``eps`` (Lipschitz-margin).

    A point counts iff ``M(x) > sqrt(2) * L * eps`` (``norm="l2"``) or
    ``M(x) > sqrt(2) * L * sqrt(d) * eps`` (``norm="linf"``, ``d`` = values per
    input), with ``M`` the logit margin and ``L`` the L2 -> L2 Lipschitz
    constant of the logit map in pixel space; no input within the ball can
    change its (correct) prediction. ``eps=0`` gives the clean accuracy.

    Args:
        model_or_logits: ``(N, C)`` logits, or a model (anything
            ``logit_function`` accepts) evaluated on ``images``.
        labels: ``(N,)`` true labels.
        lipschitz_constant: ``L``, a certified *upper bound* (a lower bound or
            estimate would make the certificate false).
        eps: a radius or a sequence of radii (>= 0), in pixel units.
        norm: "l2" or "linf".
        images: the inputs, needed with a model, or for ``linf`` to read ``d``.
        input_dim: ``d`` when only logits are given and ``norm="linf"``.

    Returns:
        A float for a scalar ``eps``, else a float64 array, one per radius.

    Example:
        >>> certified_accuracy(model, y, 3.2, [0.1, 0.5], images=x)   # doctest: +SKIP
    """
    lip = _check_lipschitz(lipschitz_constant)
    if images is not None:
        input_dim = int(np.prod(np.shape(images)[1:]))
    if hasattr(model_or_logits, "shape") and not callable(model_or_logits):
        logits = np.asarray(model_or_logits)
    else:
        if images is None:
            raise ValueError("images= is required when a model is given")
        logits = logit_function(model_or_logits)(tf.convert_to_tensor(images, tf.float32))
    factor = _dim_factor(norm, input_dim)
    margin = margins(logits, labels)
    radii = np.atleast_1d(np.asarray(eps, np.float64))
    if np.any(radii < 0) or radii.ndim != 1:
        raise ValueError(f"eps must be a radius >= 0 or a sequence of them, got {eps!r}")
    certified = margin[None, :] > math.sqrt(2.0) * lip * factor * radii[:, None]
    accuracy = certified.mean(axis=1)
    return float(accuracy[0]) if np.ndim(eps) == 0 else accuracy


def _batches(dataset, batch_size):
    """A list of (float32 pixels, int32 labels) numpy batches, checked."""
    if isinstance(dataset, tf.data.Dataset):
        batches = [(np.asarray(x, np.float32), np.asarray(y, np.int32)) for x, y in dataset.as_numpy_iterator()]
    elif isinstance(dataset, (tuple, list)) and len(dataset) == 2:
        x, y = (np.asarray(a) for a in dataset)
        x = x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x.astype(np.float32)
        if x.ndim == 3:
            x = x[..., None]
        y = y.astype(np.int32)
        batches = [(x[i:i + batch_size], y[i:i + batch_size]) for i in range(0, len(x), batch_size)]
    else:
        raise TypeError("dataset must be a tf.data.Dataset of (images, labels) or a pair of arrays")
    if not batches:
        raise ValueError("dataset is empty")
    low = min(float(x.min()) for x, _ in batches)
    high = max(float(x.max()) for x, _ in batches)
    if low < 0 or high > 1:
        raise ValueError(
            f"images must be pixels in [0, 1] (the model normalises internally), got values in "
            f"[{low:.4g}, {high:.4g}]; use data.load(..., normalize=False)"
        )
    return batches


def _worst_case_rows(survived, eps, norm):
    """Accuracy under the union of all attacks at every radius <= eps.

    An example counts as robust at eps only if it stayed correctly classified
    under every attack run (each draw, each radius eps' <= eps: a perturbation
    in a smaller ball is also in the larger one). This is the per-example
    worst case over the attacks, as in attack ensembles (e.g. AutoAttack), and
    it is monotone in eps even when a single attack is not (a rugged or
    saturated loss can stall PGD at a large radius).
    """
    if not survived:
        return []
    rows = []
    for e in sorted(eps):
        flags = [v for (_, level), v in survived.items() if level <= e + 1e-12]
        robust = np.logical_and.reduce(flags)
        rows.append(Row.from_draws("worst_case", e, norm, [float(robust.mean())]))
    return rows


def evaluate(model, dataset, *, attacks=ATTACKS, eps=(0.05, 0.1, 0.2, 0.3), norm="linf", loss="margin",
             noise=REFERENCE_NOISE, draws=10, attack_draws=1, seed=0,
             normalization=REFERENCE_NORMALIZATION, pgd_steps=40, pgd_step_size=None,
             lipschitz_constant=None, batch_size=500, verbose=0):
    """Accuracy table: clean, under each noise setting, each attack and radius.

    Noise follows the reference protocol (``reference_noise``) with ``draws``
    independent draws over the whole dataset; attacks run in pixel space
    (``fgsm``, ``pgd`` with random start, ``attack_draws`` draws). With a
    ``lipschitz_constant`` the table also holds certified accuracy at each
    radius (``certified_accuracy``). Every row reports the mean and the
    sample standard deviation (ddof=1; 0 for one draw) of the per-draw
    accuracies. Randomness is stateless: the noise and PGD starts depend only
    on (``seed``, setting, draw, batch index), so the same seed and batching
    reproduce the table; clean, FGSM and certified rows are deterministic.
    With attacks, ``worst_case`` rows give the accuracy under the union of all
    attacks at every radius <= eps (``_worst_case_rows``).

    Args:
        model: anything ``attacks.logit_function`` accepts (Keras model,
            ``.keras`` path, SavedModel or its directory, callable).
        dataset: ``tf.data.Dataset`` of ``(pixels in [0, 1], labels)``, or a
            pair ``(images, labels)`` of arrays (uint8 images are scaled).
        attacks: subset of ``("fgsm", "pgd")`` (or a comma-separated string).
        eps: attack (and certificate) radii in pixel units.
        norm: "linf" or "l2", the attack and certificate norm.
        loss: attack objective, "margin" (default: it does not saturate, see
            ``attacks.LOSSES``) or "ce" (the cross-entropy of the papers).
        noise: sequence of ``NoiseSpec``; default ``REFERENCE_NOISE``.
        draws: noise draws (>= 1). attack_draws: PGD random-start draws.
        seed: base seed of all randomness (int).
        normalization: the model's ``(mean, std)`` for the noise protocol.
        pgd_steps, pgd_step_size: PGD settings (``pgd``'s defaults).
        lipschitz_constant: optional certified L2 Lipschitz bound of the logits.
        batch_size: batch size when ``dataset`` is a pair of arrays.
        verbose: 1 shows a ``keras.utils.Progbar``.

    Returns:
        A ``RobustnessTable``.

    Example:
        >>> table = evaluate(model, (x_test, y_test), draws=2)   # doctest: +SKIP
        >>> table.lookup("gaussian", 0.2).mean                    # doctest: +SKIP
    """
    import keras

    if isinstance(attacks, str):
        attacks = tuple(a.strip() for a in attacks.split(",") if a.strip())
    unknown = set(attacks) - set(ATTACKS)
    if unknown:
        raise ValueError(f"unknown attacks {sorted(unknown)}; allowed: {ATTACKS}")
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
    for name, value in (("draws", draws), ("attack_draws", attack_draws)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    eps = tuple(float(e) for e in eps)
    if any(not e >= 0 for e in eps):
        raise ValueError(f"eps must be >= 0, got {eps}")
    noise = tuple(NoiseSpec(*spec) for spec in noise)
    for spec in noise:
        if spec.kind not in NOISE_KINDS:
            raise ValueError(f"noise kind must be one of {NOISE_KINDS}, got {spec.kind!r}")
    batches = _batches(dataset, batch_size)
    logits_fn = logit_function(model)
    n = sum(len(y) for _, y in batches)

    @tf.function(reduce_retracing=True)
    def is_correct(x, y):
        return tf.argmax(logits_fn(x), -1, output_type=tf.int32) == y

    def noisy(kind, level):
        return tf.function(lambda x, y, s: reference_noise(x, kind, level, s, normalization=normalization),
                           reduce_retracing=True)

    def attacked(name, e):
        if name == "fgsm":
            return tf.function(lambda x, y, s: fgsm(logits_fn, x, y, e, norm=norm, loss=loss),
                               reduce_retracing=True)
        return tf.function(lambda x, y, s: pgd(logits_fn, x, y, e, norm=norm, loss=loss, steps=pgd_steps,
                                               step_size=pgd_step_size, seed=s), reduce_retracing=True)

    settings = [("clean", 0.0, None, 1, lambda x, y, s: x)]
    settings += [(k, lv, None, draws, noisy(k, lv)) for k, lv in noise]
    for name in attacks:
        n_draws = attack_draws if name == "pgd" else 1
        settings += [(name, e, norm, n_draws, attacked(name, e)) for e in eps]
    progbar = keras.utils.Progbar(sum(s[3] for s in settings) * len(batches), verbose=verbose)
    fold_in = tf.random.experimental.stateless_fold_in
    rows = []
    survived = {}  # (attack, eps) -> per-example "correct in every draw"
    for kind, level, row_norm, n_draws, transform in settings:
        # One stateless seed per (seed, setting, draw, batch): a setting's
        # draws do not depend on which other settings are evaluated.
        setting_id = zlib.crc32(f"{kind}/{level!r}/{row_norm}".encode()) & 0x7FFFFFFF
        accuracies, always = [], np.ones(n, bool)
        for draw in range(n_draws):
            flags = []
            for b, (x, y) in enumerate(batches):
                s = fold_in(fold_in(fold_in(tf.constant([int(seed), 0]), setting_id), draw), b)
                x, y = tf.constant(x), tf.constant(y)
                flags.append(np.asarray(is_correct(transform(x, y, s), y)))
                progbar.add(1)
            flags = np.concatenate(flags)
            always &= flags
            accuracies.append(float(flags.mean()))
        rows.append(Row.from_draws(kind, level, row_norm, accuracies))
        if kind in ATTACKS:
            survived[(kind, level)] = always
    rows += _worst_case_rows(survived, eps, norm)
    if lipschitz_constant is not None:
        labels = np.concatenate([y for _, y in batches])
        logits = np.concatenate([np.asarray(logits_fn(tf.constant(x))) for x, _ in batches])
        d = int(np.prod(batches[0][0].shape[1:]))
        accuracies = certified_accuracy(logits, labels, lipschitz_constant, eps, norm=norm, input_dim=d)
        rows += [Row.from_draws("certified", e, norm, [a]) for e, a in zip(eps, accuracies)]
    metadata = {"n_examples": n, "draws": draws, "attack_draws": attack_draws, "seed": seed,
                "normalization": list(normalization), "attack_loss": loss, "pgd_steps": pgd_steps,
                "pgd_step_size": pgd_step_size, "lipschitz_constant": lipschitz_constant}
    return RobustnessTable(rows, metadata)
