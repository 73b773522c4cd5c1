#!/usr/bin/env python3
"""Does a looser solver tolerance make an ODE model look more robust? (Carrara et al. 2019)

    python scripts/tolerance_study.py --model=stable_node_mnist --take=200 --eps=0.05

The zoo's ODE models are integrated by fixed-step Euler. This re-solves one
model's trained weights with this package's adaptive Dormand-Prince pair at a
loose and a tight tolerance (``robustness.with_solver``) and, on the first
``--take`` test images at L-inf ``--eps``, runs the standard suite (APGD-CE,
APGD-T, Square) on each map directly, and as a transfer attack from the
tight map to the loose one (``robustness.transfer_suite``). If the loose map
were robust only because its gradients are noisy, the transfer attack would
break what the direct attack did not. Writes
``docs/results/standard/tolerance_study.json`` (docs/robustness.md).
"""

import argparse
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

TOLERANCES = {"loose": 1e-2, "tight": 1e-6}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="stable_node_mnist")
    parser.add_argument("--take", type=int, default=200)
    parser.add_argument("--eps", type=float, default=0.05)
    parser.add_argument("--output", default=os.path.join(ROOT, "docs", "results", "standard",
                                                         "tolerance_study.json"))
    args = parser.parse_args(argv)
    import numpy as np

    from contractive_keras import data, robustness, zoo
    from contractive_keras.solvers import SolverSpec

    model = zoo.load(args.model)
    [layer] = robustness.solver_variants.ode_layers(model)
    t1 = layer.solver_spec.t1
    x, y = data.load_numpy(zoo.info(args.model)["dataset"], "test")
    x, y = (x[:args.take, ..., None] / 255.0).astype(np.float32), y[:args.take].astype(np.int32)
    maps = {"inference (Euler)": model}
    maps.update({f"dopri5 rtol=atol={tol:g} ({name})": robustness.with_solver(
        model, SolverSpec("dopri5", t1=t1, rtol=tol, atol=tol)) for name, tol in TOLERANCES.items()})
    rows = []
    for label, m in maps.items():
        t0 = time.perf_counter()
        result = robustness.run_suite(m, x, y, args.eps, suite="standard", seed=0)
        rows.append({"map": label, "attack": "direct", "clean": result.clean_accuracy, "robust": result.accuracy,
                     "accuracy_after": {a: result.accuracy_after(a) for a in result.attacks},
                     "seconds": time.perf_counter() - t0})
        print(rows[-1], flush=True)
    loose, tight = (maps[k] for k in list(maps)[1:])
    robust, _ = robustness.transfer_suite(loose, tight, x, y, args.eps, suite="standard", seed=0)
    rows.append({"map": list(maps)[1], "attack": f"transfer from {list(maps)[2]}", "robust": float(robust.mean())})
    print(rows[-1], flush=True)
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    with open(args.output, "w") as f:
        json.dump({"command": f"python scripts/tolerance_study.py --model={args.model} --take={args.take} "
                              f"--eps={args.eps:g}", "model": args.model, "take": args.take, "eps": args.eps,
                   "norm": "linf", "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
