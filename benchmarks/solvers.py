"""Side-by-side timing of contractive_keras.solvers, torchdiffeq and diffrax.

Problem (the same numbers in every framework, float32): batch 64, state 32,
vector field f(t, y) = tanh(y W1 + b1) W2 + b2 with W1: 32x64, W2: 64x32
(a two-layer tanh MLP of width 64), weights drawn once with NumPy.

Cases:
  rk4_forward           classic RK4, 100 steps on [0, 1], y(1)
  rk4_forward_backward  the same plus the gradient of sum(y(1)^2) with
                        respect to the four weight tensors (backprop)
  dopri5_forward        Dormand-Prince 5(4), rtol = atol = 1e-6 on [0, 10]
                        (NFE reported; each library's own step-size control)
  dopri5_forward_backward  the same plus the gradient of sum(y(10)^2) with
                        respect to the weights, each library's default
                        gradient (ours: "backprop", recorded steps; diffrax:
                        RecursiveCheckpointAdjoint with max_steps = 1000,
                        our Dopri5's bound; torchdiffeq: autograd through
                        its loop); also its peak memory, each framework in a
                        fresh process

Each case is compiled once per framework (TF: tf.function with XLA, called
through its concrete function; PyTorch: eager and torch.compile, the faster
kept; JAX: jax.jit), warmed up, then timed ``--repeats`` times. TF and JAX
calls alternate one by one, so that load from other processes hits both
alike; the tfp adapter and PyTorch run in phases of their own afterwards
(their thread pools spin after each call and would slow whatever runs
next). The table shows
medians (JSON: also minima) and ours/theirs. torchdiffeq runs eagerly
(``--torch_compile`` also tries ``torch.compile``, which fails on its
dopri5). An extra section (``--unroll``) times unrolled against while-loop
fixed-step integration for 2..32 steps, with and without XLA, the
measurement behind ``fixed_step.UNROLL_THRESHOLDS``.

Run: ``python -m benchmarks.solvers`` (or ``make bench``); results are also
written as JSON (``--output``).
"""

import argparse
import json
import os
import subprocess
import sys


from benchmarks._solver_anchors import BATCH
from benchmarks._solver_anchors import DOPRI_MAX_STEPS
from benchmarks._solver_anchors import DOPRI_T1
from benchmarks._solver_anchors import DOPRI_TOL
from benchmarks._solver_anchors import RK4_STEPS
from benchmarks._solver_anchors import STATE
from benchmarks._solver_anchors import WIDTH
from benchmarks._solver_anchors import make_problem
from benchmarks._solver_anchors import peak_memory_mib
from benchmarks._solver_anchors import prepare_diffrax
from benchmarks._solver_anchors import prepare_jax_loop
from benchmarks._solver_anchors import prepare_torchdiffeq
from benchmarks._solver_anchors import time_interleaved
from benchmarks._solver_anchors import time_interleaved_with_min

DEFAULT_OUTPUT = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                              "results", "solvers.json")


# Each prepare_* function compiles and warms up its cases and returns
# {case: (run, info)}: ``run()`` blocks until the result is ready, ``info``
# holds NFE and configuration. Timing is interleaved across frameworks
# (see ``time_interleaved``) so that load from other processes on a shared
# machine affects every framework alike.

def _ours_field(problem):
    import tensorflow as tf

    variables = [tf.Variable(problem[k]) for k in ("w1", "b1", "w2", "b2")]
    w1, b1, w2, b2 = variables

    def field(t, y):
        return tf.matmul(tf.tanh(tf.matmul(y, w1) + b1), w2) + b2

    return field, variables, tf.constant(problem["y0"])


