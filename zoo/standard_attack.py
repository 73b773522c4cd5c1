"""The zoo's attack stage: the standard worst-case attack on each shipped model, its card section and metrics.

    python zoo/build.py --stages=attack chnode_mnist_n12     # one entry
    python zoo/standard_attack.py --take=1000 node_mnist      # the same, directly

For one zoo entry, on the first ``--take`` test images: the standard suite
(``contractive_keras.robustness.run_suite``: APGD-CE, APGD-T, Square, the
per-image worst case, AutoAttack's protocol) at L-inf 0.05 and 0.1 and, on
MNIST, at L2 1.0 and 1.58, with the masking checks
(``robustness.masking``). It writes ``docs/results/standard/<name>.json``,
puts the robust accuracies and the verdict in the entry's manifest metrics
(``standard_<norm>_<eps>``, ``standard_clean``, ``standard_take``,
``masking``), and regenerates the card's attack section from the JSON: the
single-attack rows (FGSM, PGD and their union) leave the card's accuracy
table, since on a masked model they are failed attacks, not robustness.
"""

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

ZOO_DIR = os.path.join(ROOT, "zoo")
RESULTS_DIR = os.path.join(ROOT, "docs", "results", "standard")
TAKE = 1000
#: norm -> radii of the zoo's standard evaluation (L2 on MNIST only).
RADII = {"linf": (0.05, 0.1), "l2": (1.0, 1.58)}
L2_DATASETS = ("mnist",)
SECTION = "## Robustness under the standard attack"
# Card lines of single attacks: rows of the accuracy table, the paragraph that
# described them, the failed-attack warning.
_ATTACK_ROW = re.compile(r"^\| (fgsm|pgd|worst_case) ")


def results_path(name):
    return os.path.join(RESULTS_DIR, f"{name}.json")


def _cpu():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _commit():
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def evaluate_entry(name, take=TAKE, diagnostics_take=200, seed=0):
    """Runs the standard suite on zoo entry ``name``; writes and returns its results dict."""
    from contractive_keras import data, robustness, zoo

    dataset = zoo.info(name)["dataset"]
    model = zoo.load(name)
    x, y = data.load_numpy(dataset, "test")
    x, y = x[:take], y[:take]
    diagnostics_take = min(diagnostics_take, len(y))
    result = {"model": name, "dataset": dataset, "take": int(len(y)), "seed": seed,
              "diagnostics_take": diagnostics_take,
              "command": f"python zoo/standard_attack.py --take={take} --diagnostics_take={diagnostics_take} {name}",
              "code_commit": _commit(), "cpu": _cpu(), "cpu_count": os.cpu_count(), "tables": {},
              "seconds": {}}
    for norm, radii in RADII.items():
        if norm == "l2" and dataset not in L2_DATASETS:
            continue
        t0 = time.perf_counter()
        table = robustness.evaluate(model, (x, y), attacks=("standard",), eps=radii, norm=norm, noise=(),
                                    draws=1, seed=seed, diagnostics_take=diagnostics_take, verbose=1)
        result["tables"][norm] = table.to_dict()
        result["seconds"][norm] = time.perf_counter() - t0
    return write_results(name, result)


def evaluate_protocols(name, draws=10, seed=0):
    """The other measures on the same images: reference noise, FGSM as the papers ran it, certified.

    Adds ``"protocols"`` to the entry's results file: on its first ``take``
    test images, the reference noise protocol (``draws`` draws), FGSM with
    the cross-entropy (the stabilized-NODE paper's attack) at the L-inf radii,
    and certified accuracy at every radius of ``RADII`` from the model's own
    certificate (``certify.certified_radius``; L-inf through the L2 ball
    holding it). One table per norm, as ``RobustnessTable`` dicts.
    """
    from contractive_keras import data, robustness, zoo

    result = load_results(name)
    model = zoo.load(name)
    x, y = data.load_numpy(result["dataset"], "test")
    x, y = x[:result["take"]], y[:result["take"]]
    protocols = {}
    for norm in result["tables"]:
        protocols[norm] = robustness.evaluate(
            model, (x, y), attacks=("fgsm",) if norm == "linf" else (), eps=RADII[norm], norm=norm, loss="ce",
            noise=robustness.REFERENCE_NOISE if norm == "linf" else (), draws=draws, seed=seed,
            normalization=robustness.model_normalization(model), lipschitz_constant="certify").to_dict()
    result["protocols"] = protocols
    return write_results(name, result)


