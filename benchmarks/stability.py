"""Stabilized NODE: cost of delta / min_perturbation against d, and of the constraint.

``python -m benchmarks.stability [--dims 8 16 ...] [--rounds N] [--quick]``;
JSON in ``benchmarks/results/stability.json``.

1. NumPy analysis, d = 8 ... 256: ``delta`` (exact up to d = 16, lower,
   upper) and ``min_perturbation`` (exact at d = 8, certified "upper" for
   all d) on A = 2 G / sqrt(d) (G standard normal), delta_bar = lower - 0.5.
2. ``DeltaBarProjection`` alone, graph mode, warm state, binding regime
   (each call sees the previous result plus an Adam-sized step).
3. Its share of a bare custom-loop training step (``tf.function`` with a
   ``GradientTape``, as in ``benchmarks/chnode_step.py``) of
   ``models.build("stable_node", depth=12)`` (flatten + dense lift to
   d = 64, StabilizedNODE with 12 Euler steps, dense 10), batch 100: the
   step with the constraint against the identical step of
   ``models.build("node", depth=12)``, interleaved rounds, medians; the
   constraint applied alone on the trained kernel; and how many of the
   constraint's calls projected (the others were kept by its certified
   cheap test).
4. ||Delta|| of the constraint against the Frobenius-minimal certified
   perturbation (``min_perturbation(method="upper")``).
"""

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")   # small matrices: threads only hurt
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

# The training-step share is measured on the setting of issue 16: d = 64,
# 12 Euler steps, batch 100.
TRAINING_DEPTH, TRAINING_BATCH = 12, 100
RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "stability.json")


def _time(fn, repeats=1):
    start = time.perf_counter()
    for _ in range(repeats):
        out = fn()
    return (time.perf_counter() - start) / repeats, out


def analysis(dims, rounds):
    from contractive_keras import stability

    rows = []
    for d in dims:
        rng = np.random.default_rng(d)
        A = 2 * rng.standard_normal((d, d)) / np.sqrt(d)
        row = {"d": d}
        row["lower_s"], lower = _time(lambda: stability.delta(A, 0.1, "lower"), rounds)
        row["upper_s"], upper = _time(lambda: stability.delta(A, 0.1, "upper"), rounds)
        row["cheap_s"], cheap = _time(lambda: stability.delta(A, 0.1, "upper", bound="cheap"), rounds)
        row.update(lower=lower.value, upper=upper.value, cheap=cheap.value)
        if d <= 16:
            row["exact_s"], exact = _time(lambda: stability.delta(A, 0.1, "exact"))
            row["exact"] = exact.value
        delta_bar = lower.value - 0.5
        if d <= 8:
            row["min_perturbation_exact_s"], result = _time(
                lambda: stability.min_perturbation(A, 0.1, delta_bar, method="exact"))
            row["norm_exact"] = result.norm
        budget = 200 if d <= 64 else 40
        row["min_perturbation_upper_s"], result = _time(
            lambda: stability.min_perturbation(A, 0.1, delta_bar, method="upper",
                                               max_refinements=budget))
        row.update(norm_upper=result.norm, norm_lower=result.norm_lower,
                   certified_minus_target=result.delta.value - delta_bar,
                   upper_converged=result.converged, upper_evaluations=result.refinement_iterations)
        print("  d=%3d  lower %.3fs  upper %.3fs  exact %s  min_pert(upper) %.2fs  gap %.3g"
              % (d, row["lower_s"], row["upper_s"],
                 "%.3fs" % row["exact_s"] if "exact_s" in row else "-",
                 row["min_perturbation_upper_s"], row["upper"] - row["lower"]), flush=True)
        rows.append(row)
    return rows


def constraint_alone(dims, calls):
    import tensorflow as tf

    from contractive_keras.constraints import DeltaBarProjection

    rows = []
    for d in dims:
        rng = np.random.default_rng(d)
        constraint = DeltaBarProjection(0.1, 0.0, step_size=0.1)
        kernel = tf.Variable((2 * rng.standard_normal((d, d)) / np.sqrt(d)).astype("float32"))
        constraint.build((d, d))
        project = tf.function(lambda: kernel.assign(constraint(kernel)))
        push = tf.function(lambda n: kernel.assign_add(1e-3 * tf.sign(n)))
        project()   # trace, first (re-optimising) projection
        noise = [tf.constant(rng.standard_normal((d, d)), tf.float32) for _ in range(8)]
        times = []
        for i in range(calls):
            push(noise[i % 8])
            start = time.perf_counter()
            project()
            times.append(time.perf_counter() - start)
        rows.append({"d": d, "median_ms": 1e3 * statistics.median(times),
                     "p90_ms": 1e3 * sorted(times)[int(0.9 * len(times))]})
        print("  d=%3d  constraint %.3f ms (median, binding, every %d-th call refreshes T)"
              % (d, rows[-1]["median_ms"], constraint.refresh_every), flush=True)
    return rows


def _batches(batch_size, count):
    try:
        from contractive_keras import data

        dataset = data.load("mnist", "train", batch_size)
        return [(x, y) for x, y in dataset.take(count)], "mnist"
    except Exception:  # noqa: BLE001 -- no data on this machine: random images
        rng = np.random.default_rng(0)
        return [(rng.random((batch_size, 28, 28, 1), np.float32),
                 rng.integers(0, 10, batch_size).astype("int32")) for _ in range(count)], "random"


