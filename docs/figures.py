#!/usr/bin/env python3
"""The figures of the documentation (docs/figures.md), one function each.

    python docs/figures.py                      # every figure
    python docs/figures.py toy_trajectories     # some figures
    python docs/figures.py --list               # names and what each shows

Each figure is written to ``docs/<name>.png`` (``--output_dir`` to change) by
the function of the same name, which also prints the numbers quoted in
docs/figures.md.  Everything is computed here from a fixed seed (the toy
figures train their models in a minute or two of CPU each), except the
accuracy figures, which read zoo/manifest.json (the metrics ``zoo/build.py``
exported for each shipped model), the L2 tables of docs/results/l2 and the
seed results of docs/results/seeds.  Needs the ``plots`` extra (matplotlib); the
backend is Agg (no display).

The figures live in docs/figures_toy.py, docs/figures_stabilized.py and
docs/figures_zoo.py (shared pieces: docs/figure_tools.py); this file is the
command line and imports them all.
"""

import argparse
import os
import sys
import time
import warnings

DOCS = os.path.dirname(os.path.abspath(__file__))
if DOCS not in sys.path:
    sys.path.insert(0, DOCS)

from figure_tools import FIGURES, RESULTS_L2, quiet_tensorflow  # noqa: E402
from figures_toy import (  # noqa: E402,F401  (registers the toy figures; names for the tests)
    RINGS, STATE_SIZE, TOY, bsm_training, double_circles, lift, toy_trajectories)
from figures_stabilized import STABILIZED, lipschitz_vs_delta_bar  # noqa: E402,F401
from figures_zoo import (  # noqa: E402,F401
    MANIFEST, SEEDS_DIR, accuracy_table, accuracy_vs_attack, accuracy_vs_noise,
    certified_accuracy_l2, metric_series, seed_spread, zoo_metrics)


# --- command line ------------------------------------------------------------


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="figures to make (default: all)")
    parser.add_argument("--list", action="store_true", help="list the figures and exit")
    parser.add_argument("--accuracy_table", action="store_true",
                        help="print docs/figures.md's table of the accuracy figures' numbers and exit")
    parser.add_argument("--output_dir", default=DOCS, help="where the PNGs go (default docs/)")
    parser.add_argument("--results_dir", default=RESULTS_L2,
                        help="L2 evaluation tables (default docs/results/l2)")
    parser.add_argument("--manifest", default=MANIFEST,
                        help="the zoo manifest the accuracy figures plot (default zoo/manifest.json)")
    parser.add_argument("--seeds_dir", default=SEEDS_DIR,
                        help="per-seed result JSONs of zoo/seeds.py (default docs/results/seeds)")
    args = parser.parse_args(argv)
    if args.accuracy_table:
        print(accuracy_table(args.manifest))
        return 0
    if args.list:
        for name, function in FIGURES.items():
            print(f"{name:26s} {function.__doc__.splitlines()[0]}")
        return 0
    unknown = [n for n in args.names if n not in FIGURES]
    if unknown:
        parser.error(f"unknown figures {unknown}; known: {sorted(FIGURES)}")
    warnings.simplefilter("ignore", category=UserWarning)
    quiet_tensorflow()
    for name in args.names or list(FIGURES):
        output = os.path.join(args.output_dir, f"{name}.png")
        start = time.perf_counter()
        kwargs = {"manifest": args.manifest} if name.startswith("accuracy") else {}
        if name == "certified_accuracy_l2":
            kwargs = {"results_dir": args.results_dir}
        if name == "seed_spread":
            kwargs = {"seeds_dir": args.seeds_dir}
        FIGURES[name](output, **kwargs)
        print(f"wrote {os.path.relpath(output)} ({time.perf_counter() - start:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
