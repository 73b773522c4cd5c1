"""The evaluation driver: one ``RobustnessTable`` of clean, noisy, attacked and certified accuracy.

``evaluate(model, dataset)`` runs every setting over the whole dataset:
the reference noise protocol (``noise.reference_noise``, ``draws`` draws),
FGSM and PGD (``attacks``) at each radius, the standard worst-case suite
(``standard``: APGD-CE, APGD-T, Square; the one "robust accuracy"), the
per-example union of everything run (``worst_case``), the masking checks
(``masking``) and certified accuracy (``certified.certified_accuracy``),
from a given Lipschitz bound of the logits or from the model's own certificate
(``lipschitz_constant="certify"``). Randomness is stateless: one seed per
(``seed``, setting, draw, batch), so a table is reproducible.

Example:

>>> from contractive_keras import robustness, zoo, data      # doctest: +SKIP
>>> model = zoo.load("chnode_mnist_n8")                       # doctest: +SKIP
>>> table = robustness.evaluate(model, data.load("mnist", "test", 500))  # doctest: +SKIP
>>> print(table.to_markdown())                                # doctest: +SKIP
"""

import os
import zlib

import keras
import numpy as np
import tensorflow as tf

from contractive_keras.robustness.attacks import LOSSES, fgsm, pgd
from contractive_keras.robustness.certified import certified_accuracy
from contractive_keras.robustness.loading import load_model, logit_function
from contractive_keras.robustness.masking import diagnose
from contractive_keras.robustness.noise import (
    NOISE_KINDS, REFERENCE_NOISE, REFERENCE_NORMALIZATION, NoiseSpec, reference_noise)
from contractive_keras.robustness.norms import NORMS
from contractive_keras.robustness.standard import SUITES, run_suite, stronger_suite
from contractive_keras.robustness.table import RobustnessTable, Row

__all__ = ["ATTACKS", "evaluate"]

