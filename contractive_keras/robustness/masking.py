"""Gradient-masking diagnostics: the checks an attack evaluation must pass before it means anything.

The checklist of Carlini et al. 2019 ("On evaluating adversarial robustness",
section 5) and Athalye et al. 2018 ("Obfuscated gradients give a false sense
of security", section 3), on the results of ``standard.run_suite`` and of
single attacks:

1. ``not_above_clean``: no attack leaves more images correct than no attack
   (an attack that raises accuracy is not attacking).
2. ``monotone_in_eps``: robust accuracy does not rise with the radius (a
   larger ball holds every point of a smaller one).
3. ``near_zero_at_large_eps``: at a radius large enough to reach an image of
   another class (L-inf 1, L2 28 on 28 x 28 pixels in [0, 1]) the attacks drive
   accuracy to (near) zero.
4. ``gradient_free_not_stronger``: the gradient-free attack breaks at most a
   few points' worth of images that every gradient attack left robust.
5. ``more_steps_not_stronger``: a stronger run (more steps and restarts) breaks
   at most a few images that the suite left robust.

A model failing any check is reported as "gradient masking detected", with the
evidence; its gradient-attack numbers are then upper bounds only, never
robustness.

Example:

>>> report = diagnose([suite_005, suite_01], large_eps=suite_large)  # doctest: +SKIP
>>> print(report.verdict)                                              # doctest: +SKIP
"""

import dataclasses

__all__ = ["MASKED", "NOT_MASKED", "Check", "MaskingReport", "diagnose"]

MASKED = "gradient masking detected"
NOT_MASKED = "no gradient masking detected"

#: Default tolerances, in accuracy points (fractions): the gradient-free and
#: the stronger attack may add this much; accuracy at the large radius must
#: be at most ``large_eps_accuracy``.
GRADIENT_FREE_TOLERANCE = 0.03
STRONGER_ATTACK_TOLERANCE = 0.01
LARGE_EPS_ACCURACY = 0.05


@dataclasses.dataclass(frozen=True)
class Check:
    """One diagnostic: its name, whether it passed, and the numbers behind it."""

    name: str
    passed: bool
    evidence: str


@dataclasses.dataclass(frozen=True)
class MaskingReport:
    """The checks that ran; ``masked`` if any failed."""

    checks: tuple

    @property
    def masked(self):
        return any(not c.passed for c in self.checks)

    @property
    def verdict(self):
        return MASKED if self.masked else NOT_MASKED

    def lines(self):
        """Markdown bullet lines: the verdict, then each check with its evidence."""
        out = [f"**{self.verdict}**" + (" (gradient-attack numbers of this model are upper bounds, "
                                        "not robustness)" if self.masked else "")]
        out += [f"- {'pass' if c.passed else 'FAIL'}: {c.name}: {c.evidence}" for c in self.checks]
        return out

    def to_dict(self):
        return {"verdict": self.verdict, "masked": self.masked,
                "checks": [dataclasses.asdict(c) for c in self.checks]}

    @classmethod
    def from_dict(cls, d):
        return cls(tuple(Check(**c) for c in d["checks"]))


def _not_above_clean(attack_rows):
    bad = [f"{label}: {100 * acc:.2f} % > clean {100 * clean:.2f} %" for label, acc, clean in attack_rows
           if acc > clean]
    evidence = "; ".join(bad) if bad else f"{len(attack_rows)} attack results at or below clean"
    return Check("not_above_clean", not bad, evidence)


def _monotone_in_eps(results):
    by_norm = {}
    for r in results:
        by_norm.setdefault(r.norm, []).append(r)
    bad, shown = [], []
    for norm, rs in by_norm.items():
        rs = sorted(rs, key=lambda r: r.eps)
        shown.append(f"{norm}: " + ", ".join(f"{r.eps:g} -> {100 * r.accuracy:.2f} %" for r in rs))
        for a, b in zip(rs, rs[1:]):
            if b.accuracy > a.accuracy + 1.0 / max(a.n, 1) and b.n == a.n:
                bad.append(f"{norm} eps {b.eps:g} ({100 * b.accuracy:.2f} %) above eps {a.eps:g} "
                           f"({100 * a.accuracy:.2f} %)")
    return Check("monotone_in_eps", not bad, "; ".join(bad) if bad else "; ".join(shown))


def _near_zero(large, limit):
    ok = large.accuracy <= limit
    return Check("near_zero_at_large_eps", ok,
                 f"{large.norm} eps {large.eps:g}: {100 * large.accuracy:.2f} % robust on {large.n} images "
                 f"(at most {100 * limit:.0f} % expected)")


def _gradient_free_not_stronger(results, tolerance):
    bad, shown = [], []
    for r in results:
        for attack, free in zip(r.attacks, r.gradient_free):
            if not free:
                continue
            extra = r.broken_only_by(attack)
            shown.append(f"{attack} {r.norm} eps {r.eps:g}: +{100 * extra:.2f} points")
            if extra > tolerance:
                bad.append(f"{attack} broke {100 * extra:.2f} % of the images that every gradient attack "
                           f"left robust ({r.norm}, eps {r.eps:g}; tolerance {100 * tolerance:.0f} points)")
    if not shown:
        return None
    return Check("gradient_free_not_stronger", not bad, "; ".join(bad) if bad else "; ".join(shown))


def _more_steps_not_stronger(pairs, tolerance):
    bad, shown = [], []
    for label, n, base, stronger in pairs:
        shown.append(f"{label}: {100 * base:.2f} % -> {100 * stronger:.2f} % on {n} images")
        if base - stronger > tolerance:
            bad.append(f"a stronger run lowered robust accuracy by {100 * (base - stronger):.2f} points "
                       f"({label}; tolerance {100 * tolerance:.0f})")
    return Check("more_steps_not_stronger", not bad, "; ".join(bad) if bad else "; ".join(shown))


def diagnose(results, *, attack_rows=(), large_eps=None, stronger=(),
             gradient_free_tolerance=GRADIENT_FREE_TOLERANCE,
             stronger_tolerance=STRONGER_ATTACK_TOLERANCE, large_eps_accuracy=LARGE_EPS_ACCURACY):
    """Runs the masking checks that the given results allow.

    Args:
        results: ``SuiteResult`` objects of one model (several radii).
        attack_rows: ``(label, accuracy, clean accuracy of the same images)``
            of single attacks (FGSM, PGD), for ``not_above_clean``.
        large_eps: a ``SuiteResult`` at a radius that reaches other classes.
        stronger: ``(label, n, accuracy, accuracy with a stronger run)``
            tuples on the same ``n`` images (``standard.stronger_suite``).
        gradient_free_tolerance, stronger_tolerance, large_eps_accuracy: the
            thresholds, as fractions.

    Returns:
        A ``MaskingReport``.
    """
    results = tuple(results)
    checks = [_not_above_clean(tuple(attack_rows) + tuple(
        (f"{r.suite} {r.norm} eps {r.eps:g}", r.accuracy, r.clean_accuracy) for r in results))]
    if len(results) > 1:
        checks.append(_monotone_in_eps(results))
    if large_eps is not None:
        checks.append(_near_zero(large_eps, large_eps_accuracy))
    gradient_free = _gradient_free_not_stronger(results, gradient_free_tolerance)
    if gradient_free is not None:
        checks.append(gradient_free)
    if stronger:
        checks.append(_more_steps_not_stronger(stronger, stronger_tolerance))
    return MaskingReport(tuple(checks))
