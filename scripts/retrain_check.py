#!/usr/bin/env python3
"""Does retraining a zoo entry in a fresh clone reproduce its numbers? Records and tables.

    # in a fresh clone, retrain (a certified entry, or a seed cell's shipped seed):
    python zoo/build.py stable_node_certified_mnist --stages=train,evaluate
    python zoo/seeds.py --only=resnet_mnist_n4/seed3 --results_dir=runs/retrain
    # then record the comparison with the figures it is compared with:
    python scripts/retrain_check.py record stable_node_certified_mnist \
        --retrained=<clone>/runs/zoo/stable_node_certified_mnist/evaluation.json \
        --summary=<clone>/runs/zoo/stable_node_certified_mnist/summary.json \
        --reference=zoo/manifest.json --label="the shipped card"
    python scripts/retrain_check.py table          # docs/reproduction.md's table

A record (docs/results/retrain/<entry>_<n>.json) holds the clean and certified
accuracy (certified profile) or the clean accuracy and the reference noise
settings (a seed cell's run) of the retrain and of the reference, the training
time and the largest absolute difference.
"""

import argparse
import glob
import json
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS_DIR = os.path.join(ROOT, "docs", "results", "retrain")
#: A seed run's measures (zoo/seeds.py's result JSON, "test" block).
SEED_KEYS = ("clean", "gaussian_0.05", "gaussian_0.2", "salt_pepper_0.05", "salt_pepper_0.2")
TOLERANCE = 0.005


def measures(path, entry):
    """{measure: fraction} of a results file: a zoo evaluation, a seed run, a study run or the manifest."""
    with open(path) as f:
        data = json.load(f)
    if "models" in data:                                   # zoo/manifest.json
        data = {"metrics": data["models"][entry]["metrics"]}
    if "test" in data and "selection_score" in data:      # zoo/seeds.py result
        return {k: data["test"][k] for k in SEED_KEYS}
    if "certified_accuracy_pairwise" in data:             # a retired study run
        found = {"clean": data["clean_accuracy"]}
        found.update({f"certified {float(r):g}": v for r, v in data["certified_accuracy_pairwise"].items()})
        return found
    metrics = data["metrics"]
    found = {"clean": metrics["test_accuracy"]}
    found.update({f"certified {k[len('certified_l2_'):]}": v for k, v in metrics.items()
                  if k.startswith("certified_l2_") and not k.endswith("_bound")})
    found.update({k: metrics[k] for k in SEED_KEYS[1:] if k in metrics})
    return found


def record(entry, retrained, reference, label, seconds, command):
    ours, theirs = measures(retrained, entry), measures(reference, entry)
    shared = [k for k in ours if k in theirs]
    difference = {k: ours[k] - theirs[k] for k in shared}
    return {"entry": entry, "command": command, "reference": label, "train_seconds": seconds,
            "retrained": {k: ours[k] for k in shared}, "reference_values": {k: theirs[k] for k in shared},
            "largest_difference": max(abs(v) for v in difference.values()),
            "within_half_a_point": all(abs(v) <= TOLERANCE for v in difference.values())}


def load_records(results_dir=RESULTS_DIR):
    records = []
    for path in sorted(glob.glob(os.path.join(results_dir, "*.json"))):
        with open(path) as f:
            records.append(json.load(f))
    return records


def table(results_dir=RESULTS_DIR):
    """Markdown: one row per record: entry, reference, each measure as retrained / reference (%)."""
    lines = ["| entry | compared with | measure: retrained / reference (%) | largest difference | "
             "within 0.5 points | train time |", "|---|---|---|--:|---|--:|"]
    for r in load_records(results_dir):
        cells = "; ".join(f"{k} {100 * r['retrained'][k]:.2f} / {100 * r['reference_values'][k]:.2f}"
                          for k in r["retrained"])
        lines.append(f"| `{r['entry']}` | {r['reference']} | {cells} | {100 * r['largest_difference']:.2f} | "
                     f"{'yes' if r['within_half_a_point'] else 'no'} | {r['train_seconds'] / 60:.0f} min |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("record", help="write one comparison to docs/results/retrain/")
    rec.add_argument("entry")
    rec.add_argument("--retrained", required=True, help="the retrain's evaluation or seed-run JSON")
    rec.add_argument("--reference", required=True, help="what it is compared with (manifest, study or seed JSON)")
    rec.add_argument("--label", required=True, help="how the table names the reference")
    rec.add_argument("--summary", help="train.py's summary.json of the retrain (its epoch times)")
    rec.add_argument("--seconds", type=float, help="training time, when there is no summary")
    rec.add_argument("--train_command", required=True, help="the command that retrained it")
    rec.add_argument("--out", required=True, help="file name under docs/results/retrain/")
    sub.add_parser("table", help="print docs/reproduction.md's table of the records")
    args = parser.parse_args(argv)
    if args.command == "table":
        print(table())
        return 0
    seconds = args.seconds
    if args.summary:
        with open(args.summary) as f:
            seconds = sum(h["seconds"] for h in json.load(f)["history"])
    result = record(args.entry, args.retrained, args.reference, args.label, seconds, args.train_command)
    os.makedirs(RESULTS_DIR, exist_ok=True)
    with open(os.path.join(RESULTS_DIR, args.out), "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")
    print(json.dumps({k: result[k] for k in ("entry", "largest_difference", "within_half_a_point")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
