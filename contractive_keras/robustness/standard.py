"""The standard worst-case attack: an image is robust only if every attack of a suite fails on it.

This is the protocol of AutoAttack's standard version (Croce & Hein, ICML
2020): the attacks run one after the other, each on the images that every
attack before it failed to break, and the robust accuracy at a radius is the
fraction of images that are classified correctly clean *and* after every
attack. Two suites:

- ``"standard"``: APGD with the cross-entropy (100 steps), APGD-T with the
  targeted DLR loss (100 steps for each of the 9 most likely wrong classes)
  and the gradient-free Square attack (5,000 queries). AutoAttack also runs
  FAB-T; it is left out here (DESIGN, "Attack evaluation"), and in
  AutoAttack's own tables it almost never breaks an image that the other three
  left robust.
- ``"quick"``: APGD-CE and APGD-DLR (untargeted), 25 steps each, no Square:
  cheap enough to log during training, and an *upper bound* on the standard
  robust accuracy, never reported as robust accuracy.

Every adversarial image is checked before it counts: it must lie in the
eps-ball around its clean image (to float32 rounding) and in the pixel box,
and it is classified by the same logit function (the exact map the model
computes: the same solver, steps and tolerance). Randomness is stateless: one
seed per (``seed``, attack, batch), so a run is reproducible.

Example:

>>> from contractive_keras import robustness, zoo, data                # doctest: +SKIP
>>> x, y = data.load_numpy("mnist", "test")                             # doctest: +SKIP
>>> result = robustness.run_suite(zoo.load("node_mnist"), x[:200, ..., None] / 255.0,
...                               y[:200], eps=0.05)                    # doctest: +SKIP
>>> result.accuracy, result.accuracy_after("apgd-ce")                   # doctest: +SKIP
"""

import dataclasses
import functools
import time
import zlib

import numpy as np
import tensorflow as tf

from contractive_keras.robustness.apgd import apgd, apgd_targeted
from contractive_keras.robustness.loading import logit_function
from contractive_keras.robustness.norms import check_norm
from contractive_keras.robustness.square import square

__all__ = ["SUITES", "AttackSpec", "SuiteResult", "run_suite", "stronger_suite"]


@dataclasses.dataclass(frozen=True)
class AttackSpec:
    """One attack of a suite: its name, the function it calls and that function's options.

    Attributes:
        name: the name rows and reports use (``"apgd-ce"``, ``"apgd-t"``, ...).
        method: ``"apgd"``, ``"apgd_targeted"`` or ``"square"``.
        options: keyword arguments of the method (steps, loss, queries, ...).
        gradient_free: True for an attack that never reads a gradient.
    """

    name: str
    method: str
    options: tuple = ()
    gradient_free: bool = False

    def with_options(self, **changes):
        """The same attack with some options changed (e.g. more steps or restarts)."""
        return dataclasses.replace(self, options=tuple({**dict(self.options), **changes}.items()))


#: name -> the attacks of the suite, in the order they run.
SUITES = {
    "standard": (
        AttackSpec("apgd-ce", "apgd", (("loss", "ce"), ("steps", 100))),
        AttackSpec("apgd-t", "apgd_targeted", (("steps", 100), ("target_classes", 9))),
        AttackSpec("square", "square", (("queries", 5000), ("p_init", 0.8)), gradient_free=True),
    ),
    "quick": (
        AttackSpec("apgd-ce", "apgd", (("loss", "ce"), ("steps", 25))),
        AttackSpec("apgd-dlr", "apgd", (("loss", "dlr"), ("steps", 25))),
    ),
}

_METHODS = {"apgd": apgd, "apgd_targeted": apgd_targeted, "square": square}
# Square traces its own query loop and checks its arguments in Python: called eagerly.
_SELF_COMPILED = ("square",)

# Float32 slack of the eps-ball check: projections round in float32.
_BALL_SLACK = 1e-5


