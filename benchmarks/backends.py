"""Training steps of the N = 12 CH-NODE and the d = 64 stabilized NODE on each
Keras backend, side by side in one run.

    python -m benchmarks backends [--steps=30 --rounds=3 --batch_size=128]

Each backend runs in its own process (Keras picks its backend at import),
one after the other within a round, for ``--rounds`` rounds, so machine load
hits all alike. In each process Keras's own compiled training step
(``model.train_on_batch`` after ``compile(jit_compile="auto")``: XLA on JAX,
a ``tf.function`` on TensorFlow, eager on PyTorch: each backend's default) is
timed on batches already in memory, first calls (tracing) excluded, for:

* ``chnode``: ``models.build("chnode", depth=12)``;
* ``stable_node``: ``models.build("stable_node")`` (d = 64);
* ``anchor``: a plain Keras MLP (784-256-256-10) trained the same way, the
  reference of each process.

The figures are medians of seconds per step; the ratios are each model's time
against the anchor in the same process, and against TensorFlow's time for
the same model in the same run. Results go to ``benchmarks/results/backends.json``.
"""

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

from benchmarks._report import write_json

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
BACKENDS = ("tensorflow", "jax", "torch")
MODELS = ("chnode", "stable_node", "anchor")


def _build(name):
    import keras

    from contractive_keras import models

    if name == "chnode":
        return models.build("chnode", depth=12)
    if name == "stable_node":
        return models.build("stable_node")
    inputs = keras.Input((28, 28, 1))
    x = keras.layers.Flatten()(inputs)
    x = keras.layers.Dense(256, activation="relu")(x)
    x = keras.layers.Dense(256, activation="relu")(x)
    return keras.Model(inputs, keras.layers.Dense(10)(x))


def worker(steps, batch_size):
    """Times each model's training step on the backend of this process."""
    import warnings

    import keras

    warnings.filterwarnings("ignore")
    rng = np.random.default_rng(0)
    batches = [(rng.uniform(size=(batch_size, 28, 28, 1)).astype("float32"),
                rng.integers(0, 10, size=(batch_size,)).astype("int32")) for _ in range(4)]
    seconds = {}
    for name in MODELS:
        keras.utils.set_random_seed(0)
        model = _build(name)
        model.compile(optimizer=keras.optimizers.Adam(1e-3),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      jit_compile="auto")
        for x, y in batches[:2]:
            model.train_on_batch(x, y)          # tracing and compilation
        times = []
        for i in range(steps):
            x, y = batches[i % len(batches)]
            t0 = time.perf_counter()
            model.train_on_batch(x, y)          # returns host floats: synchronised
            times.append(time.perf_counter() - t0)
        seconds[name] = float(np.median(times))
    return {"backend": keras.backend.backend(), "seconds": seconds}


def run_backend(backend, steps, batch_size):
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
    command = [sys.executable, "-m", "benchmarks.backends", "--worker",
               f"--steps={steps}", f"--batch_size={batch_size}"]
    out = subprocess.run(command, env=env, capture_output=True, text=True, check=False,
                         cwd=os.path.dirname(os.path.dirname(RESULTS)))
    if out.returncode != 0:
        raise RuntimeError(f"{backend} worker failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.steps, args.batch_size)))
        return None
    runs = {backend: [] for backend in BACKENDS}
    for _ in range(args.rounds):
        for backend in BACKENDS:
            runs[backend].append(run_backend(backend, args.steps, args.batch_size)["seconds"])
    medians = {b: {m: float(np.median([r[m] for r in runs[b]])) for m in MODELS} for b in BACKENDS}
    print(f"{'seconds per training step (median)':38s}" + "".join(f"{b:>12s}" for b in BACKENDS))
    for model in MODELS:
        print(f"{model:38s}" + "".join(f"{1e3 * medians[b][model]:10.1f}ms" for b in BACKENDS))
    ratios = {b: {f"{m}/anchor": medians[b][m] / medians[b]["anchor"] for m in MODELS[:2]}
              for b in BACKENDS}
    for b in BACKENDS:
        ratios[b].update({f"{m}/tensorflow": medians[b][m] / medians["tensorflow"][m] for m in MODELS})
    for model in MODELS:
        print(f"{model + ' / tensorflow':38s}" + "".join(
            f"{ratios[b][model + '/tensorflow']:12.2f}" for b in BACKENDS))
    fastest = {m: min(BACKENDS, key=lambda b: medians[b][m]) for m in MODELS}
    print("fastest here: " + ", ".join(f"{m}: {b}" for m, b in fastest.items()))
    return write_json({"steps": args.steps, "rounds": args.rounds, "batch_size": args.batch_size,
                       "seconds_per_step": medians, "ratios": ratios, "fastest": fastest,
                       "runs": runs, "cpu_count": os.cpu_count()},
                      os.path.join(RESULTS, "backends.json"))


if __name__ == "__main__":
    main()