def write_results(name, result):
    """Writes ``result`` to ``results_path(name)`` atomically (a killed run leaves no half file)."""
    os.makedirs(RESULTS_DIR, exist_ok=True)
    path = results_path(name)
    with open(path + ".tmp", "w") as f:
        json.dump(result, f, indent=2, default=float)
    os.replace(path + ".tmp", path)
    return result


def load_results(name):
    with open(results_path(name)) as f:
        return json.load(f)


def masking_verdict(result):
    """"gradient masking detected" if any check failed (the suites' or FGSM's), else the all-clear."""
    from contractive_keras.robustness import masking

    tables = list(result["tables"].values()) + list(result.get("protocols", {}).values())
    masked = any(t["metadata"].get("masking", {}).get("masked", False) for t in tables)
    return masking.MASKED if masked else masking.NOT_MASKED


def metrics(result):
    """The manifest metrics of a results dict: robust accuracy per radius, clean on the same images, verdict."""
    out = {"standard_take": result["take"], "masking": masking_verdict(result)}
    for norm, table in result["tables"].items():
        for row in table["rows"]:
            if row["kind"] == "clean":
                out["standard_clean"] = row["mean"]
            elif row["kind"] == "standard":
                out[f"standard_{norm}_{row['level']:g}"] = row["mean"]
    return out


def section_lines(result):
    """The card section: per radius clean, after each attack (cumulative) and worst case; the checks."""
    from contractive_keras.robustness import masking

    lines = [SECTION, "",
             f"On the first {result['take']:,} test images, `{result['command']}` "
             f"({sum(result['seconds'].values()) / 60:.0f} min on {result['cpu']}, "
             f"{result['cpu_count']} cores). An image counts as robust only if it is classified",
             "correctly clean and after every attack: APGD-CE (100 steps), APGD-T (targeted DLR, 9",
             "target classes x 100 steps), then the gradient-free Square (5,000 queries), each run on",
             "the images the attacks before it left robust (AutoAttack's standard protocol).", "",
             "| norm | eps | clean | after APGD-CE | after APGD-T | after Square = robust accuracy |",
             "| --- | --- | --- | --- | --- | --- |"]
    for norm, table in result["tables"].items():
        for suite in table["metadata"]["suites"]["standard"]:
            after = suite["accuracy_after"]
            lines.append(f"| {norm} | {suite['eps']:g} | {100 * suite['clean_accuracy']:.1f} % | "
                         f"{100 * after['apgd-ce']:.1f} % | {100 * after['apgd-t']:.1f} % | "
                         f"**{100 * after['square']:.1f} %** |")
    lines += ["", "Gradient-masking checks (Carlini et al. 2019; large-radius and stronger-attack runs on",
              f"the first {result['diagnostics_take']} of these images):", ""]
    for norm, table in result["tables"].items():
        report = masking.MaskingReport.from_dict(table["metadata"]["masking"])
        lines += [f"{norm}: " + report.lines()[0], *report.lines()[1:], ""]
    fgsm = result.get("protocols", {}).get("linf", {}).get("metadata", {}).get("masking")
    if fgsm is not None:
        report = masking.MaskingReport.from_dict(fgsm)
        lines += ["FGSM with the cross-entropy (the papers' attack) on the same images: " + report.lines()[0],
                  *report.lines()[1:], ""]
    return lines


