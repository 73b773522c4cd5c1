#!/usr/bin/env python3
"""How far the reference recipes' training moves when only the arithmetic changes.

    python scripts/trajectory_divergence.py --data_dir=data --output=docs/results/trajectory_divergence.json

For each Hamiltonian model (N = 4, the reference recipe, seed 0), trains
``--steps`` steps three times with ``training.Trainer``: in graph mode, in
graph mode again, and with ``jit_compile=True`` (XLA: the same function,
rounded differently). Reports, per step count, the relative difference of
the trained weights,

    ||w_a - w_b||_2 / ||w_a||_2   (all trainable variables as one vector),

and of the mean training loss of the steps taken. Graph mode repeated is
bit-for-bit identical on one machine, so any XLA difference is rounding
amplified by the training dynamics. The seed study (zoo/seeds.py) keeps
every run in graph mode for this reason: its command reproduces each run
exactly, and its seeds differ only in the seed.
"""

import argparse
import json
import os
import sys
import tempfile

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from contractive_keras.training import TrainConfig, Trainer  # noqa: E402
from zoo.entries import HAMILTONIAN_MODELS as MODELS  # noqa: E402

VARIANTS = {"graph": False, "graph_again": False, "xla": True}


def train(model, steps, jit_compile, data_dir, seed):
    """(flat trained weights, mean training loss) after ``steps`` steps."""
    with tempfile.TemporaryDirectory() as model_dir:
        config = TrainConfig(model=model, depth=4, dataset="mnist", data_dir=data_dir, seed=seed,
                             epochs=1, steps_per_epoch=steps, checkpoint_every=0, eval_take=500,
                             jit_compile=jit_compile, model_dir=model_dir, verbose=0)
        trainer = Trainer(config)
        summary = trainer.run()
        weights = np.concatenate([np.ravel(v.numpy()).astype(np.float64)
                                  for v in trainer.model.trainable_variables])
    return weights, summary["history"][0]["train_loss"]


def relative(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(a))


def measure(models, step_counts, data_dir, seed):
    rows = []
    for model in models:
        for steps in step_counts:
            runs = {name: train(model, steps, jit, data_dir, seed) for name, jit in VARIANTS.items()}
            (w, loss) = runs["graph"]
            row = {"model": model, "depth": 4, "steps": steps, "seed": seed}
            for name in ("graph_again", "xla"):
                row[f"{name}_weights"] = relative(w, runs[name][0])
                row[f"{name}_loss"] = abs(runs[name][1] - loss) / abs(loss)
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def markdown(rows):
    lines = ["| model | steps | graph again: weights / loss | XLA: weights / loss |",
             "|---|--:|--:|--:|"]
    for r in rows:
        lines.append(f"| {r['model']} N = {r['depth']} | {r['steps']} | "
                     f"{r['graph_again_weights']:.1e} / {r['graph_again_loss']:.1e} | "
                     f"{r['xla_weights']:.1e} / {r['xla_loss']:.1e} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data_dir", default=os.environ.get("CONTRACTIVE_KERAS_DATA"))
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--steps", default="1,10,100", help="step counts, comma-separated")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", help="write the rows as JSON here")
    args = parser.parse_args(argv)
    rows = measure(args.models.split(","), [int(s) for s in args.steps.split(",")], args.data_dir,
                   args.seed)
    if args.output:
        with open(args.output, "w") as f:
            json.dump({"command": "python scripts/trajectory_divergence.py " + " ".join(argv or sys.argv[1:]),
                       "rows": rows}, f, indent=1)
    print(markdown(rows))


if __name__ == "__main__":
    main()
