#!/usr/bin/env python3
"""Five seeds of every zoo cell on a 55,000 / 5,000 train / validation split (issue 17).

    python zoo/seeds.py --source_data_dir=data          # run (or resume) the whole queue
    python zoo/seeds.py --status                        # what is done, per run and per cell
    python zoo/seeds.py --only=chnode_mnist_n4/seed0    # some runs (cells or cell/seedK, comma-separated)

Several drivers may run at once (one per free core): a driver claims a run
with a lock file in its model directory (``driver.lock``, its pid) and skips
runs a live driver holds; a lock whose driver is gone is taken over.

The queue: the 9 Hamiltonian cells (chnode, hdnn, resnet x N in 4, 8, 12,
MNIST) and the 4 stabilized-NODE cells (node, stable_node x MNIST,
Fashion-MNIST), each with seeds 0..4, ordered seed-major (every cell for seed
0, then seed 1, ...) so partial results cover every cell. Each run is two
resumable jobs, each in its own process, run one after the other:

1. train: ``python train.py <cell flags> --seed=K --data_dir=<split>
   --model_dir=<runs_root>/<cell>/seed<K> --export --verbose=2`` with the
   reference recipe (train.py's defaults); skipped when summary.json and
   export/model.keras exist (train.py resumes from its own checkpoints);
2. evaluate: one JSON per run in ``--results_dir``; skipped when it exists.

The split: the first 55,000 official training images train; the last 5,000
are the validation split; the official 10,000 test images are the test set.
``--data_dir`` receives ``<dataset>.npz`` files holding exactly that
(x_train = the first 55,000), made from ``--source_data_dir`` if missing.

Validation (the only numbers a zoo entry may be chosen by): the reference
noise settings (10 draws) and FGSM L-inf 0.05 (margin loss) on the 5,000
validation images; ``selection_score`` is the mean accuracy over the four
noise settings for the Hamiltonian cells, the FGSM 0.05 accuracy for the NODE
cells. Test numbers (reported, never used to choose): clean accuracy, the four
noise settings (10 draws), FGSM L-inf 0.05 (margin loss, full test set), and
the clean accuracy on the 55,000 training images; for the NODE cells also the
FGSM curve of docs/reproduction.md section 2 (``test_fgsm_curve``: margin
loss, full test set, L-inf radii ``NODE_FGSM_CURVE``), which the driver adds
to a finished NODE run's JSON that lacks it.
"""

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from zoo.entries import ENTRIES, HAMILTONIAN_MODELS, SEED_CELLS  # noqa: E402  (the one entry table)
from zoo import seed_table  # noqa: E402

SEEDS = tuple(range(5))
TRAIN_SIZE = 55_000
VALIDATION_SIZE = 5_000
FGSM_EPS = 0.05
NOISE_DRAWS = 10
WALL_FILE = "train_wall_seconds.txt"
LOCK_FILE = "driver.lock"
#: FGSM L-inf radii of the NODE cells' test curve (docs/reproduction.md, section 2)
NODE_FGSM_CURVE = (0.01, 0.02, 0.03, 0.05, 0.1, 0.15, 0.2, 0.3)


#: cell name -> train.py flags (the rest is the reference recipe): zoo/entries.py's seed cells.
CELLS = {cell: dict(ENTRIES[cell].flags) for cell in SEED_CELLS}


def queue():
    """All runs as (cell, seed), seed-major."""
    return [(cell, seed) for seed in SEEDS for cell in CELLS]


def run_name(cell, seed):
    return f"{cell}/seed{seed}"


def log(message):
    print(f"[zoo/seeds {time.strftime('%H:%M:%S')}] {message}", flush=True)