def card_with_section(card, result):
    """``card`` without its single-attack rows and warning, with the standard section before "## Certificate"."""
    lines = card.rstrip("\n").split("\n")
    out, skip = [], False
    for line in lines:
        if line == SECTION or line.startswith("**These attacks failed"):
            skip = True
            continue
        if skip and line.startswith("## "):
            skip = False
        if skip or _ATTACK_ROW.match(line):
            continue
        out.append(line)
    text = "\n".join(out)
    text = re.sub(r"\nNoise follows the reference protocol.*?\n\n", "\n" + _NOISE_NOTE + "\n\n", text, flags=re.S)
    section = "\n".join(section_lines(result)) + "\n"
    if "## Certificate" in text:
        text = text.replace("## Certificate", section + "## Certificate", 1)
    else:
        text += "\n\n" + section
    return text.rstrip("\n") + "\n"


_NOISE_NOTE = """Noise follows the reference protocol on normalised images (Gaussian variance, salt & pepper
amount; clipped to [-1, 1]). Certified rows count test images whose logit margin exceeds
sqrt(2) * L * sqrt(784) * eps with L the certified L2 Lipschitz bound below. Robustness to
attacks is the standard worst case of the next section, the only attack figure this card gives."""


#: docs/robustness.md's families: (title, entries in row order).
FAMILIES = (
    ("CH-NODE", ("chnode_mnist_n4", "chnode_mnist_n8", "chnode_mnist_n12", "chnode_mnist_n12_certified")),
    ("H-DNN", ("hdnn_mnist_n4", "hdnn_mnist_n8", "hdnn_mnist_n12")),
    ("ResNet-ODE", ("resnet_mnist_n4", "resnet_mnist_n8", "resnet_mnist_n12")),
    ("NODE and stabilized NODE", ("node_mnist", "stable_node_mnist", "stable_node_mnist_certified",
                                  "node_fashion_mnist", "stable_node_fashion_mnist")),
    ("Certified CNN with a stabilized NODE (trained against its certificate)", ("stable_node_certified_mnist",)),
)
MASKED_MARK = "†"


def _row_mean(table, kind, level=None, norm=None):
    for row in table["rows"]:
        if row["kind"] == kind and (level is None or abs(row["level"] - level) < 1e-9) and (
                norm is None or row["norm"] == norm):
            return row["mean"]
    return None


def family_table(names, results_dir=None):
    """Markdown: per entry, on its attacked images, every measure side by side (docs/robustness.md).

    Clean, reference noise (Gaussian 0.2, salt & pepper 0.2), FGSM with the
    cross-entropy at L-inf 0.05 / 0.1 (the papers' protocol), the standard
    worst case at L-inf 0.05 / 0.1 and L2 1 / 1.58, certified accuracy at L2
    1 / 1.58 and the masking verdict, in %. An FGSM cell at or above clean
    reads "failed"; on a masked model it is marked ``MASKED_MARK`` (an upper
    bound, not robustness). Entries without results are left out.
    """
    lines = ["| model | images | clean | G 0.2 | s&p 0.2 | FGSM-CE .05 | FGSM-CE .1 | standard .05 | standard .1 "
             "| standard L2 1 | standard L2 1.58 | certified L2 1 | certified L2 1.58 | masking |",
             "|---|" + "--:|" * 12 + "---|"]
    for name in names:
        path = os.path.join(results_dir or RESULTS_DIR, f"{name}.json")
        if not os.path.isfile(path) or os.path.getsize(path) == 0:  # absent, or a run in progress
            continue
        with open(path) as f:
            result = json.load(f)
        masked = masking_verdict(result).startswith("gradient masking")
        linf, l2 = result["tables"].get("linf"), result["tables"].get("l2")
        protocols = result.get("protocols", {})
        clean = _row_mean(linf, "clean")
        fmt = lambda v: "-" if v is None else f"{100 * v:.1f}"  # noqa: E731
        cells = [f"{result['take']:,}", fmt(clean)]
        p_linf, p_l2 = protocols.get("linf"), protocols.get("l2")
        cells += [fmt(_row_mean(p_linf, k, 0.2)) if p_linf else "-" for k in ("gaussian", "salt_pepper")]
        for eps in RADII["linf"]:
            fgsm = _row_mean(p_linf, "fgsm", eps) if p_linf else None
            if fgsm is not None and fgsm >= clean:
                cells.append("failed")
            else:
                cells.append(fmt(fgsm) + (MASKED_MARK if masked and fgsm is not None else ""))
        cells += [fmt(_row_mean(linf, "standard", e)) for e in RADII["linf"]]
        cells += [fmt(_row_mean(l2, "standard", e)) if l2 else "-" for e in RADII["l2"]]
        cells += [fmt(_row_mean(p_l2, "certified", e, "l2")) if p_l2 else "-" for e in RADII["l2"]]
        cells.append("masked" if masked else "ok")
        lines.append(f"| `{name}` | " + " | ".join(cells) + " |")
    return "\n".join(lines)


