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

Each case is compiled once per framework (TF: tf.function with XLA, called
through its concrete function; PyTorch: eager and torch.compile, the faster
kept; JAX: jax.jit), warmed up, then timed ``--repeats`` times. TF and JAX
calls alternate one by one, so that load from other processes hits both
alike; the tfp adapter and PyTorch run in phases of their own afterwards
(their thread pools spin after each call and would slow whatever runs
next). The table shows
medians (JSON: also minima) and ours/theirs. An extra section times
unrolled against while-loop fixed-step integration for 2..32 steps, with
and without XLA, the measurement behind ``fixed_step.UNROLL_THRESHOLDS``.

Run: ``python -m benchmarks.solvers`` (or ``make bench``); results are also
written as JSON (``--output``).
"""

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np

BATCH, STATE, WIDTH = 64, 32, 64
RK4_STEPS = 100
DOPRI_T1, DOPRI_TOL = 10.0, 1e-6
DEFAULT_OUTPUT = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                              "results", "solvers.json")


def make_problem(seed=0):
    """Weights and initial state shared by all frameworks (float32)."""
    rng = np.random.default_rng(seed)
    scale1, scale2 = 1.0 / np.sqrt(STATE), 1.0 / np.sqrt(WIDTH)
    return {
        "w1": (rng.normal(size=(STATE, WIDTH)) * scale1).astype(np.float32),
        "b1": (rng.normal(size=(WIDTH,)) * 0.1).astype(np.float32),
        "w2": (rng.normal(size=(WIDTH, STATE)) * scale2).astype(np.float32),
        "b2": (rng.normal(size=(STATE,)) * 0.1).astype(np.float32),
        "y0": rng.normal(size=(BATCH, STATE)).astype(np.float32),
    }


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
        return solvers.solve(field, y, DOPRI_T1, method=solvers.Dopri5(),
                             rtol=DOPRI_TOL, atol=DOPRI_TOL)

    solution = dopri5_forward(y0)
    # Concrete functions: the compiled computation without tf.function's
    # Python dispatch (~0.1 ms per call here), as jax.jit calls are.
    rk4_forward = rk4_forward.get_concrete_function(y0)
    rk4_forward_backward = rk4_forward_backward.get_concrete_function(y0)
    dopri5_forward = dopri5_forward.get_concrete_function(y0)
    return {
        "rk4_forward": (lambda: rk4_forward(y0).numpy(),
                        {"config": "tf.function(jit_compile=True)"}),
        "rk4_forward_backward": (
            lambda: rk4_forward_backward(y0)[0].numpy(),
            {"config": "tf.function(jit_compile=True), gradient=backprop"}),
        "dopri5_forward": (
            lambda: dopri5_forward(y0).ys.numpy(),
            {"config": "solvers.Dopri5(), tf.function(jit_compile=True)",
             "nfe": int(solution.stats["num_fn_evals"]),
             "steps": int(solution.stats["num_steps"]),
             "rejected": int(solution.stats["num_rejected"])}),
    }


def prepare_ours_tfp(problem):
    """The tfp adapter (method="dopri5"); tfp's loop has no XLA bound."""
    import tensorflow as tf

    from contractive_keras import solvers

    field, _, y0 = _ours_field(problem)

    @tf.function
    def dopri5_forward(y):
        return solvers.solve(field, y, DOPRI_T1, method="dopri5",
                             rtol=DOPRI_TOL, atol=DOPRI_TOL)

    solution = dopri5_forward(y0)
    dopri5_forward = dopri5_forward.get_concrete_function(y0)
    return {"dopri5_forward": (
        lambda: dopri5_forward(y0).ys.numpy(),
        {"config": 'method="dopri5" (tfp.math.ode.DormandPrince), '
                   "tf.function without XLA",
         "nfe": int(solution.stats["num_fn_evals"]),
         "steps": int(solution.stats["num_steps"])})}


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