def child_env():
    """Environment of the child processes: this source tree's package first."""
    path = os.environ.get("PYTHONPATH")
    return dict(os.environ, PYTHONPATH=ROOT + (os.pathsep + path if path else ""),
                TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")


class Paths:
    def __init__(self, args):
        self.runs_root = os.path.abspath(args.runs_root)
        self.results_dir = os.path.abspath(args.results_dir)
        self.data_dir = os.path.abspath(args.data_dir)
        self.source_data_dir = args.source_data_dir and os.path.abspath(args.source_data_dir)

    def model_dir(self, cell, seed):
        return seed_table.seed_run_dir(self.runs_root, cell, seed)

    def result(self, cell, seed):
        return os.path.join(self.results_dir, f"{cell}_seed{seed}.json")

    def trained(self, cell, seed):
        d = self.model_dir(cell, seed)
        return os.path.isfile(os.path.join(d, "summary.json")) and os.path.isfile(
            os.path.join(d, "export", "model.keras"))


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _lock_owner(path):
    """The pid in lock file ``path``, or None when it is unreadable."""
    try:
        with open(path) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


@contextlib.contextmanager
def claimed(model_dir):
    """Yields True while this process holds the run in ``model_dir``, False if another live one does.

    The lock file is created with its pid in one step (hard link of a
    written temporary file), so no driver ever reads a half-written lock.
    A lock whose pid is not alive (its driver was killed) is taken over.
    """
    os.makedirs(model_dir, exist_ok=True)
    path = os.path.join(model_dir, LOCK_FILE)
    temporary = f"{path}.{os.getpid()}"
    with open(temporary, "w") as f:
        f.write(str(os.getpid()))
    try:
        while True:
            try:
                os.link(temporary, path)
                break
            except FileExistsError:
                owner = _lock_owner(path)
                if owner is not None and _alive(owner):  # another driver, or this one (nested)
                    yield False
                    return
                with contextlib.suppress(FileNotFoundError):
                    os.remove(path)  # its driver is gone
    finally:
        os.remove(temporary)
    try:
        yield True
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)


# --- jobs ------------------------------------------------------------------------


def prepare_split(paths):
    """Writes <data_dir>/<dataset>.npz: the first 55,000 training images, the test set."""
    import numpy as np

    from contractive_keras import data

    os.makedirs(paths.data_dir, exist_ok=True)
    for dataset in ("mnist", "fashion_mnist"):
        target = os.path.join(paths.data_dir, f"{dataset}.npz")
        if os.path.isfile(target):
            continue
        x_train, y_train = data.load_numpy(dataset, "train", paths.source_data_dir, use_tfds=False)
        x_test, y_test = data.load_numpy(dataset, "test", paths.source_data_dir, use_tfds=False)
        if len(y_train) != TRAIN_SIZE + VALIDATION_SIZE:
            raise ValueError(f"{dataset}: expected {TRAIN_SIZE + VALIDATION_SIZE} training images, got {len(y_train)}")
        with open(target + ".tmp", "wb") as f:
            np.savez(f, x_train=x_train[:TRAIN_SIZE], y_train=y_train[:TRAIN_SIZE], x_test=x_test, y_test=y_test)
        os.replace(target + ".tmp", target)
        log(f"split written: {target}")


def validation_split(paths, dataset):
    """The last 5,000 official training images (never trained on)."""
    from contractive_keras import data

    x, y = data.load_numpy(dataset, "train", paths.source_data_dir, use_tfds=False)
    return x[TRAIN_SIZE:], y[TRAIN_SIZE:]


def train_command(paths, cell, seed):
    """train.py's arguments; paths relative to the source tree, where it runs."""
    flags = [f"--{k}={v}" for k, v in CELLS[cell].items()]
    return ["train.py", *flags, f"--seed={seed}", f"--data_dir={os.path.relpath(paths.data_dir, ROOT)}",
            f"--model_dir={os.path.relpath(paths.model_dir(cell, seed), ROOT)}", "--export", "--verbose=2"]


