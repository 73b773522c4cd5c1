"""StabilizedNODE: the ODE it integrates, bad input, certificates vs measured ratios, saving."""

import json
import os
import zipfile

import keras
import numpy as np
import pytest
import tensorflow as tf

from contractive_keras.solvers import SolverSpec
from contractive_keras import certify, stability
from contractive_keras.layers import StabilizedNODE


def euler_reference(u, A, b, alpha, t1, steps):
    h = t1 / steps
    for _ in range(steps):
        z = u @ A.T + b
        u = u + h * np.maximum(z, alpha * z)
    return u


def test_forward_is_explicit_euler_on_leaky_relu_field():
    layer = StabilizedNODE(SolverSpec("euler", steps=5, t1=0.5), min_slope=0.2, dtype="float64")
    x = np.random.default_rng(0).standard_normal((7, 6))
    y = layer(x).numpy()
    A, b = layer.kernel.numpy(), layer.bias.numpy()
    np.testing.assert_allclose(y, euler_reference(x, A, b, 0.2, 0.5, 5), rtol=1e-12)
    assert layer.step_size == pytest.approx(0.1)


def test_smooth_activation_has_slopes_in_the_band_and_rk4_converges_to_dopri5():
    x = tf.constant(np.linspace(-30, 30, 2001))
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = StabilizedNODE(min_slope=0.3, activation="smooth_leaky_relu")._activation(x)
    slopes = tape.gradient(y, x).numpy()
    assert slopes.min() >= 0.3 and slopes.max() <= 1.0 and float(y[1000]) == pytest.approx(0.0)
    u = np.random.default_rng(1).standard_normal((3, 4))
    fine = StabilizedNODE(SolverSpec("rk4", steps=64, t1=1.0), min_slope=0.3,
                          activation="smooth_leaky_relu", dtype="float64")
    adaptive = StabilizedNODE(SolverSpec("dopri5", steps=10, t1=1.0, rtol=1e-8, atol=1e-8),
                              min_slope=0.3, activation="smooth_leaky_relu", dtype="float64")
    fine.build(u.shape)
    adaptive.build(u.shape)
    adaptive.set_weights(fine.get_weights())
    # The layer passes its rtol/atol to "dopri5" (RK4 with 64 steps agrees with
    # 1024 steps to 1e-12; the adaptive solver lands within ~5e-8 at 1e-8
    # tolerances, and stalled near 1e-6 when the layer dropped them).
    np.testing.assert_allclose(fine(u).numpy(), adaptive(u).numpy(), atol=2e-7)
    assert certify.summary(adaptive)["lipschitz_certifies"] == "flow"
    with pytest.raises(ValueError, match="adaptive"):     # no certificate of its computed map
        certify.layer_certificate(adaptive)


@pytest.mark.parametrize("kwargs,match", [
    (dict(min_slope=0.0), "min_slope"),
    (dict(min_slope=1.01), "min_slope"),
    (dict(activation="relu"), "relu"),
    (dict(activation="tanh"), "tanh"),
    (dict(activation=tf.nn.relu6), "activation_slopes"),
    (dict(activation=tf.tanh, activation_slopes=(0.1, 1.0)), "secant slopes"),
    (dict(activation=lambda x: 2 * x, activation_slopes=(0.5, 2.0)), r"\[min_slope, 1\]"),
    (dict(delta_bar=float("nan")), "NaN"),
    (dict(delta_bar=float("inf")), "finite"),
    (dict(solver="heun"), "Unknown solver"),
    (dict(delta_bar=-50.0, solver=SolverSpec("euler", steps=10, t1=1.0)), "No kernel reaches"),
])
def test_bad_arguments_raise_value_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        StabilizedNODE(**kwargs)


def slopes_of(fn, x):
    """sigma'(x) by automatic differentiation."""
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = fn(x)
    return tape.gradient(y, x).numpy()


