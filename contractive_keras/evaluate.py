"""Robustness tables and the ``python -m contractive_keras.evaluate`` command.

``RobustnessTable`` is what ``robustness.evaluate`` returns: one ``Row`` per
setting (clean, each noise level, each attack radius, each certified radius)
with the per-draw accuracies, their mean and spread, and exports to Markdown,
CSV and JSON (``series`` gives accuracy-vs-radius arrays for figures).

Command line (a zoo name, a ``.keras`` file or a SavedModel directory)::

    python -m contractive_keras.evaluate --model=chnode_mnist_n8 --dataset=mnist \\
        --take=1000 --draws=10 --attacks=fgsm,pgd --eps=0.05,0.1,0.2,0.3 \\
        --output=results.json --output=results.csv

prints a progress bar, then the table as Markdown, and writes each
``--output`` in the format its extension names (.json, .csv, .md). Run with
``--help`` for every option. Zoo models are loaded with ``zoo.load`` (sha256
verified, ``safe_mode=True``). Certified-accuracy rows need a certified L2
Lipschitz bound of the logit map: ``--lipschitz=<number>``, ``--lipschitz=auto``
(``contractive_keras.certify.lipschitz_bound`` of a Keras model), or, by
default, the zoo card's ``lipschitz_l2`` metric; ``--lipschitz=none`` omits them.
"""

import argparse
import csv
import dataclasses
import io
import json
import os
import sys

import numpy as np

_LEVEL_NAMES = {"gaussian": "var", "salt_pepper": "amount"}