def train(paths, cell, seed):
    if paths.trained(cell, seed):
        return True
    command = [sys.executable, *train_command(paths, cell, seed)]
    log(f"{run_name(cell, seed)}: training: {' '.join(command[1:])}")
    t0 = time.perf_counter()
    rc = subprocess.run(command, cwd=ROOT, env=child_env()).returncode
    seconds = time.perf_counter() - t0
    os.makedirs(paths.model_dir(cell, seed), exist_ok=True)
    with open(os.path.join(paths.model_dir(cell, seed), WALL_FILE), "a") as f:
        f.write(f"{seconds:.1f} {rc}\n")  # one line per training process: wall seconds, exit code
    log(f"{run_name(cell, seed)}: training exited {rc} after {seconds:.0f} s")
    return rc == 0 and paths.trained(cell, seed)


def train_wall_seconds(model_dir):
    """(total wall seconds, number of training processes) recorded by train(); (None, 0) if none."""
    try:
        with open(os.path.join(model_dir, WALL_FILE)) as f:
            lines = [line.split() for line in f if line.strip()]
    except FileNotFoundError:
        return None, 0
    return sum(float(line[0]) for line in lines), len(lines)


def _child(paths, job):
    """Runs one job of this script (``--job=...``) in a fresh process; its exit code."""
    command = [sys.executable, os.path.abspath(__file__), f"--job={job}", f"--runs_root={paths.runs_root}",
               f"--results_dir={paths.results_dir}", f"--data_dir={paths.data_dir}"]
    if paths.source_data_dir:
        command.append(f"--source_data_dir={paths.source_data_dir}")
    return subprocess.run(command, cwd=ROOT, env=child_env()).returncode


def evaluate(paths, cell, seed):
    """Runs evaluate_run in a child process; True when the result JSON exists."""
    if os.path.isfile(paths.result(cell, seed)):
        return True
    t0 = time.perf_counter()
    rc = _child(paths, run_name(cell, seed))
    log(f"{run_name(cell, seed)}: evaluation exited {rc} after {time.perf_counter() - t0:.0f} s")
    return rc == 0 and os.path.isfile(paths.result(cell, seed))


def _noise_and_fgsm(model, images, labels, normalization):
    from contractive_keras import robustness

    table = robustness.evaluate(model, (images, labels), attacks=("fgsm",), eps=(FGSM_EPS,), loss="margin",
                                noise=robustness.REFERENCE_NOISE, draws=NOISE_DRAWS,
                                normalization=normalization)
    values = {"clean": table.lookup("clean").mean}
    for spec in robustness.REFERENCE_NOISE:
        row = table.lookup(spec.kind, spec.level)
        values[f"{spec.kind}_{spec.level:g}"] = row.mean
        values[f"{spec.kind}_{spec.level:g}_std"] = row.std
    values[f"fgsm_linf_{FGSM_EPS:g}"] = table.lookup("fgsm", FGSM_EPS).mean
    values["noise_mean"] = sum(values[f"{s.kind}_{s.level:g}"] for s in robustness.REFERENCE_NOISE) / len(
        robustness.REFERENCE_NOISE)
    return values


def fgsm_curve(model, images, labels):
    """{radius: accuracy} under FGSM (margin loss) at every L-inf radius of ``NODE_FGSM_CURVE``."""
    from contractive_keras import robustness

    table = robustness.evaluate(model, (images, labels), attacks=("fgsm",), eps=NODE_FGSM_CURVE,
                                loss="margin", noise=(), draws=1)
    return {f"{eps:g}": table.lookup("fgsm", eps).mean for eps in NODE_FGSM_CURVE}


def needs_curve(paths, cell, seed):
    """True for a finished NODE run whose JSON has no ``test_fgsm_curve`` yet."""
    if CELLS[cell]["model"] in HAMILTONIAN_MODELS or not os.path.isfile(paths.result(cell, seed)):
        return False
    with open(paths.result(cell, seed)) as f:
        return "test_fgsm_curve" not in json.load(f)


def add_curve(paths, cell, seed):
    """Adds ``test_fgsm_curve`` to a finished NODE run's JSON (the model of its run directory)."""
    from contractive_keras import data, robustness

    model = robustness.load_model(os.path.join(paths.model_dir(cell, seed), "export", "model.keras"))
    x_test, y_test = data.load_numpy(CELLS[cell]["dataset"], "test", paths.data_dir, use_tfds=False)
    target = paths.result(cell, seed)
    with open(target) as f:
        result = json.load(f)
    result["test_fgsm_curve"] = fgsm_curve(model, x_test, y_test)
    result["test_fgsm_curve_code_commit"] = _commit()
    _write_json(result, target)
    log(f"{run_name(cell, seed)}: FGSM curve added to {target}")


