"""Accuracy tables: one ``Row`` per setting, a ``RobustnessTable`` of rows with exports.

``robustness.evaluate`` returns a ``RobustnessTable``: one ``Row`` per setting
(clean, each noise level, each attack radius, each certified radius) with the
per-draw accuracies, their mean and sample standard deviation, and exports to
Markdown, CSV and JSON (``series`` gives accuracy-vs-radius arrays for
figures; ``from_dict`` reads the JSON back).
"""

import csv
import dataclasses
import io
import json

import numpy as np

__all__ = ["Row", "RobustnessTable"]

_LEVEL_NAMES = {"gaussian": "var", "salt_pepper": "amount"}


@dataclasses.dataclass(frozen=True)
class Row:
    """Accuracy of one setting.

    Attributes:
        kind: "clean", "gaussian", "salt_pepper", "fgsm", "pgd", "standard"
            (the robust accuracy: worst case of the standard suite),
            "quick" (its cheap upper bound), "worst_case" (union of every
            attack run at every radius <= level) or "certified".
        level: noise variance (gaussian), amount (salt_pepper), radius eps
            (attacks, certified); 0 for clean.
        norm: "linf" or "l2" for attacks and certificates, else None.
        mean: mean accuracy over draws, a fraction in [0, 1].
        std: sample standard deviation over draws (ddof=1; 0 for one draw).
        draws: the per-draw accuracies.
    """

    kind: str
    level: float
    norm: object
    mean: float
    std: float
    draws: tuple

    @classmethod
    def from_draws(cls, kind, level, norm, accuracies):
        """The row of per-draw ``accuracies``: their mean and sample std (ddof=1; 0 for one draw)."""
        values = tuple(float(a) for a in accuracies)
        std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
        return cls(kind, float(level), norm, float(np.mean(values)), std, values)

    @property
    def label(self):
        """A short human-readable name, e.g. ``"pgd linf eps=0.1"``."""
        if self.kind == "clean":
            return "clean"
        if self.kind in _LEVEL_NAMES:
            return f"{self.kind} {_LEVEL_NAMES[self.kind]}={self.level:g}"
        if self.kind == "quick":  # a cheap suite: never robust accuracy, only a bound on it
            return f"quick (upper bound) {self.norm} eps={self.level:g}"
        return f"{self.kind} {self.norm} eps={self.level:g}"


class RobustnessTable:
    """Rows of accuracies with exports; ``str(table)`` is Markdown.

    Args:
        rows: sequence of ``Row``.
        metadata: dict of settings (JSON-serialisable) kept with the table.

    Example:
        >>> table.lookup("pgd", 0.1, "linf").mean         # doctest: +SKIP
        >>> eps, acc, spread = table.series("pgd", "linf")  # doctest: +SKIP
        >>> table.to_csv("results.csv")                    # doctest: +SKIP
    """

    def __init__(self, rows, metadata=None):
        self.rows = list(rows)
        self.metadata = dict(metadata or {})

    def __iter__(self):
        return iter(self.rows)

    def __len__(self):
        return len(self.rows)

    def __str__(self):
        return self.to_markdown()

    def lookup(self, kind, level=None, norm=None):
        """The row of ``kind`` (and ``level``, ``norm`` where given)."""
        for row in self.rows:
            if row.kind == kind and (level is None or np.isclose(row.level, level)) and (
                    norm is None or row.norm == norm):
                return row
        raise KeyError(f"no row {kind!r} level={level} norm={norm}; rows: {[r.label for r in self.rows]}")

    def series(self, kind, norm=None):
        """``(levels, means, stds)`` arrays of one kind, sorted by level."""
        rows = sorted((r for r in self.rows if r.kind == kind and (norm is None or r.norm == norm)),
                      key=lambda r: r.level)
        return tuple(np.array([getattr(r, f) for r in rows]) for f in ("level", "mean", "std"))

    def to_dict(self):
        """``{"metadata": ..., "rows": [Row fields, ...]}``, JSON-serialisable."""
        return {"metadata": self.metadata, "rows": [dataclasses.asdict(r) for r in self.rows]}

    @classmethod
    def from_dict(cls, d):
        """The table ``to_dict`` (or the JSON of ``to_json``) describes."""
        rows = [Row(**{**r, "draws": tuple(r["draws"])}) for r in d["rows"]]
        return cls(rows, d.get("metadata"))

    def _write(self, text, path):
        if path is not None:
            with open(path, "w", encoding="utf-8", newline="") as f:
                f.write(text)
        return text

    def to_json(self, path=None):
        """JSON text (``{"metadata": ..., "rows": [...]}``), also written to ``path``."""
        return self._write(json.dumps(self.to_dict(), indent=2) + "\n", path)

    def to_csv(self, path=None):
        """CSV text, one line per row (per-draw values ';'-separated)."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["kind", "level", "norm", "mean", "std", "n_draws", "draws"])
        for r in self.rows:
            writer.writerow([r.kind, f"{r.level:g}", r.norm or "", f"{r.mean:.6f}", f"{r.std:.6f}",
                             len(r.draws), ";".join(f"{v:.6f}" for v in r.draws)])
        return self._write(out.getvalue(), path)

    def to_markdown(self, path=None):
        """A Markdown table of accuracies in percent, mean ± std."""
        lines = ["| setting | accuracy (%) | draws |", "|---|---|---|"]
        for r in self.rows:
            lines.append(f"| {r.label} | {100 * r.mean:.2f} ± {100 * r.std:.2f} | {len(r.draws)} |")
        return self._write("\n".join(lines) + "\n", path)