@pytest.mark.parametrize("activation", ["leaky_relu", "smooth_leaky_relu"])
def test_named_activation_slopes_lie_in_the_band_and_match_the_exact_derivative(activation):
    """sigma' in [min_slope, 1]: leaky ReLU's is min_slope (x < 0) and 1 (x > 0),
    smooth leaky ReLU's a + (1 - a) sigmoid(x); autodiff and central
    differences both agree with the formula."""
    a = 0.3
    layer = StabilizedNODE(min_slope=a, activation=activation)
    assert layer._activation.slopes == (a, 1.0)
    x = np.concatenate([-np.logspace(2, -3, 300), np.logspace(-3, 2, 300)])
    if activation == "leaky_relu":
        exact = np.where(x < 0, a, 1.0)
    else:
        exact = a + (1 - a) / (1 + np.exp(-x))
    fn = layer._activation.fn
    slopes = slopes_of(fn, x)
    assert slopes.min() >= a and slopes.max() <= 1.0
    np.testing.assert_allclose(slopes, exact, rtol=1e-12)
    h = 1e-6 * np.minimum(1.0, np.abs(x))      # central differences stay on one side of 0
    central = (fn(tf.constant(x + h)).numpy() - fn(tf.constant(x - h)).numpy()) / (2 * h)
    np.testing.assert_allclose(central, exact, rtol=1e-6)
    assert float(fn(tf.constant(0.0, tf.float64))) == 0.0


def test_custom_activation_with_declared_slopes_is_the_field_the_layer_integrates():
    """A callable with declared slopes is kept as given: its slopes stay the
    declared ones, and the layer's output is explicit Euler on sigma(A u + b)."""
    fn = lambda x: 0.5 * x + 0.25 * tf.sin(x)       # sigma' = 0.5 + 0.25 cos x in [0.25, 0.75]
    layer = StabilizedNODE(SolverSpec("euler", steps=2, t1=0.5), min_slope=0.25, activation=fn,
                           activation_slopes=(0.25, 0.75), dtype="float64",
                           bias_initializer=keras.initializers.RandomNormal(seed=2))
    assert layer._activation.slopes == (0.25, 0.75)
    x = np.linspace(-20, 20, 4001)
    np.testing.assert_allclose(slopes_of(layer._activation.fn, x), 0.5 + 0.25 * np.cos(x),
                               rtol=1e-12, atol=1e-15)
    u = np.random.default_rng(5).standard_normal((4, 3))
    y = layer(u).numpy()
    A, b = layer.kernel.numpy(), layer.bias.numpy()
    expected = u
    for _ in range(2):
        z = expected @ A.T + b
        expected = expected + 0.25 * (0.5 * z + 0.25 * np.sin(z))
    np.testing.assert_allclose(y, expected, rtol=1e-12)


def pair_ratios(fn, u, v):
    return np.linalg.norm(fn(u) - fn(v), axis=1) / np.linalg.norm(u - v, axis=1)


def adversarial_ratio(layer, d, rng, starts=8, iterations=60):
    """Gradient ascent on ||phi(u) - phi(v)|| / ||u - v|| over pairs (u, v)."""
    u = tf.Variable(rng.standard_normal((starts, d)))
    v = tf.Variable(u.numpy() + 1e-2 * rng.standard_normal((starts, d)))
    optimizer = keras.optimizers.Adam(0.05)
    best = 0.0
    for _ in range(iterations):
        with tf.GradientTape() as tape:
            ratio = tf.norm(layer(u) - layer(v), axis=1) / tf.norm(u - v, axis=1)
            loss = -tf.reduce_sum(ratio)
        best = max(best, float(tf.reduce_max(ratio)))
        grads = tape.gradient(loss, [u, v])
        optimizer.apply_gradients(zip(grads, [u, v]))
    return best


