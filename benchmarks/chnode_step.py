"""One training step of the depth-12 MNIST CH-NODE, side by side.

The step: forward, backward, Adam update and the constraints (what Keras
applies after ``apply_gradients``), batch 100, the reference architecture of
``contractive_keras.models.build`` (3x3 conv 1 -> 8, per-pixel ODE with 12
forward-Euler steps, h = 0.5, flatten, dense 10, cross-entropy plus the
reference regularization).  Timed against

  (i)  the same model written in PyTorch eager (the reference authors'
       framework; our own re-implementation of their H1_contract forward);
  (ii) the ResNet-ODE of the same depth built by this package.

Each case is warmed up, then timed in interleaved rounds (every framework
runs in each round, so load from other processes hits all alike) over a
pool of different batches (real MNIST when ``make data`` has run, else
uniform noise): one memorised batch drives tanh into saturation and the
gradients into subnormal floats, which distorts timings.  TensorFlow flushes
subnormals to zero on CPU; PyTorch does not by default, so it runs with
``torch.set_flush_denormal(True)`` (its time without it is reported too).
The constraint share is estimated twice: the constraints applied alone
(one more dispatch: an overestimate) over the step, and the step minus the
same step without constraints, over the step.

Run: ``python -m benchmarks.chnode_step`` (or ``make bench``).  Results are
printed and written as JSON (``--output``).
"""

import argparse
import os
import statistics
import sys
import time
import warnings

import numpy as np

from benchmarks._keras_step import plain_train_step
from benchmarks._report import print_table, write_json

DEPTH, BATCH, CHANNELS, STEP_SIZE = 12, 100, 8, 0.5
DEFAULT_OUTPUT = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                              "results", "chnode_step.json")


def batches(count, seed=0):
    """``count`` different (images, labels) batches, float32 [0, 1] NHWC."""
    try:
        from contractive_keras import data

        pool = []
        for x, y in data.load("mnist", "train", batch_size=BATCH).take(count):
            pool.append((np.asarray(x, np.float32), np.asarray(y, np.int32)))
        if len(pool) == count:
            return pool, "mnist"
    except Exception as error:  # noqa: BLE001 - fall back to noise, say so
        print(f"[chnode_step] MNIST unavailable ({error}); timing on uniform noise",
              file=sys.stderr)
    rng = np.random.default_rng(seed)
    return [(rng.random((BATCH, 28, 28, 1), dtype=np.float32),
             rng.integers(0, 10, BATCH).astype(np.int32)) for _ in range(count)], "noise"


def prepare_keras(name, pool, jit_compile, constraints=True):
    """Returns (step, constraint_only, count) for a models.build model.

    ``constraints=False`` removes the variables' constraints (the twin that
    measures their share inside the compiled step).
    """
    import tensorflow as tf

    from contractive_keras import models

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # the reference h = 0.5 is not certified
        model = models.build(name, depth=DEPTH)
    constrained = [v for v in model.trainable_variables if v.constraint is not None]
    if not constraints:
        for v in constrained:
            v.constraint = None
        constrained = []
    step = plain_train_step(model, jit_compile)

    @tf.function(jit_compile=jit_compile)
    def constrain():
        for v in constrained:
            v.assign(v.constraint(v))
        return tf.constant(0.0)

    tensors = [(tf.constant(x), tf.constant(y)) for x, y in pool]
    state = {"i": 0}

    def run_step():
        x, y = tensors[state["i"] % len(tensors)]
        state["i"] += 1
        step(x, y).numpy()

    def run_constraint():
        constrain().numpy()

    run_step()
    run_constraint()
    return run_step, run_constraint, len(constrained)


def prepare_torch(pool, flush_denormal=True):
    """The reference CH-NODE in PyTorch eager (H1_contract, forward Euler)."""
    import torch
    import torch.nn.functional as F

    torch.set_flush_denormal(flush_denormal)
    torch.manual_seed(0)

    class CHNODE(torch.nn.Module):
        def __init__(self, nf=CHANNELS, layers=DEPTH, h=STEP_SIZE):
            super().__init__()
            self.K = torch.nn.Parameter(torch.randn(nf, nf, layers))
            self.b = torch.nn.Parameter(torch.randn(nf, 1, layers))
            self.M = 0.02 * torch.eye(nf)
            half = nf // 2
            eye, zero = torch.eye(half), torch.zeros(half, half)
            self.J = torch.cat((torch.cat((zero, eye), 0), torch.cat((-eye, zero), 0)), 1)
            self.layers, self.h, self.nf, self.eps = layers, h, nf, 1e-6
            self.r = torch.tensor(1.0)
            self.update_r()

        def update_r(self):
            with torch.no_grad():
                k_max = max(torch.linalg.eigvalsh(self.K[:, :, j].T @ self.K[:, :, j])[-1]
                            for j in range(self.layers))
                mtm = torch.linalg.eigvalsh(self.M.T @ self.M)
                c1, c2 = mtm[0], k_max + mtm[-1]
                alpha = (c2 - c1) / (c2 + c1)
                self.r = torch.sqrt((alpha ** 2 + self.eps) / (1 - alpha ** 2 - self.eps))

        def forward(self, y0):
            y = y0.transpose(1, 3)
            A = self.J - self.r * torch.eye(self.nf)
            MtM = self.M.T @ self.M
            for j in range(self.layers):
                y = (y + self.h * F.linear(torch.tanh(F.linear(y, self.K[:, :, j].T,
                                                                self.b[:, 0, j])),
                                           A @ self.K[:, :, j])
                     + self.h * F.linear(F.linear(y, MtM.T), A))
            return y.transpose(1, 3)

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(1, CHANNELS, 3, padding=1)
            self.ode = CHNODE()
            self.fc = torch.nn.Linear(CHANNELS * 28 * 28, 10)

        def forward(self, x):
            x = self.ode(self.conv((x - 0.1307) / 0.3081))
            return self.fc(x.reshape(-1, CHANNELS * 28 * 28))

    def smoothness(K, b, alpha=1e-3):
        return alpha * STEP_SIZE * sum(
            0.5 * (torch.sum((K[:, :, j + 1] - K[:, :, j]) ** 2)
                   + torch.sum((b[:, :, j + 1] - b[:, :, j]) ** 2))
            for j in range(K.shape[-1] - 1))

    model = Net()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=2e-4)
    tensors = [(torch.from_numpy(x.transpose(0, 3, 1, 2).copy()),
                torch.from_numpy(y.astype(np.int64))) for x, y in pool]
    state = {"i": 0}

    def run_step():
        x, y = tensors[state["i"] % len(tensors)]
        state["i"] += 1
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x), y) + smoothness(model.ode.K, model.ode.b)
        loss.backward()
        optimizer.step()
        model.ode.update_r()

    run_step()
    return run_step


