"""The ``python -m contractive_keras.evaluate`` command over ``contractive_keras.robustness``.

Command line (a zoo name, a ``.keras`` file or a SavedModel directory)::

    python -m contractive_keras.evaluate --model=chnode_mnist_n8 --dataset=mnist \\
        --take=1000 --draws=10 --attacks=standard --norm=linf --eps=0.05,0.1 \\
        --output=results.json --output=results.csv

prints a progress bar, then the table (``--attacks=standard``: rows of kind
"standard", the per-image worst case over APGD-CE, APGD-T and Square, the one
robust accuracy; ``--attacks=quick``: its cheap upper bound; then the
gradient-masking verdict with its evidence) (``robustness.evaluate``) as Markdown,
and writes each ``--output`` in the format its extension names (.json, .csv,
.md). Run with ``--help`` for every option. The model is loaded by
``load_source``: an existing path by ``robustness.load_model``
(``safe_mode=True``), anything else as a zoo name by ``zoo.load`` /
``zoo.load_saved_model`` (sha256-verified); a ``--model`` that is not a model
(missing, not a zip archive, a directory without ``saved_model.pb``, an
unknown zoo name) is a one-line error with exit status 2, like every bad flag. Certified-accuracy rows need a certified L2
Lipschitz bound of the logit map: ``--lipschitz=<number>``, ``--lipschitz=auto``
(``contractive_keras.certify.lipschitz_bound`` of a Keras model), or, by
default, the zoo card's ``lipschitz_l2`` metric; with any of them a point is
certified iff its logit margin exceeds sqrt(2) L eps. ``--lipschitz=certify``
uses the Keras model's own certificate instead (``certify.certified_radius``,
the tightest read-out bound it can certify); ``--lipschitz=none`` omits them.

``Row`` and ``RobustnessTable`` (``robustness.table``) stay importable from here.
"""

import argparse
import os
import sys

if __name__ == "__main__":  # the command: quiet TensorFlow's C++ logs, before it is imported
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np

from contractive_keras import certify, data, robustness, zoo
from contractive_keras.robustness.table import RobustnessTable, Row

__all__ = ["Row", "RobustnessTable", "build_parser", "load_source", "main"]

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
    specs = []
    for item in filter(None, (t.strip() for t in text.split(","))):
        kind, _, level = item.partition(":")
        if kind not in robustness.NOISE_KINDS or not level:
            raise argparse.ArgumentTypeError(
                f"noise items are KIND:LEVEL with KIND in {robustness.NOISE_KINDS}, got {item!r}")
        specs.append(robustness.NoiseSpec(kind, _floats(level)[0]))
    return tuple(specs)


def _lipschitz(text):
    if text in ("auto", "certify", "none"):
        return text
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (value > 0 and np.isfinite(value)):
        raise argparse.ArgumentTypeError(f"expected a number > 0, 'auto', 'certify' or 'none', got {text!r}")
    return value


def _resolve_lipschitz(parser, choice, model, info):
    """The certified rows' ``lipschitz_constant``: a bound, "certify", or None for no rows."""
    if choice == "none":
        return None
    if choice in ("auto", "certify"):
        if not isinstance(model, keras.Model):
            parser.error(f"--lipschitz={choice} needs a Keras model (.keras file or --format=keras)")
        try:
            bound = float(certify.lipschitz_bound(model).value)
        except ValueError as e:
            parser.error(f"--lipschitz={choice}: the model cannot be certified: {e}")
        return bound if choice == "auto" else "certify"
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
    p.add_argument("--format", choices=zoo.FILE_KINDS, default="keras",
                   help="which zoo file to load (zoo names only)")
    p.add_argument("--dataset", choices=("mnist", "fashion_mnist"),
                   help="default: the zoo card's dataset; required for paths")
    p.add_argument("--split", choices=("test", "train"), default="test")
    p.add_argument("--take", type=_positive_int, help="first N examples only")
    p.add_argument("--draws", type=_positive_int, default=10, help="noise draws")
    p.add_argument("--attacks", default="standard",
                   help="comma list of: standard (the worst case over APGD-CE, APGD-T and Square, "
                        "AutoAttack's protocol: the robust accuracy), quick (APGD-CE + APGD-DLR, an "
                        "upper bound for monitoring), fgsm, pgd (single attacks of the papers); "
                        "'' for none")
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
                        "contractive_keras.certify), 'certify' (the model's own certified radii, "
                        "tightest read-out bound) or 'none'; default: the zoo card's lipschitz_l2")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch_size", type=_positive_int, default=500)
    p.add_argument("--diagnostics_take", type=int, default=200,
                   help="images of the masking checks' large-radius and stronger-attack runs (0: skip)")
    p.add_argument("--output", action="append", default=[],
                   help="file to write; format from extension (.json, .csv, .md); repeatable")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def load_source(source, *, format="keras"):
    """The model ``--model`` names, and its zoo card's facts (None for a path).

    Args:
        source: an existing path (a ``.keras`` file or a SavedModel directory,
            ``robustness.load_model``) or else a zoo name.
        format: for zoo names only, which file: "keras" (``zoo.load``, a Keras
            model) or "saved_model" (``zoo.load_saved_model``, whose ``serve``
            endpoint gives logits).

    Returns:
        ``(model, info)``: ``info`` is ``zoo.info(source)`` for a zoo name.

    Raises:
        robustness.ModelSourceError: the source is not a model (one-line message).
        zoo.VerificationError: a zoo file does not match its sha256.
    """
    if format not in zoo.FILE_KINDS:
        raise ValueError(f"format must be one of {zoo.FILE_KINDS}, got {format!r}")
    path = os.fspath(source)
    if os.path.exists(path):
        return robustness.load_model(path), None
    try:
        available = zoo.list_models()
    except zoo.ManifestError as e:
        raise robustness.ModelSourceError(
            f"{path} is not an existing path, and the zoo manifest is unreadable: "
            f"{type(e).__name__}: {' '.join(str(e).split())}") from e
    if path not in available:
        raise robustness.ModelSourceError(f"{path} is neither an existing path nor a zoo model; "
                                          f"zoo models: {sorted(available) or 'none'}")
    try:
        model = zoo.load(path) if format == "keras" else zoo.load_saved_model(path)
    except zoo.ZooFileNotFoundError as e:
        raise robustness.ModelSourceError(" ".join(str(e).split())) from e
    return model, zoo.info(path)


def _load_model(parser, args):
    """(model, zoo info or None) for --model; a bad --model is a parser error (exit 2)."""
    try:
        return load_source(args.model, format=args.format)
    except (robustness.ModelSourceError, zoo.ZooError) as e:
        parser.error(f"--model: {' '.join(str(e).split())}")


def main(argv=None):
    """Runs the command; returns the table (exit status 2 on bad arguments)."""
    parser = build_parser()
    args = parser.parse_args(argv)
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
        batch_size=args.batch_size, diagnostics_take=args.diagnostics_take, verbose=0 if args.quiet else 1)
    table.metadata.update(model=args.model, dataset=dataset, split=args.split)
    print(f"\n{args.model} on {dataset} {args.split} ({table.metadata['n_examples']} examples)\n")
    print(table.to_markdown())
    if "masking" in table.metadata:
        print("\n".join(robustness.MaskingReport.from_dict(table.metadata["masking"]).lines()))
    for out in args.output:
        getattr(table, _FORMATS[os.path.splitext(out)[1]])(out)
        print(f"wrote {out}")
    return table


if __name__ == "__main__":
    main()
