"""train.py's step against the bare compiled training step, same process.

    python -m benchmarks train_step [--model=chnode --depth=12 --steps=60]

Three timings per round, interleaved in rounds so machine load hits all alike:

* bare: the trainer's own compiled step (``Trainer._train_step``: forward,
  backward, Adam update and constraints under ``strategy.run``) called in a
  tight loop on tensors already in memory, one host sync per call;
* trainer: ``Trainer.run()`` for the same number of steps: the same step plus
  the tf.data pipeline, the distributed iterator, the host-side NaN check,
  checkpoint bookkeeping and the progress bar (its own timings: train
  seconds / steps, first step excluded);
* keras: an independent plain ``tf.function`` step (``GradientTape`` + Adam,
  no strategy) on the same model, for reference.

The result, the ratio of medians trainer / bare (target <= 1.1), goes to
``benchmarks/results/train_step.json``.
"""

import argparse
import json
import os
import tempfile
import time

import numpy as np

from benchmarks._keras_step import plain_train_step

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def plain_keras_step_seconds(model_name, depth, batches, rounds_steps):
    import keras

    from contractive_keras import models

    keras.utils.set_random_seed(0)
    model = models.build(model_name, depth=depth)
    step = plain_train_step(model)

    step(*batches[0]).numpy()  # trace
    times = []
    for i in range(rounds_steps):
        x, y = batches[(i + 1) % len(batches)]
        t0 = time.perf_counter()
        step(x, y).numpy()
        times.append(time.perf_counter() - t0)
    return times


def trainer_step_seconds(model_name, depth, steps, batch_size, batches):
    """(bare seconds per step, trainer seconds per step) of one Trainer."""
    import tensorflow as tf

    from contractive_keras.training import TrainConfig, Trainer

    with tempfile.TemporaryDirectory() as tmp:
        config = TrainConfig(model=model_name, depth=depth, epochs=1, steps_per_epoch=steps,
                             batch_size=batch_size, learning_rate=1e-3, model_dir=tmp, verbose=1,
                             checkpoint_every=0, eval_take=500, strategy="one_device")
        trainer = Trainer(config)
        tensors = [(tf.constant(x), tf.constant(y)) for x, y in batches]
        trainer._train_step(*tensors[0])[0].numpy()  # trace
        bare = []
        for i in range(steps):
            t0 = time.perf_counter()
            trainer._train_step(*tensors[(i + 1) % len(tensors)])[0].numpy()
            bare.append(time.perf_counter() - t0)
        trainer.run()
        timings = trainer.timings
    return float(np.median(bare)), timings["train_seconds"] / (timings["train_examples"] / batch_size)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="chnode")
    parser.add_argument("--depth", type=int, default=12)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch_size", type=int, default=100)
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import warnings

    from contractive_keras import data

    warnings.filterwarnings("ignore", category=RuntimeWarning)  # uncertified-step notices
    x, y = data.load_numpy("mnist", "train")
    rng = np.random.default_rng(0)
    batches = []
    for _ in range(20):  # varied batches: a memorised batch distorts timings
        idx = rng.choice(len(y), args.batch_size, replace=False)
        batches.append(((x[idx, ..., None] / 255.0).astype("float32"), y[idx].astype("int32")))
    bare, trainer, plain = [], [], []
    for _ in range(args.rounds):
        plain.append(float(np.median(plain_keras_step_seconds(args.model, args.depth, batches, args.steps))))
        b, t = trainer_step_seconds(args.model, args.depth, args.steps, args.batch_size, batches)
        bare.append(b)
        trainer.append(t)
    result = {
        "model": args.model, "depth": args.depth, "batch_size": args.batch_size, "steps": args.steps,
        "bare_step_ms": [1e3 * t for t in bare], "trainer_step_ms": [1e3 * t for t in trainer],
        "plain_keras_step_ms": [1e3 * t for t in plain],
        "ratio_trainer_over_bare": float(np.median(trainer) / np.median(bare)),
        "trainer_examples_per_second": float(args.batch_size / np.median(trainer)),
        "load_average": os.getloadavg(),
    }
    print(json.dumps(result, indent=2))
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, "train_step.json"), "w") as f:
        json.dump(result, f, indent=2)
    return result


if __name__ == "__main__":
    main()
