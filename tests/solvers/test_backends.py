"""The solvers on every Keras backend (TensorFlow, JAX, PyTorch), in keras.ops.

Convergence orders, exact solutions, the step index and output times,
gradients against finite differences (float64: JAX inside
``jax.enable_x64``), Dopri5, and the one-line refusals of what stays
TensorFlow-only. No TensorFlow import at module level: ``make test`` runs
this file again under JAX and PyTorch with TensorFlow blocked.
"""

import contextlib
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from contractive_keras import backend
from contractive_keras import solvers
from tests.solvers import oracles

pytestmark = pytest.mark.backends

ops = keras.ops
RATES = np.array([0.3, 1.1, -0.4, 2.0, 0.7])
ORDERS = {"euler": 1, "midpoint": 2, "rk4": 4}


class Heun(solvers.ExplicitRungeKutta):
    """A tableau that is not one of the named schemes (order 2)."""

    tableau = solvers.ButcherTableau(a=((1.0,),), b=(0.5, 0.5), c=(0.0, 1.0))
    order = 2
    name = "heun"


@contextlib.contextmanager
def float64():
    """float64 computations on every backend (JAX: inside jax.enable_x64)."""
    if backend.name() == "jax":
        import jax  # pylint: disable=import-outside-toplevel
        with jax.enable_x64(True):
            yield
    else:
        yield


def tensor(value, dtype="float64"):
    return ops.convert_to_tensor(np.asarray(value, np.float64), dtype)


def numpy(value):
    return np.asarray(ops.convert_to_numpy(value), np.float64)


def linear_field(dtype="float64"):
    # einsum: Keras's torch matmul computes float64 operands in float32.
    matrix = tensor(oracles.LINEAR_MATRIX.T, dtype)
    return lambda t, y: ops.einsum("bi,ij->bj", y, matrix)


def soft(x):
    """A smooth bounded nonlinearity in plain arithmetic (Keras's JAX tanh and
    sin lose float64 accuracy inside jax.enable_x64)."""
    return x / (1.0 + x * x)


def gradient(loss, *args):
    """d loss / d args at args (float tensors), by the backend's autodiff."""
    name = backend.name()
    if name == "jax":
        import jax  # pylint: disable=import-outside-toplevel
        grad = jax.jit(jax.grad(loss, argnums=tuple(range(len(args)))))   # as a trainer does
        return [numpy(g) for g in grad(*args)]
    if name == "torch":
        args = [a.detach().clone().requires_grad_(True) for a in args]
        loss(*args).backward()
        return [numpy(a.grad) for a in args]
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    with tf.GradientTape() as tape:
        tape.watch(args)
        value = loss(*args)
    return [numpy(g) for g in tape.gradient(value, list(args))]


def check_gradient(loss, args, eps=1e-6, rtol=1e-6, directions=2):
    """The backend's gradient of loss against central differences (float64)
    along random directions: d/de loss(args + e v) = <grad, v>."""
    analytic = gradient(loss, *args)
    if backend.name() == "jax":
        import jax  # pylint: disable=import-outside-toplevel
        loss = jax.jit(loss)     # one trace for every difference (loops trace per call)
    values = [numpy(a) for a in args]
    rng = np.random.default_rng(7)
    for _ in range(directions):
        direction = [rng.normal(size=v.shape) for v in values]
        shifted = [float(numpy(loss(*[tensor(v + sign * eps * d)
                                      for v, d in zip(values, direction)])))
                   for sign in (1.0, -1.0)]
        numeric = (shifted[0] - shifted[1]) / (2 * eps)
        expected = sum(float(np.sum(g * d)) for g, d in zip(analytic, direction))
        np.testing.assert_allclose(expected, numeric, rtol=rtol)
    return analytic


@pytest.mark.parametrize("method", ["euler", "midpoint", "rk4", "heun"])
def test_convergence_order_on_a_linear_system(method):
    scheme = Heun() if method == "heun" else method
    order = 2 if method == "heun" else ORDERS[method]
    counts = (4, 8, 16) if order == 4 else (16, 32, 64)
    with float64():
        exact = oracles.linear_exact(1.0)
        errors = [np.max(np.abs(numpy(solvers.odeint(
            linear_field(), tensor(oracles.LINEAR_Y0), 1.0, method=scheme, steps=n))
                                - exact)) for n in counts]
    orders = oracles.observed_orders(errors)
    assert np.all(np.abs(orders - order) < 0.2), (errors, orders)