@dataclasses.dataclass(frozen=True)
class Row:
    """Accuracy of one setting.

    Attributes:
        kind: "clean", "gaussian", "salt_pepper", "fgsm", "pgd", "worst_case"
            (union of the attacks at every radius <= level) or "certified".
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
        return {"metadata": self.metadata, "rows": [dataclasses.asdict(r) for r in self.rows]}

    @classmethod
    def from_dict(cls, d):
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


_FORMATS = {".json": "to_json", ".csv": "to_csv", ".md": "to_markdown"}


def _floats(text):
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}")
    if any(not v >= 0 for v in values):
        raise argparse.ArgumentTypeError(f"values must be >= 0, got {text!r}")
    return values


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _noise_specs(text):
    from contractive_keras.robustness import NOISE_KINDS, NoiseSpec

    specs = []
    for item in filter(None, (t.strip() for t in text.split(","))):
        kind, _, level = item.partition(":")
        if kind not in NOISE_KINDS or not level:
            raise argparse.ArgumentTypeError(
                f"noise items are KIND:LEVEL with KIND in {NOISE_KINDS}, got {item!r}")
        specs.append(NoiseSpec(kind, _floats(level)[0]))
    return tuple(specs)


def _lipschitz(text):
    if text in ("auto", "none"):
        return text
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (value > 0 and np.isfinite(value)):
        raise argparse.ArgumentTypeError(f"expected a number > 0, 'auto' or 'none', got {text!r}")
    return value


def _resolve_lipschitz(parser, choice, model, info):
    """The Lipschitz bound for the certified rows, or None for no rows."""
    import keras

    if choice == "none":
        return None
    if choice == "auto":
        if not isinstance(model, keras.Model):
            parser.error("--lipschitz=auto needs a Keras model (.keras file or --format=keras)")
        from contractive_keras import certify

        try:
            return float(certify.lipschitz_bound(model)["lipschitz_bound"])
        except ValueError as e:
            parser.error(f"--lipschitz=auto: the model cannot be certified: {e}")
    if choice is None:
        return (info or {}).get("lipschitz_l2")
    return choice


def build_parser():
    """The ``argparse`` parser of the command (for ``--help`` and tests)."""
    p = argparse.ArgumentParser(
        prog="python -m contractive_keras.evaluate",
        description="Accuracy of a classifier on clean, noisy (reference protocol) and "
                    "adversarial (FGSM, PGD) test images, and certified accuracy.")
    p.add_argument("--model", required=True, help="zoo name, .keras file or SavedModel directory")
    p.add_argument("--format", choices=("keras", "saved_model"), default="keras",
                   help="which zoo file to load (zoo names only)")
    p.add_argument("--dataset", choices=("mnist", "fashion_mnist"),
                   help="default: the zoo card's dataset; required for paths")
    p.add_argument("--split", choices=("test", "train"), default="test")
    p.add_argument("--take", type=_positive_int, help="first N examples only")
    p.add_argument("--draws", type=_positive_int, default=10, help="noise draws")
    p.add_argument("--attacks", default="fgsm,pgd", help="comma list of fgsm, pgd; '' for none")
    p.add_argument("--eps", type=_floats, default=(0.05, 0.1, 0.2, 0.3), help="radii, pixel units")
    p.add_argument("--norm", choices=("linf", "l2"), default="linf")
    p.add_argument("--loss", choices=("margin", "ce"), default="margin",
                   help="attack objective: margin max_{i!=y} z_i - z_y (does not saturate) or "
                        "the cross-entropy of the papers")
    p.add_argument("--noise", type=_noise_specs, default=None,
                   help="KIND:LEVEL list, default the reference gaussian:0.05,gaussian:0.2,"
                        "salt_pepper:0.05,salt_pepper:0.2; '' for none")
    p.add_argument("--pgd_steps", type=_positive_int, default=40)
    p.add_argument("--pgd_step_size", type=float, default=None, help="default 2.5 * eps / steps")
    p.add_argument("--lipschitz", type=_lipschitz, default=None,
                   help="certified L2 Lipschitz bound of the logits: a number, 'auto' (computed by "
                        "contractive_keras.certify) or 'none'; default: the zoo card's lipschitz_l2")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch_size", type=_positive_int, default=500)
    p.add_argument("--output", action="append", default=[],
                   help="file to write; format from extension (.json, .csv, .md); repeatable")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def _load_model(parser, args):
    """(model, zoo info or None) for --model, or a parser error."""
    import keras
    import tensorflow as tf

    from contractive_keras import zoo

    path = args.model
    if os.path.isfile(path):
        if not path.endswith(".keras"):
            parser.error(f"--model={path} is a file but not a .keras file")
        zoo.register_custom_objects()
        return keras.saving.load_model(path, safe_mode=True), None
    if os.path.isdir(path):
        if not os.path.isfile(os.path.join(path, "saved_model.pb")):
            parser.error(f"--model={path} is a directory without saved_model.pb")
        return tf.saved_model.load(path), None
    available = zoo.list_models()
    if path not in available:
        parser.error(f"--model={path} is neither an existing path nor a zoo model; "
                     f"zoo models: {sorted(available) or 'none'}")
    model = zoo.load(path) if args.format == "keras" else zoo.load_saved_model(path)
    return model, zoo.info(path)


def main(argv=None):
    """Runs the command; returns the table (exit status 2 on bad arguments)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    from contractive_keras import data, robustness  # TensorFlow: after --help and parse errors
    attacks = tuple(a.strip() for a in args.attacks.split(",") if a.strip())
    if set(attacks) - set(robustness.ATTACKS):
        parser.error(f"--attacks={args.attacks}: allowed are {', '.join(robustness.ATTACKS)}")
    for out in args.output:
        if os.path.splitext(out)[1] not in _FORMATS:
            parser.error(f"--output={out}: extension must be one of {', '.join(_FORMATS)}")
    model, info = _load_model(parser, args)
    dataset = args.dataset or (info or {}).get("dataset")
    if dataset is None:
        parser.error("--dataset is required when --model is a path")
    if info and info.get("dataset") != dataset:
        print(f"warning: {args.model} was trained on {info.get('dataset')}, evaluating on {dataset}",
              file=sys.stderr)
    lipschitz = _resolve_lipschitz(parser, args.lipschitz, model, info)
    images, labels = data.load_numpy(dataset, args.split)
    if args.take:
        images, labels = images[:args.take], labels[:args.take]
    table = robustness.evaluate(
        model, (images, labels), attacks=attacks, eps=args.eps, norm=args.norm, loss=args.loss,
        noise=robustness.REFERENCE_NOISE if args.noise is None else args.noise,
        draws=args.draws, seed=args.seed, normalization=data.normalization(dataset),
        pgd_steps=args.pgd_steps, pgd_step_size=args.pgd_step_size, lipschitz_constant=lipschitz,
        batch_size=args.batch_size, verbose=0 if args.quiet else 1)
    table.metadata.update(model=args.model, dataset=dataset, split=args.split)
    print(f"\n{args.model} on {dataset} {args.split} ({table.metadata['n_examples']} examples)\n")
    print(table.to_markdown())
    for out in args.output:
        getattr(table, _FORMATS[os.path.splitext(out)[1]])(out)
        print(f"wrote {out}")
    return table


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    main()