def time_interleaved(cases, rounds, steps_per_round, settle=0.3):
    """Median seconds per call of each case, rounds interleaved.

    After each case the loop idles ``settle`` seconds (untimed): PyTorch's
    worker threads spin-wait after a call, and on 2 cores they starve the
    next case (TensorFlow measured 1.7x slower right after PyTorch without
    the pause, unchanged with it when PyTorch is absent).
    """
    samples = {name: [] for name in cases}
    for _ in range(rounds):
        for name, run in cases.items():
            start = time.perf_counter()
            for _ in range(steps_per_round):
                run()
            samples[name].append((time.perf_counter() - start) / steps_per_round)
            time.sleep(settle)
    return {name: statistics.median(values) for name, values in samples.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps_per_round", type=int, default=5)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--output", default=DEFAULT_OUTPUT)
    parser.add_argument("--no_torch", action="store_true")
    parser.add_argument("--threads", type=int, default=0,
                        help="intra-op threads of both frameworks (0: their defaults); "
                             "1 is steadier on a machine shared with other jobs")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    info = {}
    if args.threads:
        import tensorflow as tf
        import torch

        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
        torch.set_num_threads(args.threads)
        info["threads"] = args.threads

    pool, source = batches(args.batches)
    cases, constraint_cases = {}, {}
    for jit in (True, False):
        mode = "xla" if jit else "graph"
        for name in ("chnode", "resnet"):
            step, constrain, count = prepare_keras(name, pool, jit)
            cases[f"keras_{name}_{mode}"] = step
            if count:
                constraint_cases[f"keras_{name}_{mode}_constraint_alone"] = constrain
                cases[f"keras_{name}_{mode}_without_constraint"] = prepare_keras(
                    name, pool, jit, constraints=False)[0]
    if not args.no_torch:
        cases["torch_eager"] = prepare_torch(pool, flush_denormal=True)
    timings = time_interleaved({**cases, **constraint_cases}, args.rounds,
                               args.steps_per_round)
    if not args.no_torch:
        slow = prepare_torch(pool, flush_denormal=False)
        timings["torch_eager_no_flush"] = time_interleaved(
            {"t": slow}, max(2, args.rounds // 3), args.steps_per_round)["t"]
        import torch

        torch.set_flush_denormal(True)
        info["torch_threads"] = torch.get_num_threads()

    ratios = {}
    for mode in ("xla", "graph"):
        ch = timings[f"keras_chnode_{mode}"]
        ratios[f"chnode_{mode}_over_resnet_{mode}"] = ch / timings[f"keras_resnet_{mode}"]
        # Two estimates: the constraint called alone (a separate dispatch, an
        # overestimate), and the step with minus the step without.
        ratios[f"constraint_alone_share_{mode}"] = (
            timings[f"keras_chnode_{mode}_constraint_alone"] / ch)
        ratios[f"constraint_in_step_share_{mode}"] = (
            (ch - timings[f"keras_chnode_{mode}_without_constraint"]) / ch)
        if not args.no_torch:
            ratios[f"chnode_{mode}_over_torch"] = ch / timings["torch_eager"]
    import tensorflow as tf

    results = {
        "setting": {"depth": DEPTH, "batch": BATCH, "channels": CHANNELS,
                    "step_size": STEP_SIZE, "data": source, "rounds": args.rounds,
                    "steps_per_round": args.steps_per_round,
                    "tensorflow": tf.__version__, "cpus": os.cpu_count(), **info},
        "seconds_per_step": timings,
        "ratios": ratios,
        "targets": {"chnode_over_torch": 0.5, "chnode_over_resnet": 1.2,
                    "constraint_share": 0.03},
    }
    print_table("case", "ms/step", timings, ratios)
    return write_json(results, args.output)


if __name__ == "__main__":
    main()