def training_share(rounds, steps_per_round, jit):
    import keras
    import tensorflow as tf

    from contractive_keras import models

    batches, source = _batches(TRAINING_BATCH, 20)
    cases = {}
    for name in ("node", "stable_node"):
        keras.utils.set_random_seed(0)
        model = models.build(name, depth=TRAINING_DEPTH)
        optimizer = keras.optimizers.Adam(1e-3)
        optimizer.build(model.trainable_variables)
        loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

        def step(x, y, model=model, optimizer=optimizer, loss_fn=loss_fn):
            with tf.GradientTape() as tape:
                loss = loss_fn(y, model(x, training=True))
            grads = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(grads, model.trainable_variables))
            return loss

        cases[name] = (model, tf.function(step, jit_compile=jit))
    if cases["stable_node"][0].get_layer("stabilized_node").kernel_constraint is None:
        raise RuntimeError("stable_node has no constraint")
    for name, (_, step) in cases.items():   # trace, first projection, warm-up
        for x, y in batches[:5]:
            step(x, y)
    medians = {name: [] for name in cases}
    for r in range(rounds):
        for name, (_, step) in cases.items():
            start = time.perf_counter()
            for i in range(steps_per_round):
                x, y = batches[(r * steps_per_round + i) % len(batches)]
                loss = step(x, y)
            float(loss)
            medians[name].append((time.perf_counter() - start) / steps_per_round)
    model = cases["stable_node"][0]
    kernel = model.get_layer("stabilized_node").kernel
    constraint = kernel.constraint
    steps_taken = 5 + rounds * steps_per_round
    projecting_calls = int(constraint._state[2].numpy())  # pylint: disable=protected-access
    alone = tf.function(lambda: constraint(kernel), jit_compile=jit)
    alone()
    alone_times = []
    for _ in range(rounds * steps_per_round):
        start = time.perf_counter()
        float(tf.reduce_sum(alone()))
        alone_times.append(time.perf_counter() - start)
    node = statistics.median(medians["node"])
    stable = statistics.median(medians["stable_node"])
    alone = statistics.median(alone_times)
    result = {"data": source, "jit_compile": jit, "node_ms": 1e3 * node, "stable_node_ms": 1e3 * stable,
              "constraint_alone_ms": 1e3 * alone, "share_difference": (stable - node) / stable,
              "share_alone": alone / stable, "steps": steps_taken,
              "projecting_calls": projecting_calls, "depth": TRAINING_DEPTH,
              "batch": TRAINING_BATCH, "load_average": os.getloadavg()}
    print("  %s: node %.2f ms, stable_node %.2f ms, constraint alone %.2f ms; share %.0f%% "
          "(difference), %.0f%% (alone); %d of %d calls projected (target share <= 20%%)"
          % ("XLA" if jit else "graph", result["node_ms"], result["stable_node_ms"],
             result["constraint_alone_ms"], 100 * result["share_difference"],
             100 * result["share_alone"], projecting_calls, steps_taken), flush=True)
    return result


def projection_quality(dims):
    from contractive_keras import stability
    from contractive_keras.constraints import DeltaBarProjection

    rows = []
    for d in dims:
        rng = np.random.default_rng(100 + d)
        A = (2 * rng.standard_normal((d, d)) / np.sqrt(d)).astype("float32")
        for delta_bar in (0.0, stability.delta(A, 0.1, "lower").value - 0.2):
            B = np.asarray(DeltaBarProjection(0.1, delta_bar)(A), np.float64)
            reference = stability.min_perturbation(A, 0.1, delta_bar, method="upper")
            rows.append({"d": d, "delta_bar": delta_bar,
                         "constraint_norm": float(np.linalg.norm(B - A)),
                         "min_certified_norm": reference.norm,
                         "exact_lower_bound": reference.norm_lower,
                         "ratio": float(np.linalg.norm(B - A)) / reference.norm})
            print("  d=%3d delta_bar=%+.2f  ||Delta|| constraint %.4f / minimal certified %.4f = "
                  "%.3f (exact problem >= %.4f)" % (d, delta_bar, rows[-1]["constraint_norm"],
                                                    reference.norm, rows[-1]["ratio"],
                                                    reference.norm_lower), flush=True)
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dims", type=int, nargs="*", default=[8, 16, 32, 64, 128, 256])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="small sizes, few rounds")
    args = parser.parse_args(argv)
    if args.quick:
        args.dims, args.rounds = [8, 16, 32], 3
    results = {"load_average": os.getloadavg()}
    print("delta and min_perturbation (NumPy, float64):", flush=True)
    results["analysis"] = analysis(args.dims, 1)
    print("DeltaBarProjection alone (graph mode):", flush=True)
    results["constraint"] = constraint_alone([d for d in args.dims if d <= 128], 100)
    print("share of a training step (batch %d, d = 64, %d Euler steps):"
          % (TRAINING_BATCH, TRAINING_DEPTH), flush=True)
    results["training_step"] = [training_share(args.rounds, 20, jit) for jit in (False, True)]
    print("perturbation norms:", flush=True)
    results["projection_quality"] = projection_quality([8, 32, 64] if not args.quick else [8])
    results["load_average_end"] = os.getloadavg()
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    with open(RESULTS, "w") as f:
        json.dump(results, f, indent=2, default=float)
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