def prepare_ours(problem):
    import tensorflow as tf

    from contractive_keras import solvers

    field, variables, y0 = _ours_field(problem)

    @tf.function(jit_compile=True)
    def rk4_forward(y):
        return solvers.odeint(field, y, 1.0, method="rk4", steps=RK4_STEPS)

    @tf.function(jit_compile=True)
    def rk4_forward_backward(y):
        with tf.GradientTape() as tape:
            y1 = solvers.odeint(field, y, 1.0, method="rk4", steps=RK4_STEPS)
            loss = tf.reduce_sum(y1 ** 2)
        return loss, tape.gradient(loss, variables)

    @tf.function(jit_compile=True)
    def dopri5_forward(y):
        return solvers.solve(field, y, DOPRI_T1, method="dopri5",
                             rtol=DOPRI_TOL, atol=DOPRI_TOL)

    @tf.function(jit_compile=True)
    def dopri5_forward_backward(y):
        # The default gradient method ("backprop"); "dopri5" is
        # solvers.Dopri5(max_steps=DOPRI_MAX_STEPS).
        with tf.GradientTape() as tape:
            solution = solvers.solve(field, y, DOPRI_T1, method="dopri5",
                                     rtol=DOPRI_TOL, atol=DOPRI_TOL)
            loss = tf.reduce_sum(solution.ys ** 2)
        return loss, tape.gradient(loss, variables), solution.stats

    assert solvers.get("dopri5").max_steps == DOPRI_MAX_STEPS
    solution = dopri5_forward(y0)
    backward_stats = dopri5_forward_backward(y0)[2]
    # Concrete functions: the compiled computation without tf.function's
    # Python dispatch (~0.1 ms per call here), as jax.jit calls are.
    rk4_forward = rk4_forward.get_concrete_function(y0)
    rk4_forward_backward = rk4_forward_backward.get_concrete_function(y0)
    dopri5_forward = dopri5_forward.get_concrete_function(y0)
    dopri5_forward_backward = dopri5_forward_backward.get_concrete_function(y0)
    dopri = {"config": 'method="dopri5" (solvers.Dopri5), '
                       "tf.function(jit_compile=True)",
             "nfe": int(solution.stats["num_fn_evals"]),
             "steps": int(solution.stats["num_steps"]),
             "rejected": int(solution.stats["num_rejected"])}
    return {
        "rk4_forward": (lambda: rk4_forward(y0).numpy(),
                        {"config": "tf.function(jit_compile=True)"}),
        "rk4_forward_backward": (
            lambda: rk4_forward_backward(y0)[0].numpy(),
            {"config": "tf.function(jit_compile=True), gradient=backprop"}),
        "dopri5_forward": (lambda: dopri5_forward(y0).ys.numpy(), dopri),
        "dopri5_forward_backward": (
            lambda: dopri5_forward_backward(y0)[0].numpy(),
            dict(dopri, gradient="backprop (default)",
                 nfe_backward=int(backward_stats["num_fn_evals_backward"]),
                 vjp_backward=int(backward_stats["num_vjp_evals_backward"]))),
    }


def prepare_ours_tfp(problem):
    """The tfp adapter (method="tfp_dopri5"); tfp's loop has no XLA bound."""
    import tensorflow as tf

    from contractive_keras import solvers

    field, variables, y0 = _ours_field(problem)

    @tf.function
    def dopri5_forward(y):
        return solvers.solve(field, y, DOPRI_T1, method="tfp_dopri5",
                             rtol=DOPRI_TOL, atol=DOPRI_TOL)

    @tf.function
    def dopri5_forward_backward(y):
        with tf.GradientTape() as tape:
            y1 = solvers.odeint(field, y, DOPRI_T1, method="tfp_dopri5",
                                rtol=DOPRI_TOL, atol=DOPRI_TOL)
            loss = tf.reduce_sum(y1 ** 2)
        return loss, tape.gradient(loss, variables)

    solution = dopri5_forward(y0)
    dopri5_forward = dopri5_forward.get_concrete_function(y0)
    dopri5_forward_backward = dopri5_forward_backward.get_concrete_function(y0)
    info = {"config": 'method="tfp_dopri5" (tfp.math.ode.DormandPrince), '
                      "tf.function without XLA",
            "nfe": int(solution.stats["num_fn_evals"]),
            "steps": int(solution.stats["num_steps"])}
    return {"dopri5_forward": (lambda: dopri5_forward(y0).ys.numpy(), info),
            "dopri5_forward_backward": (
                lambda: dopri5_forward_backward(y0)[0].numpy(),
                dict(info, gradient="backprop through tfp's loop"))}


def unroll_study(problem, repeats, step_counts=(2, 4, 8, 12, 16, 24, 32)):
    """Unrolled vs while loop, RK4 forward+gradient, XLA and plain graph."""
    import tensorflow as tf

    from contractive_keras import solvers

    field, variables, y0 = _ours_field(problem)
    rows = []
    for jit_compile in (True, False):
        for steps in step_counts:
            runs = {}
            for unroll in (True, False):
                @tf.function(jit_compile=jit_compile)
                def step(y, unroll=unroll, steps=steps):
                    with tf.GradientTape() as tape:
                        y1 = solvers.odeint(field, y, 1.0, steps=steps,
                                            unroll=unroll)
                        loss = tf.reduce_sum(y1 ** 2)
                    return loss, tape.gradient(loss, variables)

                step = step.get_concrete_function(y0)
                runs["unrolled" if unroll else "while_loop"] = (
                    lambda step=step: step(y0)[0].numpy())
            row = {"jit_compile": jit_compile, "steps": steps}
            row.update(time_interleaved(runs, repeats))
            rows.append(row)
    return rows