@pytest.mark.parametrize("d,solver", [(6, "euler"), (6, "rk4"), (64, "euler")])
def test_trained_constrained_layer_never_exceeds_its_certificate(d, solver):
    rng = np.random.default_rng(d)
    keras.utils.set_random_seed(d)
    layer = StabilizedNODE(SolverSpec(solver, steps=5, t1=1.0), min_slope=0.1, delta_bar=0.2,
                           name="node",
                           kernel_initializer=keras.initializers.RandomNormal(stddev=2.0 / np.sqrt(d)))
    model = keras.Sequential([keras.Input((d,)), layer, keras.layers.Dense(2)])
    model.compile(keras.optimizers.Adam(0.05),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = rng.standard_normal((128, d)).astype("float32")
    model.fit(x, (x[:, 0] * x[:, 1] > 0).astype("int32"), batch_size=32, epochs=2, verbose=0)
    certificate = certify.layer_certificate(layer)
    assert certificate.certifies == "map" and certificate.details["delta"].kind in ("exact", "upper")
    if solver == "euler":       # the projection covers the Euler map
        assert certificate.value <= np.exp(0.2 * 1.0) + 1e-5
        assert certificate.details["delta"].value <= 0.2 + 1e-6
    f64 = StabilizedNODE(SolverSpec(solver, steps=5, t1=1.0), min_slope=0.1, dtype="float64")
    f64.build((None, d))
    f64.set_weights(layer.get_weights())
    run = lambda z: f64(z).numpy()
    u = rng.standard_normal((500, d)) * 3
    v = u + rng.standard_normal((500, d)) * 10.0 ** rng.uniform(-5, 0.5, (500, 1))
    assert pair_ratios(run, u, v).max() <= certificate.value * (1 + 1e-9)
    assert adversarial_ratio(f64, d, rng) <= certificate.value * (1 + 1e-9)


def test_unconstrained_layer_certifies_what_it_computes():
    rng = np.random.default_rng(3)
    layer = StabilizedNODE(SolverSpec("euler", steps=3, t1=1.0), min_slope=0.5, dtype="float64",
                           kernel_initializer=keras.initializers.RandomNormal(stddev=1.5))
    layer.build((None, 5))
    certificate = certify.layer_certificate(layer)
    assert certificate.value == pytest.approx(stability.step_lipschitz_bound(
        layer.kernel.numpy(), 0.5, 1 / 3, "euler").value ** 3)
    assert adversarial_ratio(layer, 5, rng) <= certificate.value * (1 + 1e-9)
    report = certify.summary(layer)
    assert report["delta_kind"] == "exact" and report["delta_bar"] is None


def test_keras_file_and_saved_model_round_trip(tmp_path):
    layer = StabilizedNODE(SolverSpec("euler", steps=3, t1=1.0), min_slope=0.2, delta_bar=0.0,
                           activation="smooth_leaky_relu",
                           kernel_regularizer=keras.regularizers.L2(1e-3))
    inputs = keras.Input((5,))
    model = keras.Model(inputs, keras.layers.Dense(2)(layer(inputs)))
    x = np.random.default_rng(4).standard_normal((6, 5)).astype("float32")
    model.compile("adam", "mse")
    model.fit(x, x[:, :2], verbose=0)
    expected = model.predict(x, verbose=0)
    path = os.path.join(tmp_path, "m.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), expected, rtol=1e-6)
    node = [l for l in loaded.layers if isinstance(l, StabilizedNODE)][0]
    assert node.get_config() == layer.get_config()
    assert node.kernel.constraint.get_config() == layer.kernel.constraint.get_config()
    export = os.path.join(tmp_path, "export")
    model.export(export, verbose=False)
    reloaded = tf.saved_model.load(export)     # keep a reference while serving
    np.testing.assert_allclose(reloaded.serve(x).numpy(), expected, rtol=1e-6)
    np.testing.assert_allclose(keras.layers.TFSMLayer(export, call_endpoint="serve")(x).numpy(),
                               expected, rtol=1e-6)


def test_configs_saved_with_the_old_slope_name_alpha_still_load():
    layer = StabilizedNODE(SolverSpec("euler", steps=3, t1=1.0), min_slope=0.3, delta_bar=0.0)
    config = layer.get_config()
    legacy = {k: v for k, v in config.items() if k not in ("min_slope", "solver")}
    legacy.update(alpha=0.3, solver="euler", steps=3, t1=1.0, gradient="backprop",
                  rtol=1e-6, atol=1e-6)
    restored = StabilizedNODE.from_config(legacy)
    assert restored.min_slope == 0.3 and restored.get_config() == config
    assert not hasattr(restored, "alpha")
    with pytest.raises(ValueError, match="min_slope"):
        StabilizedNODE.from_config({**legacy, "alpha": 1.01})
    with pytest.raises(ValueError, match="differ"):
        StabilizedNODE.from_config({**legacy, "min_slope": 0.5})


def test_a_saved_model_whose_config_says_alpha_loads_with_that_min_slope(tmp_path):
    model = keras.Sequential([keras.Input((4,)), StabilizedNODE(SolverSpec("euler", steps=2, t1=1.0),
                                                                min_slope=0.3, name="node")])
    x = np.random.default_rng(0).normal(size=(3, 4)).astype("float32")
    path = os.path.join(tmp_path, "legacy.keras")
    model.save(path)
    with zipfile.ZipFile(path) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    config = json.loads(files["config.json"])
    node = config["config"]["layers"][-1]["config"]
    node["alpha"] = node.pop("min_slope")          # as files written before min_slope say
    files["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    restored = keras.models.load_model(path)
    assert restored.get_layer("node").min_slope == 0.3
    np.testing.assert_allclose(restored(x).numpy(), model(x).numpy(), rtol=1e-6)