@pytest.mark.parametrize("unroll", [True, False])
def test_agrees_with_the_exact_solution(unroll):
    with float64():
        y1 = solvers.odeint(linear_field(), tensor(oracles.LINEAR_Y0), 1.0,
                            method="rk4", steps=40, unroll=unroll)
        np.testing.assert_allclose(numpy(y1), oracles.linear_exact(1.0), rtol=1e-6)
    # float32, the dtype of training on every backend.
    y1 = solvers.odeint(linear_field("float32"), tensor(oracles.LINEAR_Y0, "float32"),
                        1.0, method="rk4", steps=40, unroll=unroll)
    assert keras.backend.standardize_dtype(y1.dtype) == "float32"
    np.testing.assert_allclose(numpy(y1), oracles.linear_exact(1.0), rtol=2e-5, atol=1e-6)


def _piecewise_field(log=None, dtype="float64"):
    rates = tensor(RATES, dtype)

    def fn(t, y, step):
        if log is not None:
            log.append(step)
        return -ops.take(rates, step) * y

    return fn


@pytest.mark.parametrize("method", sorted(ORDERS))
@pytest.mark.parametrize("unroll", [True, False])
def test_step_index_selects_per_step_weights(method, unroll):
    # Step k of y' = -w_k y multiplies y by R(-w_k h) exactly.
    steps, t1 = len(RATES), 1.5
    polynomial = oracles.rk_stability_polynomial(ORDERS[method])
    expected = 2.0 * np.prod([polynomial(-w * t1 / steps) for w in RATES])
    with float64():
        y1 = solvers.odeint(_piecewise_field(), tensor(2.0), t1, method=method,
                            steps=steps, with_step_index=True, unroll=unroll)
        np.testing.assert_allclose(float(numpy(y1)), expected, rtol=1e-13)


def test_unrolled_steps_pass_their_index_to_every_stage():
    log = []
    solvers.odeint(_piecewise_field(log, "float32"), tensor(1.0, "float32"), 1.0, method="rk4",
                   steps=3, with_step_index=True, unroll=True)
    assert [int(numpy(step)) for step in log] == [k for k in range(3) for _ in range(4)]


def test_spec_odeint_with_times_and_step_index_as_the_layers_call_it():
    spec = solvers.SolverSpec("midpoint", steps=len(RATES), t1=1.5)
    polynomial = oracles.rk_stability_polynomial(2)
    h = 1.5 / len(RATES)
    with float64():
        y0 = tensor([[1.0, -2.0]])
        ys = spec.odeint(_piecewise_field(), y0, times=spec.times, with_step_index=True)
        final = spec.odeint(_piecewise_field(), y0, with_step_index=True)
        assert tuple(ys.shape) == (len(RATES) + 1, 1, 2)
        factors = np.concatenate([[1.0], np.cumprod([polynomial(-w * h) for w in RATES])])
        np.testing.assert_allclose(numpy(ys), factors[:, None, None] * numpy(y0), rtol=1e-13)
        np.testing.assert_allclose(numpy(final), numpy(ys[-1]), rtol=1e-13)


def test_output_times_between_nodes_converge_at_the_scheme_order():
    times = [0.13, 0.77, 1.41]
    exact = np.stack([oracles.linear_exact(t) for t in times])
    with float64():
        solutions = [solvers.solve(linear_field(), tensor(oracles.LINEAR_Y0), 1.5,
                                   method="midpoint", steps=n, times=times)
                     for n in (20, 40, 80)]
        errors = [np.max(np.abs(numpy(s.ys) - exact)) for s in solutions]
    np.testing.assert_allclose(numpy(solutions[0].ts), times, rtol=1e-15)
    # 18 full steps to the node before 1.41, then 3 partial steps.
    assert int(numpy(solutions[0].stats["num_steps"])) == 18 + 3
    orders = oracles.observed_orders(errors)
    assert np.all(np.abs(orders - 2) < 0.2), (errors, orders)


def test_nested_states_are_integrated_leafwise():
    def fn(t, state):
        return {"a": -state["a"], "b": (2.0 * state["b"][0],)}

    state = {"a": tensor([1.0, 2.0], "float32"), "b": (tensor(1.0, "float32"),)}
    solution = solvers.solve(fn, state, 0.5, method="rk4", steps=8)
    np.testing.assert_allclose(numpy(solution.ys["a"]), np.exp(-0.5) * np.array([1, 2]),
                               rtol=1e-5)
    np.testing.assert_allclose(float(numpy(solution.ys["b"][0])), np.exp(1.0), rtol=1e-5)
    assert int(numpy(solution.stats["num_fn_evals"])) == 32