# --- report -----------------------------------------------------------------

CASES = ("rk4_forward", "rk4_forward_backward", "dopri5_forward",
         "dopri5_forward_backward")
THEIRS = ("torchdiffeq", "diffrax", "jax_loop")
# ours / theirs at most (issue 16: Dormand-Prince with its gradient at or
# below diffrax; RK4 forward + gradient at or below 0.7x a hand-written
# lax.fori_loop, a stretch).
TARGETS = {"torchdiffeq": {"rk4_forward": 0.5, "rk4_forward_backward": 0.5,
                           "dopri5_forward": 1.0,
                           "dopri5_forward_backward": 1.0},
           "diffrax": {"rk4_forward": 1.0, "rk4_forward_backward": 1.0,
                       "dopri5_forward": 1.0, "dopri5_forward_backward": 1.0},
           "jax_loop": {"rk4_forward": 1.0, "rk4_forward_backward": 0.7}}
PREPARE = {"contractive_keras": prepare_ours,
           "contractive_keras_tfp": prepare_ours_tfp,
           "torchdiffeq": prepare_torchdiffeq, "diffrax": prepare_diffrax,
           "jax_loop": prepare_jax_loop}
# Peak memory of one case, each framework in a fresh process (see
# _solver_anchors.peak_memory_mib).
MEMORY_CASE = "dopri5_forward_backward"


def ratios(cases, ours="contractive_keras"):
    """ours/theirs times (and NFE for dopri5) per case and framework."""
    out = {}
    for case, by_framework in cases.items():
        if ours not in by_framework:
            continue
        mine = by_framework[ours]
        for name in THEIRS:
            theirs = by_framework.get(name)
            if theirs is None:
                continue
            entry = {"time": mine["seconds"] / theirs["seconds"],
                     "target": TARGETS[name][case]}
            entry["met"] = entry["time"] <= entry["target"]
            if "nfe" in mine and "nfe" in theirs:
                entry["nfe"] = mine["nfe"] / theirs["nfe"]
                entry["met"] = entry["met"] and abs(entry["nfe"] - 1) <= 0.1
            out.setdefault(case, {})[name] = entry
    return out


def table(cases, ratio_table):
    """Text table of medians (ms) and ratios ours/theirs."""
    frameworks = ["contractive_keras", "contractive_keras_tfp", *THEIRS]
    header = f"{'case':<22}" + "".join(f"{name:>23}" for name in frameworks)
    lines = [header, "-" * len(header)]
    for case, by_framework in cases.items():
        cells = []
        for name in frameworks:
            entry = by_framework.get(name)
            if entry is None:
                cells.append(f"{'-':>23}")
                continue
            text = f"{entry['seconds'] * 1e3:.2f} ms"
            if "nfe" in entry:
                text += f" ({entry['nfe']} NFE)"
            cells.append(f"{text:>23}")
        lines.append(f"{case:<22}" + "".join(cells))
    lines.append("")
    lines.append("ours (contractive_keras) / theirs:")
    for case, by_name in ratio_table.items():
        for name, entry in by_name.items():
            nfe = (f", NFE ratio {entry['nfe']:.2f}" if "nfe" in entry
                   else "")
            lines.append(
                f"  {case:<22} vs {name:<12} time {entry['time']:.2f} "
                f"(target <= {entry['target']}){nfe}  "
                f"{'met' if entry['met'] else 'NOT met'}")
    return "\n".join(lines)


# The frameworks that have MEMORY_CASE (jax_loop is RK4 only).
PREPARE_CASES = {name: CASES for name in PREPARE if name != "jax_loop"}