#: Single attacks (the papers' protocols) and the worst-case suites
#: (``standard.SUITES``: "standard" is the package's one robust accuracy,
#: "quick" an upper bound of it for monitoring).
SINGLE_ATTACKS = ("fgsm", "pgd")
ATTACKS = SINGLE_ATTACKS + tuple(SUITES)


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
    it is monotone in eps even when a single attack is not.
    """
    if not survived:
        return []
    rows = []
    for e in sorted(eps):
        flags = [v for (_, level), v in survived.items() if level <= e + 1e-12]
        robust = np.logical_and.reduce(flags)
        rows.append(Row.from_draws("worst_case", e, norm, [float(robust.mean())]))
    return rows


def large_radius(norm, input_dim):
    """A radius whose ball around any image covers the pixel box [0, 1]^d (masking check 3)."""
    return 1.0 if norm == "linf" else float(np.sqrt(input_dim))


def _diagnostic_runs(logits_fn, x, y, results, suite, norm, seed, take, batch_size):
    """The large-radius run and the stronger-attack runs on the first ``take`` images."""
    x, y = x[:take], y[:take]
    large = run_suite(logits_fn, x, y, large_radius(norm, x[0].size), norm=norm, suite=suite, seed=seed,
                      batch_size=batch_size)
    stronger = []
    for r in results:
        robust = np.flatnonzero(r.robust[:take])
        if robust.size == 0:
            continue
        strong = run_suite(logits_fn, x[robust], y[robust], r.eps, norm=norm, suite=stronger_suite(suite),
                           seed=seed + 1, batch_size=batch_size)
        n = len(y)
        stronger.append((f"{suite} {norm} eps {r.eps:g}", n, robust.size / n, int(strong.robust.sum()) / n))
    return large, tuple(stronger)


def _check_settings(attacks, eps, norm, loss, noise, draws, attack_draws):
    """The validated ``(attacks, eps, noise)``; raises ``ValueError`` naming the bad value."""
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
    return tuple(attacks), eps, noise


def evaluate(model, dataset, *, attacks=("standard",), eps=(0.05, 0.1, 0.2, 0.3), norm="linf", loss="margin",
             noise=REFERENCE_NOISE, draws=10, attack_draws=1, seed=0,
             normalization=REFERENCE_NORMALIZATION, pgd_steps=40, pgd_step_size=None,
             lipschitz_constant=None, batch_size=500, diagnostics_take=200, verbose=0):
    """Accuracy table: clean, under each noise setting, each attack and radius.

    Noise follows the reference protocol (``reference_noise``) with ``draws``
    independent draws over the whole dataset; attacks run in pixel space
    (``fgsm``, ``pgd`` with random start, ``attack_draws`` draws). With a
    ``lipschitz_constant`` the table also holds certified accuracy at each
    radius: for a number ``L``, ``certified_accuracy`` on the logits (margin >
    sqrt(2) L eps, times sqrt(d) for ``linf``); for ``"certify"``, the Keras
    model's own certificate (``certify.certified_radius``, the tightest
    read-out bound it can certify). Every row reports the mean and the sample
    standard deviation (ddof=1; 0 for one draw) of the per-draw accuracies.
    The noise and PGD starts depend only on (``seed``, setting, draw, batch
    index), so the same seed and batching reproduce the table; clean, FGSM
    and certified rows are deterministic. With attacks, ``worst_case`` rows
    give the accuracy under the union of all attacks at every radius <= eps.

    Args:
        model: anything ``logit_function`` accepts (Keras model, ``.keras``
            path, SavedModel or its directory, callable).
        dataset: ``tf.data.Dataset`` of ``(pixels in [0, 1], labels)``, or a
            pair ``(images, labels)`` of arrays (uint8 images are scaled).
        attacks: subset of ``ATTACKS`` (or a comma-separated string):
            "fgsm", "pgd" (single attacks, the papers' protocols), "standard"
            (the worst case over APGD-CE, APGD-T and Square, the one robust
            accuracy this package reports) and "quick" (its cheap upper
            bound). Suites add rows of their own kind, and every evaluation
            with attacks runs the masking checks (``masking.diagnose``),
            kept in ``metadata["masking"]``.
        eps: attack (and certificate) radii in pixel units.
        norm: "linf" or "l2", the attack and certificate norm.
        loss: attack objective, "margin" (default: it does not saturate, see
            ``attacks.LOSSES``) or "ce" (the cross-entropy of the papers).
        noise: sequence of ``NoiseSpec``; default ``REFERENCE_NOISE``.
        draws: noise draws (>= 1). attack_draws: PGD random-start draws.
        seed: base seed of all randomness (int).
        normalization: the model's ``(mean, std)`` for the noise protocol.
        pgd_steps, pgd_step_size: PGD settings (``pgd``'s defaults).
        lipschitz_constant: optional certified L2 Lipschitz bound of the
            logits, or "certify" (a Keras model only).
        batch_size: batch size when ``dataset`` is a pair of arrays.
        diagnostics_take: with a suite, the masking checks' large-radius and
            stronger-attack runs use the first this many images (0: skip).
        verbose: 1 shows a ``keras.utils.Progbar``.

    Returns:
        A ``RobustnessTable``.

    Example:
        >>> table = evaluate(model, (x_test, y_test), draws=2)   # doctest: +SKIP
        >>> table.lookup("gaussian", 0.2).mean                    # doctest: +SKIP
    """
    attacks, eps, noise = _check_settings(attacks, eps, norm, loss, noise, draws, attack_draws)
    if isinstance(model, (str, os.PathLike)):
        model = load_model(model)
    if isinstance(lipschitz_constant, str) and (
            lipschitz_constant != "certify" or not isinstance(model, keras.Model)):
        raise ValueError("lipschitz_constant must be a number or 'certify' (with a Keras model), "
                         f"got {lipschitz_constant!r} for a {type(model).__name__}")
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
    for name in (a for a in attacks if a in SINGLE_ATTACKS):
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
    suite_results = {}
    suites = [a for a in attacks if a in SUITES]
    if suites:
        x_all = np.concatenate([x for x, _ in batches])
        y_all = np.concatenate([y for _, y in batches])
        for name in suites:
            suite_results[name] = [run_suite(logits_fn, x_all, y_all, e, norm=norm, suite=name, seed=seed,
                                             batch_size=batch_size, verbose=verbose) for e in eps]
            for r in suite_results[name]:
                rows.append(Row.from_draws(name, r.eps, norm, [r.accuracy]))
                survived[(name, r.eps)] = r.robust
    rows += _worst_case_rows(survived, eps, norm)
    if lipschitz_constant is not None:
        labels = np.concatenate([y for _, y in batches])
        if lipschitz_constant == "certify":
            images = np.concatenate([x for x, _ in batches])
            accuracies = certified_accuracy(model, labels, None, eps, norm=norm, images=images)
        else:
            logits = np.concatenate([np.asarray(logits_fn(tf.constant(x))) for x, _ in batches])
            d = int(np.prod(batches[0][0].shape[1:]))
            accuracies = certified_accuracy(logits, labels, lipschitz_constant, eps, norm=norm, input_dim=d)
        rows += [Row.from_draws("certified", e, norm, [a]) for e, a in zip(eps, accuracies)]
    if attacks:
        clean = rows[0].mean
        single = [(f"{r.kind} {r.norm} eps {r.level:g}", r.mean, clean) for r in rows if r.kind in SINGLE_ATTACKS]
        main = suites[0] if suites else None
        results = suite_results.get(main, [])
        large, stronger = None, ()
        if main is not None and diagnostics_take:
            large, stronger = _diagnostic_runs(logits_fn, x_all, y_all, results, main, norm, seed,
                                               diagnostics_take, batch_size)
        masking = diagnose(results, attack_rows=single, large_eps=large, stronger=stronger)
    metadata = {"n_examples": n, "draws": draws, "attack_draws": attack_draws, "seed": seed,
                "normalization": list(normalization), "attack_loss": loss, "pgd_steps": pgd_steps,
                "pgd_step_size": pgd_step_size, "lipschitz_constant": lipschitz_constant}
    if attacks:
        metadata["masking"] = masking.to_dict()
        metadata["suites"] = {name: [r.to_dict() for r in rs] for name, rs in suite_results.items()}
        metadata["diagnostics_take"] = diagnostics_take
    return RobustnessTable(rows, metadata)