@dataclasses.dataclass(frozen=True)
class SuiteResult:
    """Per-image outcome of a suite at one radius.

    Attributes:
        suite: the suite's name, or ``"custom"``.
        eps, norm: the threat model.
        attacks: the attack names in the order they ran.
        gradient_free: per attack, whether it reads no gradient.
        clean: bool ``(n,)``, correctly classified clean.
        robust_after: per attack, bool ``(n,)``: correct clean and after
            this attack and every attack before it (cumulative).
        seconds: per attack, wall time.
        adversarial: with ``keep_adversarial``, per image the example that
            broke it, or the last attack's output where none did (the clean
            image where no attack ran); else None.
    """

    suite: str
    eps: float
    norm: str
    attacks: tuple
    gradient_free: tuple
    clean: np.ndarray
    robust_after: dict
    seconds: dict
    adversarial: object = dataclasses.field(default=None, repr=False, compare=False)

    @property
    def n(self):
        return int(self.clean.size)

    @property
    def robust(self):
        """Bool ``(n,)``: the images that every attack failed to break."""
        return self.robust_after[self.attacks[-1]] if self.attacks else self.clean

    @property
    def clean_accuracy(self):
        return float(self.clean.mean())

    @property
    def accuracy(self):
        """The worst-case robust accuracy: correct clean and under every attack."""
        return float(self.robust.mean())

    def accuracy_after(self, attack):
        """Robust accuracy under ``attack`` and every attack that ran before it."""
        return float(self.robust_after[attack].mean())

    def broken_only_by(self, attack):
        """Fraction of all images that ``attack`` broke after every earlier attack had failed."""
        i = self.attacks.index(attack)
        before = self.robust_after[self.attacks[i - 1]] if i else self.clean
        return float((before & ~self.robust_after[attack]).mean())

    def to_dict(self):
        """A JSON-serialisable summary (per-attack cumulative accuracies and times)."""
        return {"suite": self.suite, "eps": self.eps, "norm": self.norm, "n": self.n,
                "clean_accuracy": self.clean_accuracy, "accuracy": self.accuracy,
                "accuracy_after": {a: self.accuracy_after(a) for a in self.attacks},
                "gradient_free": dict(zip(self.attacks, self.gradient_free)),
                "seconds": dict(self.seconds)}


def _resolve_suite(suite):
    if isinstance(suite, str):
        if suite not in SUITES:
            raise ValueError(f"suite must be one of {tuple(SUITES)} or a sequence of AttackSpec, got {suite!r}")
        return suite, SUITES[suite]
    specs = tuple(suite)
    if not specs or not all(isinstance(s, AttackSpec) and s.method in _METHODS for s in specs):
        raise ValueError(f"a custom suite is a non-empty sequence of AttackSpec with method in "
                         f"{tuple(_METHODS)}, got {suite!r}")
    return "custom", specs


def _as_arrays(images, labels):
    x = np.asarray(images)
    x = x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x.astype(np.float32)
    if x.ndim == 3:
        x = x[..., None]
    y = np.asarray(labels).astype(np.int32).reshape(-1)
    if len(x) != len(y) or len(y) == 0:
        raise ValueError(f"images and labels must be non-empty and of one length, got {len(x)} and {len(y)}")
    return x, y


def _passes(spec):
    """The option sets ``spec`` runs with, in order: one, or for APGD-T one per target rank.

    AutoAttack's APGD-T attacks one target rank at a time, each on the images
    still robust; ``run_suite`` re-selects the images between passes.
    """
    options = dict(spec.options)
    if spec.method != "apgd_targeted":
        return [options]
    first = options.pop("first_target", 2)
    return [dict(options, target_classes=1, first_target=first + k) for k in range(options.get("target_classes", 9))]


def _check_in_ball(x_adv, x, eps, norm, clip_min, clip_max, name):
    """Raises ``RuntimeError`` if an attack returned a point outside its threat model (a bug)."""
    delta = (x_adv - x).reshape(len(x), -1)
    size = np.abs(delta).max(1) if norm == "linf" else np.linalg.norm(delta.astype(np.float64), axis=1)
    worst = float(size.max(initial=0.0))
    if worst > eps * (1 + _BALL_SLACK) + _BALL_SLACK or x_adv.min() < clip_min - 1e-6 or x_adv.max() > clip_max + 1e-6:
        raise RuntimeError(f"{name} returned a point outside the {norm} ball of radius {eps} or the "
                           f"pixel box (largest perturbation {worst:.6g})")