def _write_json(result, target):
    os.makedirs(os.path.dirname(target), exist_ok=True)
    with open(target + ".tmp", "w") as f:
        json.dump(result, f, indent=2, default=float)
        f.write("\n")
    os.replace(target + ".tmp", target)


def evaluate_run(paths, cell, seed):
    """Validation and test numbers of one trained run, written as one JSON."""
    from contractive_keras import data, robustness

    t0 = time.perf_counter()
    flags = CELLS[cell]
    model_dir = paths.model_dir(cell, seed)
    model = robustness.load_model(os.path.join(model_dir, "export", "model.keras"))
    normalization = robustness.model_normalization(model)
    x_train, y_train = data.load_numpy(flags["dataset"], "train", paths.data_dir, use_tfds=False)
    x_test, y_test = data.load_numpy(flags["dataset"], "test", paths.data_dir, use_tfds=False)
    if len(y_train) != TRAIN_SIZE:
        raise ValueError(f"{paths.data_dir}: {len(y_train)} training images, expected {TRAIN_SIZE}")
    validation = _noise_and_fgsm(model, *validation_split(paths, flags["dataset"]), normalization)
    test = _noise_and_fgsm(model, x_test, y_test, normalization)
    train_accuracy = robustness.evaluate(model, (x_train, y_train), attacks=(), noise=(), draws=1).lookup(
        "clean").mean
    with open(os.path.join(model_dir, "summary.json")) as f:
        summary = json.load(f)
    hamiltonian = flags["model"] in HAMILTONIAN_MODELS
    wall, processes = train_wall_seconds(model_dir)
    result = {
        "cell": cell, "seed": seed, **flags,
        "train_command": "python " + " ".join(train_command(paths, cell, seed)),
        "data": {"train": f"official training images [0, {TRAIN_SIZE})",
                 "validation": f"official training images [{TRAIN_SIZE}, {TRAIN_SIZE + VALIDATION_SIZE})",
                 "test": "official test set (10,000)"},
        "normalization": list(normalization),
        "selection_rule": ("validation noise_mean (mean accuracy over the four reference noise settings)"
                           if hamiltonian else f"validation fgsm_linf_{FGSM_EPS:g} (margin loss)"),
        "selection_score": validation["noise_mean"] if hamiltonian else validation[f"fgsm_linf_{FGSM_EPS:g}"],
        "validation": validation,
        "test": test,
        "train_accuracy": train_accuracy,
        # summed epoch times of the last training process (all epochs unless it resumed)
        "train_seconds": sum(r.get("seconds", 0.0) for r in summary.get("history", [])),
        "train_resumed_from_checkpoint": summary.get("resumed_from") is not None,
        "train_wall_seconds": wall,
        "train_processes": processes,
        "train_examples_per_second": summary.get("timings", {}).get("examples_per_second"),
        "trainer_final": summary.get("final"),
        "hardware": summary.get("hardware"),
        "code_commit": _commit(),
    }
    if not hamiltonian:
        result["test_fgsm_curve"] = fgsm_curve(model, x_test, y_test)
    result["eval_seconds"] = time.perf_counter() - t0
    target = paths.result(cell, seed)
    _write_json(result, target)
    log(f"{run_name(cell, seed)}: selection score {result['selection_score']:.4f}, test clean "
        f"{test['clean']:.4f}, written {target}")