@pytest.mark.parametrize("gradient_method, unroll", [
    ("backprop", True), ("backprop", False), (solvers.Checkpoint(segment_steps=1), False)])
def test_gradients_match_finite_differences(gradient_method, unroll):
    # Gradients to y0, per-step weights read with the step index, and t1.
    if backend.is_tensorflow() and not isinstance(gradient_method, str):
        pytest.skip("tf.recompute_grad gives closed-over tensors no gradient "
                    "(documented; tests/solvers/test_gradients.py checks it with variables)")

    def loss(y0, weights, t1):
        def fn(t, y, step):
            return soft(ops.einsum("bi,ij->bj", y, weights[step])) - 0.5 * y * t
        y1 = solvers.odeint(fn, y0, t1, method="midpoint", steps=3, with_step_index=True,
                            gradient=gradient_method, unroll=unroll)
        return ops.sum(y1 * y1)

    rng = np.random.default_rng(0)
    with float64():
        args = [tensor(rng.normal(size=(2, 3))), tensor(0.5 * rng.normal(size=(3, 3, 3))),
                tensor(0.8)]
        check_gradient(loss, args)


def test_checkpoint_gives_the_values_and_gradients_of_backprop():
    def loss(method):
        def value(y0, w):
            y1 = solvers.odeint(lambda t, y: ops.tanh(w * y), y0, 1.0, method="midpoint",
                                steps=9, gradient=method)
            return ops.sum(y1 ** 2)
        return value

    args = [tensor([0.3, -1.2], "float32"), tensor(0.7, "float32")]
    np.testing.assert_allclose(numpy(loss("checkpoint")(*args)), numpy(loss("backprop")(*args)),
                               rtol=1e-6)
    if backend.is_tensorflow():
        # tf.recompute_grad differentiates its inputs and variables, not the
        # tensors fn closes over (documented in solvers.gradients).
        def only_y0(method):
            return lambda y0: loss(method)(y0, args[1])
        pairs = zip(gradient(only_y0("checkpoint"), args[0]),
                    gradient(only_y0("backprop"), args[0]))
    else:
        pairs = zip(gradient(loss("checkpoint"), *args), gradient(loss("backprop"), *args))
    for a, b in pairs:
        np.testing.assert_allclose(a, b, rtol=1e-5)


def test_gradient_reaches_a_keras_variable_read_inside_fn():
    variable = keras.Variable(np.float32(0.6), dtype="float32")
    y0 = tensor([1.0, 0.5], "float32")

    def solve_with(scale):
        return ops.sum(solvers.odeint(lambda t, y: -scale * y, y0, 1.0, method="rk4",
                                      steps=20, unroll=False))

    expected = -np.exp(-0.6) * 1.5      # d/dw sum(exp(-w) y0)
    name = backend.name()
    if name == "jax":
        import jax  # pylint: disable=import-outside-toplevel

        def loss(value):   # as Keras's stateless trainer does
            with keras.StatelessScope(state_mapping=[(variable, value)]):
                return solve_with(variable)
        grad = jax.grad(loss)(variable.value)
    elif name == "torch":
        loss = solve_with(variable)
        loss.backward()
        grad = variable.value.grad
    else:
        import tensorflow as tf  # pylint: disable=import-outside-toplevel
        with tf.GradientTape() as tape:
            loss = solve_with(variable)
        grad = tape.gradient(loss, variable.value)
    np.testing.assert_allclose(float(numpy(grad)), expected, rtol=1e-5)