def run_suite(model, images, labels, eps, *, norm="linf", suite="standard", seed=0, batch_size=500,
              clip_min=0.0, clip_max=1.0, keep_adversarial=False, verbose=0):
    """Runs a suite of attacks at one radius; an image counts as robust only if every attack fails.

    Each attack runs on the images that are classified correctly clean and
    that every earlier attack failed to break (AutoAttack's standard
    protocol); an adversarial image counts only after it is checked to lie in
    the threat model and re-classified by the model's logit function.

    Args:
        model: anything ``logit_function`` accepts: it maps float32 images in
            ``[clip_min, clip_max]`` to logits.
        images: ``(N, H, W, C)`` float32 pixels (uint8 is scaled by 1/255;
            ``(N, H, W)`` gets a channel axis).
        labels: ``(N,)`` integer labels.
        eps: the radius (pixel units, >= 0).
        norm: ``"linf"`` or ``"l2"``.
        suite: ``"standard"``, ``"quick"`` (an upper bound, for monitoring)
            or a sequence of ``AttackSpec``.
        seed: int; the same seed and batching give the same result.
        batch_size: images per attack call.
        clip_min, clip_max: the valid pixel range.
        keep_adversarial: keep the adversarial examples (``SuiteResult.adversarial``).
        verbose: 1 prints each attack's robust accuracy and time.

    Returns:
        A ``SuiteResult``.
    """
    check_norm(norm)
    if isinstance(eps, bool) or not isinstance(eps, (int, float, np.floating)) or not eps >= 0:
        raise ValueError(f"eps must be a non-negative number, got {eps!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    name, specs = _resolve_suite(suite)
    eps = float(eps)
    x, y = _as_arrays(images, labels)
    logits_fn = logit_function(model)

    @tf.function(reduce_retracing=True)
    def predict(images):
        return tf.argmax(logits_fn(images), -1, output_type=tf.int32)

    def correct(x_batch, y_batch):
        return np.asarray(predict(tf.constant(x_batch))) == y_batch

    clean = np.concatenate([correct(x[i:i + batch_size], y[i:i + batch_size])
                            for i in range(0, len(y), batch_size)])
    robust = clean.copy()
    adversarial = x.copy() if keep_adversarial else None
    robust_after, seconds = {}, {}
    fold_in = tf.random.experimental.stateless_fold_in
    for spec in specs:
        method = _METHODS[spec.method]

        def attack(xb, yb, s, method=method, options=None):
            return method(logits_fn, xb, yb, eps, norm=norm, seed=s, clip_min=clip_min, clip_max=clip_max,
                          **options)

        attack_id = zlib.crc32(spec.name.encode()) & 0x7FFFFFFF
        t0 = time.perf_counter()
        todo = np.flatnonzero(robust)
        for p, pass_options in enumerate(_passes(spec) if eps > 0 else ()):
            run = functools.partial(attack, options=pass_options)
            if spec.method not in _SELF_COMPILED:
                run = tf.function(run, reduce_retracing=True)
            pending = np.flatnonzero(robust)
            for b, start in enumerate(range(0, len(pending), batch_size)):
                idx = pending[start:start + batch_size]
                s = fold_in(fold_in(fold_in(tf.constant([int(seed), 0]), attack_id), p), b)
                x_adv = np.asarray(run(tf.constant(x[idx]), tf.constant(y[idx]), s))
                _check_in_ball(x_adv, x[idx], eps, norm, clip_min, clip_max, spec.name)
                robust[idx] &= correct(x_adv, y[idx])
                if adversarial is not None:
                    adversarial[idx] = x_adv
        robust_after[spec.name] = robust.copy()
        seconds[spec.name] = time.perf_counter() - t0
        if verbose:
            print(
                f"{spec.name} ({norm}, eps={eps:g}): robust {robust.mean():.4f} on {len(y)} images, "
                f"{len(todo)} attacked, {seconds[spec.name]:.1f} s", flush=True)
    return SuiteResult(name, eps, norm, tuple(s.name for s in specs), tuple(s.gradient_free for s in specs),
                       clean, robust_after, seconds, adversarial)


def stronger_suite(suite="standard", factor=2):
    """The gradient attacks of ``suite`` with ``factor`` times the steps and ``factor`` restarts.

    For the "more steps or restarts no stronger" masking check: if this
    breaks images that the suite left robust, the suite had not converged.
    """
    _, specs = _resolve_suite(suite)
    return tuple(s.with_options(steps=factor * dict(s.options)["steps"], restarts=factor)
                 for s in specs if not s.gradient_free)