# --- torchdiffeq (PyTorch, CPU) ---------------------------------------------

def prepare_torchdiffeq(problem):
    import torch
    import torchdiffeq

    params = [torch.tensor(problem[k], requires_grad=True)
              for k in ("w1", "b1", "w2", "b2")]

    class Field(torch.nn.Module):
        def forward(self, t, y):
            w1, b1, w2, b2 = params
            return torch.tanh(y @ w1 + b1) @ w2 + b2

    class CountingField(Field):
        calls = 0

        def forward(self, t, y):
            CountingField.calls += 1
            return super().forward(t, y)

    field = Field()
    y0 = torch.tensor(problem["y0"])
    t_rk4 = torch.tensor([0.0, 1.0])
    t_dopri = torch.tensor([0.0, DOPRI_T1])
    options = {"step_size": 1.0 / RK4_STEPS}

    def rk4_forward():
        with torch.no_grad():
            return torchdiffeq.odeint(field, y0, t_rk4, method="rk4",
                                      options=options)[-1]

    def rk4_forward_backward():
        y1 = torchdiffeq.odeint(field, y0, t_rk4, method="rk4",
                                options=options)[-1]
        loss = (y1 ** 2).sum()
        return torch.autograd.grad(loss, params)

    def dopri5_forward(func=field):
        with torch.no_grad():
            return torchdiffeq.odeint(func, y0, t_dopri, method="dopri5",
                                      rtol=DOPRI_TOL, atol=DOPRI_TOL)[-1]

    cases = {"rk4_forward": rk4_forward,
             "rk4_forward_backward": rk4_forward_backward,
             "dopri5_forward": dopri5_forward}
    prepared = {}
    for name, run in cases.items():
        # torch.compile off or on, whichever is faster (short trial).
        candidates = {"eager": run}
        try:
            compiled = torch.compile(run)
            compiled()
            compiled()
            candidates["torch.compile"] = compiled
        except Exception as error:  # pylint: disable=broad-except
            print(f"torch.compile failed for {name}: {error!r}",
                  file=sys.stderr)
        trial = time_interleaved(candidates, 3)
        best = min(trial, key=lambda key: trial[key])
        prepared[name] = (candidates[best], {
            "config": best, "trial_seconds": trial,
            "torch": torch.__version__, "threads": torch.get_num_threads()})
    CountingField.calls = 0
    dopri5_forward(CountingField())
    prepared["dopri5_forward"][1]["nfe"] = CountingField.calls
    return prepared


# --- diffrax (JAX) ----------------------------------------------------------