def peak_memory_in_subprocess(name):
    """``MEMORY_CASE``'s peak memory (MiB) for one framework, in a fresh process."""
    command = [sys.executable, "-m", "benchmarks.solvers", "--peak_memory", name]
    # glibc raises its mmap threshold after freeing a large block, after which
    # freed buffers stay resident and later calls show no growth; a fixed
    # threshold returns every large buffer, so the high-water mark sees each.
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="0")
    try:
        output = subprocess.run(command, capture_output=True, text=True, check=True, env=env,
                                cwd=os.path.dirname(os.path.dirname(
                                    os.path.abspath(__file__)))).stdout
        return json.loads(output.strip().splitlines()[-1])["peak_memory_mib"]
    except (subprocess.CalledProcessError, ValueError, IndexError, KeyError) as error:
        print(f"peak memory of {name} failed: {type(error).__name__}", file=sys.stderr)
        return None


def main(argv=None):
    """Runs every benchmark, prints the table, writes the JSON file."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--output", default=DEFAULT_OUTPUT)
    parser.add_argument("--skip", nargs="*", default=[], choices=list(PREPARE))
    parser.add_argument("--unroll", action="store_true",
                        help="also run the unroll study (28 more XLA compilations)")
    parser.add_argument("--torch_compile", action="store_true",
                        help="also try torch.compile for torchdiffeq (slow to compile; "
                             "it fails on dopri5) and keep the faster")
    parser.add_argument("--peak_memory", choices=list(PREPARE),
                        help="only measure MEMORY_CASE's peak memory of one "
                             "framework (used in a subprocess)")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    problem = make_problem()
    if args.peak_memory:
        run = PREPARE[args.peak_memory](problem)[MEMORY_CASE][0]
        for _ in range(2):
            run()
        print(json.dumps({"peak_memory_mib": peak_memory_mib(run)}))
        return None
    cases = {case: {} for case in CASES}
    # Thread pools that spin after a call (PyTorch's OpenMP threads, TF's
    # graph executor running tfp's many small ops) starve whatever runs next
    # on a small machine, so those are timed in phases of their own, after
    # the XLA-vs-JAX phase (which interleaves the two call by call).
    for phase in (("contractive_keras", "diffrax", "jax_loop"),
                  ("contractive_keras_tfp",), ("torchdiffeq",)):
        prepared = {}
        for name in phase:
            if name in args.skip:
                continue
            try:
                prepared[name] = (PREPARE[name](problem, args.torch_compile)
                                  if name == "torchdiffeq" else PREPARE[name](problem))
            except ImportError as error:
                print(f"{name}: not installed ({error}); skipped",
                      file=sys.stderr)
        for case in CASES:
            runs = {name: cases_of[case][0]
                    for name, cases_of in prepared.items() if case in cases_of}
            if not runs:
                continue
            repeats = args.repeats if case.startswith("rk4") else max(
                5, args.repeats // 2)
            timings = time_interleaved_with_min(runs, repeats)
            for name in runs:
                cases[case][name] = dict(prepared[name][case][1],
                                         seconds=timings[name][0],
                                         min_seconds=timings[name][1])
    ratio_table = ratios(cases)
    results = {"problem": {"batch": BATCH, "state": STATE, "width": WIDTH,
                           "rk4_steps": RK4_STEPS, "dopri5_t1": DOPRI_T1,
                           "dopri5_tol": DOPRI_TOL, "dtype": "float32"},
               "repeats": args.repeats, "cpu_count": os.cpu_count(),
               "load_average": os.getloadavg(), "cases": cases,
               "ratios": ratio_table}
    print(table(cases, ratio_table))
    results["peak_memory_mib"] = {
        name: peak_memory_in_subprocess(name) for name in PREPARE
        if name not in args.skip and MEMORY_CASE in PREPARE_CASES.get(name, ())}
    print(f"\npeak memory of {MEMORY_CASE} (MiB above the level before the "
          f"calls, fresh process each): "
          + ", ".join(f"{name} {value:.1f}" if value is not None else f"{name} -"
                      for name, value in results["peak_memory_mib"].items()))
    if args.unroll:
        results["unroll"] = unroll_study(problem, max(5, args.repeats // 2))
        print("\nunrolled vs while_loop (RK4, forward+gradient, median ms)")
        for row in results["unroll"]:
            print(f"  jit_compile={row['jit_compile']!s:<5} "
                  f"steps={row['steps']:>3}  unrolled "
                  f"{row['unrolled'] * 1e3:8.2f}  while_loop "
                  f"{row['while_loop'] * 1e3:8.2f}")
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "w", encoding="utf-8") as handle:
        json.dump(results, handle, indent=2)
    print(f"\nwritten: {args.output}")
    return results


if __name__ == "__main__":
    main()