def _commit():
    try:
        return subprocess.run(["git", "-C", ROOT, "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


# --- status and selection --------------------------------------------------------


def status(paths, runs):
    done_by_cell = {}
    for cell, seed in runs:
        state = "evaluated" if os.path.isfile(paths.result(cell, seed)) else (
            "trained" if paths.trained(cell, seed) else (
                "started" if os.path.isdir(paths.model_dir(cell, seed)) else "queued"))
        line = f"{run_name(cell, seed):34s} {state}"
        if state == "evaluated":
            with open(paths.result(cell, seed)) as f:
                r = json.load(f)
            done_by_cell.setdefault(cell, []).append(r)
            line += (f"  val score {r['selection_score']:.4f}  test clean {r['test']['clean']:.4f}"
                     f"  train {r['train_seconds']:.0f} s")
        print(line)
    print(f"\n{sum(len(v) for v in done_by_cell.values())} of {len(runs)} runs evaluated")
    for cell, results in done_by_cell.items():
        best = max(results, key=lambda r: r["selection_score"])
        scores = [r["selection_score"] for r in results]
        print(f"{cell:28s} {len(results)} seeds, val score mean {sum(scores) / len(scores):.4f}, "
              f"chosen by validation: seed{best['seed']} ({best['selection_score']:.4f})")


def selected_runs(only):
    runs = queue()
    if not only:
        return runs
    wanted = [w.strip() for w in only.split(",") if w.strip()]
    unknown = [w for w in wanted if w.split("/")[0] not in CELLS]
    if unknown:
        raise SystemExit(f"--only: unknown cells {unknown}; known: {', '.join(CELLS)}")
    return [(c, s) for c, s in runs if c in wanted or run_name(c, s) in wanted]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[2:]))
    parser.add_argument("--runs_root", default=os.path.join("runs", "seeds"),
                        help="model directories, <runs_root>/<cell>/seed<K> (default: runs/seeds)")
    parser.add_argument("--results_dir", default=os.path.join("docs", "results", "seeds"),
                        help="one JSON per run (default: docs/results/seeds)")
    parser.add_argument("--data_dir", default=os.path.join("runs", "seeds", "data"),
                        help="the 55,000-image training split, made here if missing (default: runs/seeds/data)")
    parser.add_argument("--source_data_dir", default=None,
                        help="the official data (default: the package's search order, e.g. data/)")
    parser.add_argument("--only", default=None, help="comma-separated cells or cell/seedK")
    parser.add_argument("--status", action="store_true", help="list every run's state and the per-cell summary")
    parser.add_argument("--job", default=None, help=argparse.SUPPRESS)  # "split", "<cell>/seed<K>" or "curve:<cell>/seed<K>"
    args = parser.parse_args(argv)
    paths = Paths(args)
    runs = selected_runs(args.only)
    if args.status:
        status(paths, runs)
        return 0
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if args.job == "split":
        prepare_split(paths)
        return 0
    if args.job:
        action, _, run = args.job.rpartition(":")  # "<cell>/seed<K>" or "curve:<cell>/seed<K>"
        cell, seed = run.split("/seed")
        (add_curve if action == "curve" else evaluate_run)(paths, cell, int(seed))
        return 0
    if _child(paths, "split") != 0:
        log("could not write the training split")
        return 1
    failed = []
    for i, (cell, seed) in enumerate(runs):
        if os.path.isfile(paths.result(cell, seed)) and not needs_curve(paths, cell, seed):
            continue
        with claimed(paths.model_dir(cell, seed)) as mine:
            if not mine:
                log(f"run {i + 1}/{len(runs)}: {run_name(cell, seed)} is held by another driver")
                continue
            if needs_curve(paths, cell, seed):
                if _child(paths, f"curve:{run_name(cell, seed)}") != 0:
                    failed.append(run_name(cell, seed))
                continue
            t0 = time.perf_counter()
            log(f"run {i + 1}/{len(runs)}: {run_name(cell, seed)}")
            if not (train(paths, cell, seed) and evaluate(paths, cell, seed)):
                failed.append(run_name(cell, seed))
                log(f"{run_name(cell, seed)}: FAILED, moving on")
            log(f"{run_name(cell, seed)}: done in {time.perf_counter() - t0:.0f} s")
    log(f"queue finished; failed: {failed or 'none'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