def prepare_diffrax(problem):
    import diffrax
    import jax
    import jax.numpy as jnp

    class RK4(diffrax.AbstractERK):
        """Classic RK4 (diffrax has no built-in one); same tableau as ours."""

        tableau = diffrax.ButcherTableau(
            a_lower=(np.array([0.5]), np.array([0.0, 0.5]),
                     np.array([0.0, 0.0, 1.0])),
            b_sol=np.array([1 / 6, 1 / 3, 1 / 3, 1 / 6]),
            b_error=np.zeros(4),
            c=np.array([0.5, 0.5, 1.0]),
        )
        interpolation_cls = (
            diffrax.ThirdOrderHermitePolynomialInterpolation.from_k)

        def order(self, terms):
            return 4

    params = {k: jnp.asarray(problem[k]) for k in ("w1", "b1", "w2", "b2")}
    y0 = jnp.asarray(problem["y0"])
    calls = []

    def field(t, y, p):
        return jnp.tanh(y @ p["w1"] + p["b1"]) @ p["w2"] + p["b2"]

    def counting_field(t, y, p):
        jax.debug.callback(lambda: calls.append(1))
        return field(t, y, p)

    def rk4_solve(p, y):
        return diffrax.diffeqsolve(
            diffrax.ODETerm(field), RK4(), 0.0, 1.0, 1.0 / RK4_STEPS, y,
            args=p, saveat=diffrax.SaveAt(t1=True),
            max_steps=RK4_STEPS).ys[-1]

    rk4_forward = jax.jit(rk4_solve)
    rk4_forward_backward = jax.jit(jax.value_and_grad(
        lambda p, y: jnp.sum(rk4_solve(p, y) ** 2)))

    def dopri5_solve(p, y, vector_field=field):
        return diffrax.diffeqsolve(
            diffrax.ODETerm(vector_field), diffrax.Dopri5(), 0.0, DOPRI_T1,
            None, y, args=p,
            stepsize_controller=diffrax.PIDController(rtol=DOPRI_TOL,
                                                      atol=DOPRI_TOL),
            saveat=diffrax.SaveAt(t1=True), max_steps=100_000)

    dopri5_forward = jax.jit(dopri5_solve)
    stats = dopri5_forward(params, y0).stats
    jax.block_until_ready(jax.jit(lambda p, y: dopri5_solve(
        p, y, counting_field).ys)(params, y0))
    jax.effects_barrier()
    config = {"config": "jax.jit", "jax": jax.__version__,
              "diffrax": diffrax.__version__}
    return {
        "rk4_forward": (
            lambda: rk4_forward(params, y0).block_until_ready(), config),
        "rk4_forward_backward": (
            lambda: jax.block_until_ready(rk4_forward_backward(params, y0)),
            dict(config, adjoint="RecursiveCheckpointAdjoint (default)")),
        "dopri5_forward": (
            lambda: dopri5_forward(params, y0).ys.block_until_ready(),
            dict(config, nfe=len(calls), steps=int(stats["num_steps"]),
                 rejected=int(stats["num_rejected_steps"]))),
    }


def time_interleaved(runs, repeats, warmup=2):
    """Median seconds of each ``run`` in ``runs``, timed in alternation."""
    for run in runs.values():
        for _ in range(warmup):
            run()
    samples = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(times) for name, times in samples.items()}


def time_interleaved_with_min(runs, repeats, warmup=2):
    """Like :func:`time_interleaved`; returns {name: (median, min)}."""
    for run in runs.values():
        for _ in range(warmup):
            run()
    samples = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            samples[name].append(time.perf_counter() - start)
    return {name: (statistics.median(times), min(times))
            for name, times in samples.items()}


# --- report -----------------------------------------------------------------

CASES = ("rk4_forward", "rk4_forward_backward", "dopri5_forward")
THEIRS = ("torchdiffeq", "diffrax")
TARGETS = {"torchdiffeq": {"rk4_forward": 0.5, "rk4_forward_backward": 0.5,
                           "dopri5_forward": 1.0},
           "diffrax": {"rk4_forward": 1.0, "rk4_forward_backward": 1.0,
                       "dopri5_forward": 1.0}}
PREPARE = {"contractive_keras": prepare_ours,
           "contractive_keras_tfp": prepare_ours_tfp,
           "torchdiffeq": prepare_torchdiffeq, "diffrax": prepare_diffrax}


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


def main(argv=None):
    """Runs every benchmark, prints the table, writes the JSON file."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--output", default=DEFAULT_OUTPUT)
    parser.add_argument("--skip", nargs="*", default=[],
                        choices=[*PREPARE, "unroll"])
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    problem = make_problem()
    cases = {case: {} for case in CASES}
    # Thread pools that spin after a call (PyTorch's OpenMP threads, TF's
    # graph executor running tfp's many small ops) starve whatever runs next
    # on a small machine, so those are timed in phases of their own, after
    # the XLA-vs-JAX phase (which interleaves the two call by call).
    for phase in (("contractive_keras", "diffrax"),
                  ("contractive_keras_tfp",), ("torchdiffeq",)):
        prepared = {}
        for name in phase:
            if name in args.skip:
                continue
            try:
                prepared[name] = PREPARE[name](problem)
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
    if "unroll" not in args.skip:
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
