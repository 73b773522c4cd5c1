"""The problem of ``benchmarks/solvers.py``, its timing helpers and the anchors it is timed against.

Anchors: torchdiffeq (PyTorch, CPU), diffrax (JAX) and a hand-written
``jax.lax.fori_loop`` RK4 (the fastest RK4 one would write in JAX). Each
``prepare_*`` compiles and warms up its cases and returns
``{case: (run, info)}``: ``run()`` blocks until the result is ready,
``info`` holds NFE and configuration.
"""

import statistics
import sys
import time

import numpy as np

BATCH, STATE, WIDTH = 64, 32, 64
RK4_STEPS = 100
DOPRI_T1, DOPRI_TOL = 10.0, 1e-6
# The static step bound of the Dormand-Prince gradient cases: this package's
# Dopri5 default, given to diffrax too (its RecursiveCheckpointAdjoint sizes
# its checkpoints from it).
DOPRI_MAX_STEPS = 1000


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


def time_interleaved(runs, repeats, warmup=2):
    """Median seconds of each ``run`` in ``runs``, timed in alternation."""
    return {name: value[0] for name, value in
            time_interleaved_with_min(runs, repeats, warmup).items()}


def time_interleaved_with_min(runs, repeats, warmup=2):
    """``{name: (median, min)}`` seconds, the runs timed in alternation."""
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


def _status_kib(key):
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return None


def peak_memory_mib(run, calls=3):
    """Peak resident memory above the level before the calls, MiB (Linux).

    The process's high-water mark is reset (``/proc/self/clear_refs``) after
    compilation and warm-up, so this is what the calls themselves allocate
    and touch (run it with glibc's mmap threshold fixed, as
    ``solvers.peak_memory_in_subprocess`` does, or freed buffers stay
    resident and go uncounted). None where the kernel does not offer the
    counters.
    """
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
            handle.write("5")
        before = _status_kib("VmRSS")
        for _ in range(calls):
            run()
        return (_status_kib("VmHWM") - before) / 1024.0
    except (OSError, TypeError):
        return None


# --- torchdiffeq (PyTorch, CPU) ---------------------------------------------

def prepare_torchdiffeq(problem, try_compile=False):
    """torchdiffeq's cases, eager; with ``try_compile`` also ``torch.compile``, the faster kept."""
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
        return torch.autograd.grad((y1 ** 2).sum(), params)

    def dopri5_forward(func=field):
        with torch.no_grad():
            return torchdiffeq.odeint(func, y0, t_dopri, method="dopri5",
                                      rtol=DOPRI_TOL, atol=DOPRI_TOL)[-1]

    def dopri5_forward_backward():
        # torchdiffeq's default: backpropagation through its solver loop.
        y1 = torchdiffeq.odeint(field, y0, t_dopri, method="dopri5",
                                rtol=DOPRI_TOL, atol=DOPRI_TOL)[-1]
        return torch.autograd.grad((y1 ** 2).sum(), params)

    cases = {"rk4_forward": rk4_forward,
             "rk4_forward_backward": rk4_forward_backward,
             "dopri5_forward": dopri5_forward,
             "dopri5_forward_backward": dopri5_forward_backward}
    prepared = {}
    for name, run in cases.items():
        # torch.compile off or on, whichever is faster (short trial).
        candidates = {"eager": run}
        try:
            if try_compile:
                compiled = torch.compile(run)
                compiled()
                compiled()
                candidates["torch.compile"] = compiled
        except Exception as error:  # pylint: disable=broad-except
            print(f"torch.compile failed for {name}: {type(error).__name__}",
                  file=sys.stderr)
        trial = time_interleaved(candidates, 3)
        best = min(trial, key=lambda key: trial[key])
        prepared[name] = (candidates[best], {
            "config": best, "trial_seconds": trial,
            "torch": torch.__version__, "threads": torch.get_num_threads()})
    CountingField.calls = 0
    dopri5_forward(CountingField())
    for case in ("dopri5_forward", "dopri5_forward_backward"):
        prepared[case][1]["nfe"] = CountingField.calls
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

    def dopri5_solve(p, y, vector_field=field, max_steps=100_000):
        return diffrax.diffeqsolve(
            diffrax.ODETerm(vector_field), diffrax.Dopri5(), 0.0, DOPRI_T1,
            None, y, args=p,
            stepsize_controller=diffrax.PIDController(rtol=DOPRI_TOL,
                                                      atol=DOPRI_TOL),
            saveat=diffrax.SaveAt(t1=True), max_steps=max_steps)

    dopri5_forward = jax.jit(dopri5_solve)
    dopri5_forward_backward = jax.jit(jax.value_and_grad(
        lambda p, y: jnp.sum(dopri5_solve(
            p, y, max_steps=DOPRI_MAX_STEPS).ys[-1] ** 2)))
    stats = dopri5_forward(params, y0).stats
    jax.block_until_ready(jax.jit(lambda p, y: dopri5_solve(
        p, y, counting_field).ys)(params, y0))
    jax.effects_barrier()
    config = {"config": "jax.jit", "jax": jax.__version__,
              "diffrax": diffrax.__version__}
    dopri = dict(config, nfe=len(calls), steps=int(stats["num_steps"]),
                 rejected=int(stats["num_rejected_steps"]))
    return {
        "rk4_forward": (
            lambda: rk4_forward(params, y0).block_until_ready(), config),
        "rk4_forward_backward": (
            lambda: jax.block_until_ready(rk4_forward_backward(params, y0)),
            dict(config, adjoint="RecursiveCheckpointAdjoint (default)")),
        "dopri5_forward": (
            lambda: dopri5_forward(params, y0).ys.block_until_ready(), dopri),
        "dopri5_forward_backward": (
            lambda: jax.block_until_ready(dopri5_forward_backward(params, y0)),
            dict(dopri, adjoint="RecursiveCheckpointAdjoint (default)",
                 max_steps=DOPRI_MAX_STEPS)),
    }


def prepare_jax_loop(problem):
    """RK4 written by hand with ``jax.lax.fori_loop`` (the issue's anchor)."""
    import jax
    import jax.numpy as jnp

    params = {k: jnp.asarray(problem[k]) for k in ("w1", "b1", "w2", "b2")}
    y0 = jnp.asarray(problem["y0"])
    h = 1.0 / RK4_STEPS

    def field(y, p):
        return jnp.tanh(y @ p["w1"] + p["b1"]) @ p["w2"] + p["b2"]

    def solve(p, y):
        def step(_, y):
            k1 = field(y, p)
            k2 = field(y + 0.5 * h * k1, p)
            k3 = field(y + 0.5 * h * k2, p)
            k4 = field(y + h * k3, p)
            return y + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)

        return jax.lax.fori_loop(0, RK4_STEPS, step, y)

    forward = jax.jit(solve)
    forward_backward = jax.jit(jax.value_and_grad(
        lambda p, y: jnp.sum(solve(p, y) ** 2)))
    config = {"config": "jax.jit(lax.fori_loop)", "jax": jax.__version__}
    return {
        "rk4_forward": (lambda: forward(params, y0).block_until_ready(), config),
        "rk4_forward_backward": (
            lambda: jax.block_until_ready(forward_backward(params, y0)), config),
    }