#: docs/reproduction.md's section 2 table: the standard and the stabilized NODE on both datasets.
NODE_ENTRIES = ("node_mnist", "stable_node_mnist", "node_fashion_mnist", "stable_node_fashion_mnist")


def robustness_tables(results_dir=None):
    """docs/robustness.md's tables: one ``family_table`` per family, under a heading."""
    return "\n\n".join(f"### {title}\n\n{family_table(names, results_dir)}" for title, names in FAMILIES)


def update_entry(name, result):
    """Writes the card section and the manifest metrics of ``result`` for entry ``name``."""
    card_path = os.path.join(ZOO_DIR, name, "README.md")
    with open(card_path, encoding="utf-8") as f:
        card = f.read()
    with open(card_path, "w", encoding="utf-8") as f:
        f.write(card_with_section(card, result))
    from contractive_keras import zoo
    from zoo.export_entry import add_to_manifest

    entry = zoo.read_manifest(os.path.join(ZOO_DIR, zoo.MANIFEST))["models"][name]
    entry_metrics = entry["metrics"]
    for key in [k for k in entry_metrics if k.split("_")[0] in ("pgd", "worst")]:
        del entry_metrics[key]  # single-attack unions: superseded by the standard worst case
    entry_metrics.update(metrics(result))
    add_to_manifest(ZOO_DIR, name, entry)


def stage_attack(name, take=TAKE, rerun=False, diagnostics_take=200):
    """The stage: evaluate (unless results exist and not ``rerun``), then update card and manifest."""
    if rerun or not os.path.isfile(results_path(name)):
        evaluate_entry(name, take, diagnostics_take)
    update_entry(name, load_results(name))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="zoo entries")
    parser.add_argument("--doc_tables", action="store_true", help="print docs/robustness.md's tables")
    parser.add_argument("--node_table", action="store_true", help="print docs/reproduction.md's section 2 table")
    parser.add_argument("--take", type=int, default=TAKE, help="first N test images")
    parser.add_argument("--diagnostics_take", type=int, default=200,
                        help="images of the masking checks' large-radius and stronger-attack runs")
    parser.add_argument("--rerun", action="store_true", help="evaluate again even if results exist")
    parser.add_argument("--card_only", action="store_true", help="only rewrite cards and metrics from results")
    parser.add_argument("--protocols", action="store_true",
                        help="add noise, FGSM (cross-entropy) and certified accuracy on the same images")
    args = parser.parse_args(argv)
    if args.doc_tables:
        print(robustness_tables())
        return 0
    if args.node_table:
        print(family_table(NODE_ENTRIES))
        return 0
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    for name in args.names:
        if args.protocols:
            evaluate_protocols(name)
        elif args.card_only:
            update_entry(name, load_results(name))
        else:
            stage_attack(name, args.take, args.rerun, args.diagnostics_take)
        print(f"{name}: {metrics(load_results(name))}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
