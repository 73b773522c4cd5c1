"""Cost of the standard worst-case attack on this machine, against PGD-40 timed in the same process.

    python -m benchmarks standard_attack
    python -m benchmarks.standard_attack --take=1000 --models=chnode_mnist_n12,stable_node_mnist

For each zoo model, on the first ``--take`` MNIST test images at L-inf
``--eps``: the wall time of ``robustness.run_suite(..., suite="standard")``
(APGD-CE, APGD-T, Square, each on the images the others left robust) and of
``suite="quick"``, and the ratio of each to one PGD-40 run (margin loss, one
random start) on the same images, the reference. Attack times depend on how
many images stay robust (a broken image is not attacked again), so the
robust accuracies are printed with them. Writes
``benchmarks/results/standard_attack.json``.
"""

import argparse
import os
import time

import numpy as np

from benchmarks._report import print_table, write_json

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "standard_attack.json")


def time_model(name, take, eps):
    import tensorflow as tf

    from contractive_keras import data, robustness, zoo

    model = zoo.load(name)
    x, y = data.load_numpy(zoo.info(name)["dataset"], "test")
    x, y = (x[:take, ..., None] / 255.0).astype(np.float32), y[:take].astype(np.int32)
    pgd = tf.function(lambda a, b: robustness.pgd(model, a, b, eps, loss="margin", steps=40, seed=0))
    pgd(x[:2], y[:2])  # trace once: the reference pays no tracing
    t0 = time.perf_counter()
    for i in range(0, take, 500):
        pgd(x[i:i + 500], y[i:i + 500])
    reference = time.perf_counter() - t0
    out = {"pgd40_seconds": reference}
    for suite in ("standard", "quick"):
        t0 = time.perf_counter()
        result = robustness.run_suite(model, x, y, eps, suite=suite, seed=0)
        out[f"{suite}_seconds"] = time.perf_counter() - t0
        out[f"{suite}_accuracy"] = result.accuracy
        out[f"{suite}_per_attack_seconds"] = result.seconds
        out[f"{suite}_over_pgd40"] = out[f"{suite}_seconds"] / reference
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="chnode_mnist_n12,stable_node_mnist")
    parser.add_argument("--take", type=int, default=1000)
    parser.add_argument("--eps", type=float, default=0.05)
    parser.add_argument("--output", default=RESULTS)
    args = parser.parse_args(argv)
    results = {"take": args.take, "eps": args.eps, "norm": "linf", "cpu_count": os.cpu_count(), "models": {}}
    for name in filter(None, args.models.split(",")):
        results["models"][name] = r = time_model(name, args.take, args.eps)
        print_table(f"{name} ({args.take} images, L-inf {args.eps:g})", "s",
                    {k: r[k] for k in ("pgd40_seconds", "standard_seconds", "quick_seconds")},
                    {k: r[k] for k in ("standard_over_pgd40", "quick_over_pgd40")}, scale=1.0)
        write_json(results, args.output)
    return results


if __name__ == "__main__":
    main()