def test_dopri5_agrees_with_the_exact_solution_and_counts_its_steps():
    def run(y0):
        return solvers.solve(linear_field(), y0, 1.0, method="dopri5", rtol=1e-9, atol=1e-9,
                             times=[0.4, 1.0])

    if backend.name() == "jax":
        import jax  # pylint: disable=import-outside-toplevel
        run = jax.jit(run)       # one compilation instead of one per loop
    with float64():
        solution = run(tensor(oracles.LINEAR_Y0))
        ys = numpy(solution.ys)
    np.testing.assert_allclose(ys[0], oracles.linear_exact(0.4), rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(ys[1], oracles.linear_exact(1.0), rtol=1e-7, atol=1e-9)
    stats = {key: int(numpy(value)) for key, value in solution.stats.items()}
    assert stats["num_steps"] == stats["num_accepted"] + stats["num_rejected"]
    assert stats["num_fn_evals"] == 2 + 6 * stats["num_steps"]
    assert 5 <= stats["num_accepted"] <= 100


def test_dopri5_gradient_matches_finite_differences():
    def loss(y0, w, t1):
        y1 = solvers.odeint(lambda t, y: -w * y * y + soft(t), y0, t1, method="dopri5",
                            rtol=1e-10, atol=1e-10)
        return ops.sum(y1 ** 2)

    with float64():
        args = [tensor([1.0, 0.4]), tensor(0.7), tensor(1.3)]
        check_gradient(loss, args, eps=1e-5, rtol=1e-5)


def _refuses(call, *words):
    if backend.is_tensorflow():
        pytest.skip("TensorFlow runs every part")
    with pytest.raises(NotImplementedError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message and backend.name() in message, message
    for word in words:
        assert word in message, message


def test_adjoint_refuses_in_one_line_naming_the_alternatives():
    y0 = tensor([1.0], "float32")
    _refuses(lambda: solvers.odeint(lambda t, y: -y, y0, 1.0, steps=4, gradient="adjoint"),
             "adjoint", "backprop", "checkpoint")
    _refuses(lambda: solvers.odeint(lambda t, y: -y, y0, 1.0, method="dopri5",
                                    gradient="adjoint"), "adjoint", "backprop")
    _refuses(lambda: solvers.SolverSpec("euler", steps=4, t1=1.0, gradient="adjoint"),
             "adjoint", "backprop")


@pytest.mark.parametrize("method", ["bdf", "tfp_dopri5"])
def test_tfp_solvers_refuse_in_one_line_naming_dopri5(method):
    y0 = tensor([1.0], "float32")
    _refuses(lambda: solvers.odeint(lambda t, y: -y, y0, 1.0, method=method),
             method, "'dopri5'")
    _refuses(lambda: solvers.SolverSpec(method, t1=1.0), method, "'dopri5'")
    _refuses(lambda: solvers.deserialize({"class_name": "BDF", "config": {}}), "BDF")


def test_write_summaries_refuses_in_one_line():
    _refuses(lambda: solvers.write_summaries({}, step=0), "write_summaries")


# The modules that are TensorFlow code through and through; every other
# solvers module must import without TensorFlow (imports of it only inside
# functions, in the TensorFlow branches).
TENSORFLOW_MODULES = {"adaptive", "adaptive_backprop", "adaptive_loop", "adjoint"}


def test_only_tensorflow_only_modules_import_tensorflow_at_module_level():
    import ast  # pylint: disable=import-outside-toplevel
    folder = os.path.dirname(solvers.__file__)
    offenders = []
    for name in sorted(os.listdir(folder)):
        if not name.endswith(".py") or name[:-3] in TENSORFLOW_MODULES:
            continue
        with open(os.path.join(folder, name), encoding="utf-8") as handle:
            tree = ast.parse(handle.read())
        for node in tree.body:      # module level only
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            offenders += [f"{name}: {n}" for n in names
                          if n.split(".")[0] in ("tensorflow", "tensorflow_probability")
                          or n.split(".")[-1] in TENSORFLOW_MODULES]
    assert not offenders, offenders


@pytest.mark.slow   # a fresh interpreter: run with -m slow
def test_solvers_import_and_run_without_tensorflow():
    if backend.name() != "jax":
        pytest.skip("one run is enough: JAX, TensorFlow blocked, the solvers package alone")
    package_folder = os.path.dirname(os.path.dirname(solvers.__file__))
    blocker = os.path.join(os.path.dirname(package_folder), "scripts", "no_tensorflow",
                           "sitecustomize.py")
    script = (
        "import runpy, sys, types\n"
        f"runpy.run_path({blocker!r})\n"      # import tensorflow fails from here on
        # Only the solvers package: the rest of the package is not its business.
        "package = types.ModuleType('contractive_keras')\n"
        f"package.__path__ = [{package_folder!r}]\n"
        "sys.modules['contractive_keras'] = package\n"
        "from contractive_keras.solvers import (SolverSpec, odeint, solve, get, serialize,\n"
        "    deserialize, FIXED_STEP_METHODS, KNOWN_METHODS, Euler, Midpoint, RK4,\n"
        "    ButcherTableau, ExplicitRungeKutta, Backprop, Checkpoint, Adjoint, Dopri5)\n"
        "import keras\n"
        "y = SolverSpec('rk4', steps=4, t1=1.0).odeint(lambda t, y, k: -y,\n"
        "    keras.ops.ones([2]), with_step_index=True)\n"
        "y = odeint(lambda t, y: -y, y, 1.0, method='dopri5')\n"
        "assert abs(float(keras.ops.convert_to_numpy(y)[0]) - 0.1353) < 1e-3\n"
        "assert 'tensorflow' not in sys.modules\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            env=dict(os.environ, KERAS_BACKEND="jax"), check=False,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
