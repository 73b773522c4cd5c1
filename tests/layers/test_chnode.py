"""CHNODE: the field, Theorem 1 in float arithmetic, discrete guarantee, serialization."""

import os
import subprocess
import sys
import textwrap
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

from contractive_keras.solvers import SolverSpec
from contractive_keras import certify, models
from contractive_keras.layers import CHNODE


def canonical_J(n):
    half = n // 2
    eye, zero = np.eye(half), np.zeros((half, half))
    return np.block([[zero, eye], [-eye, zero]])


def quiet(solver=None, layer_cls=CHNODE, **kwargs):
    kwargs.setdefault("discrete_check", "ignore")
    return layer_cls(solver, **kwargs)


def numpy_field(x, K, b, L, kappa, gamma, J):
    """Column form of DESIGN's field, row by row."""
    M = L.T @ L + kappa * np.eye(len(J))
    A = J - gamma * np.eye(len(J))
    return np.stack([A @ (K.T @ np.tanh(K @ xi + b) + M @ xi) for xi in x])


def theorem1_inequality_holds(gamma, K, L, kappa, eps, S=1.0, j2=1.0):
    """Theorem 1 checked in float64 from the exact float32 weights (no tolerance)."""
    K = np.asarray(K, np.float64)
    L = np.asarray(L, np.float64)
    k_max = max(np.linalg.eigvalsh(k.T @ k)[-1] for k in K)
    l_eig = [np.linalg.eigvalsh(l.T @ l) for l in L]
    c1 = kappa + min(e[0] for e in l_eig)
    c2 = kappa + max(e[-1] + S * np.linalg.eigvalsh(k.T @ k)[-1] for e, k in zip(l_eig, K))
    assert c2 >= kappa + S * k_max * (1 - 1e-12)
    alpha = (c2 - c1) / (c2 + c1)
    return float(gamma) ** 2 * (1 - alpha ** 2 - eps) >= (alpha ** 2 + eps) * j2


def test_output_shape_on_vectors_feature_maps_and_trajectory():
    x = np.random.randn(3, 4).astype("float32")
    assert quiet(SolverSpec("euler", steps=2, step_size=0.5))(x).shape == (3, 4)
    maps = np.random.randn(2, 5, 5, 4).astype("float32")
    assert quiet(SolverSpec("euler", steps=2, step_size=0.5))(maps).shape == (2, 5, 5, 4)
    layer = quiet(SolverSpec("euler", steps=3, step_size=0.1), return_trajectory=True)
    traj = layer(maps)
    assert traj.shape == (2, 4, 5, 5, 4)
    assert layer.compute_output_shape((2, 5, 5, 4)) == (2, 4, 5, 5, 4)
    np.testing.assert_allclose(traj[:, 0], maps, atol=0)
    final = quiet(SolverSpec("euler", steps=3, step_size=0.1))
    final.build(maps.shape)
    final.set_weights(layer.get_weights())
    np.testing.assert_allclose(traj[:, -1], final(maps), rtol=1e-5, atol=1e-6)


def test_field_and_euler_steps_match_the_design_formula():
    rng = np.random.default_rng(0)
    layer = quiet(SolverSpec("euler", steps=3, step_size=0.05), dtype="float64", kappa=0.1,
                  kernel_initializer=keras.initializers.RandomNormal(stddev=0.5),
                  bias_initializer=keras.initializers.RandomNormal(stddev=0.5))
    x = rng.normal(size=(6, 4))
    out = layer(x).numpy()
    K, b, L = layer.K.numpy(), layer.b.numpy(), layer.L.numpy()
    gamma = layer.theorem1_constants()["gamma"]
    J = canonical_J(4)
    y = x.copy()
    for k in range(3):
        y = y + 0.05 * numpy_field(y, K[k], b[k], L[k], 0.1, gamma, J)
    np.testing.assert_allclose(out, y, rtol=1e-12, atol=1e-12)


def test_feature_map_acts_per_pixel_like_a_1x1_convolution():
    layer = quiet(SolverSpec("euler", steps=2, step_size=0.1))
    maps = np.random.randn(2, 3, 3, 4).astype("float32")
    out = layer(maps).numpy()
    rows = layer(maps.reshape(-1, 4)).numpy().reshape(maps.shape)
    np.testing.assert_allclose(out, rows, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("scale", [0.05, 1.0, 30.0])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auto_gamma_satisfies_theorem1_exactly_in_float32(scale, seed):
    keras.utils.set_random_seed(seed)
    layer = quiet(SolverSpec("euler", steps=3, step_size=0.5), eps=1e-6,
                  dissipation_trainable=True,
                  kernel_initializer=keras.initializers.RandomNormal(stddev=1.0),
                  dissipation_initializer=keras.initializers.RandomNormal(stddev=0.3))
    layer.build((None, 6))
    layer.K.assign(layer.K * scale)      # scale 30: beyond the auto cap
    K, _, L, gamma = layer.effective_weights()
    assert gamma.dtype == tf.float32
    assert theorem1_inequality_holds(gamma, K, L, layer.kappa, layer.eps)
    # ...and it is the bound itself, up to the float64 eigenvalue slack.
    constants = layer.theorem1_constants()
    assert constants["gamma"] <= constants["gamma_min"] * (1 + 1e-6)
    assert not theorem1_inequality_holds(float(gamma) * (1 - 1e-6), K, L, layer.kappa,
                                         layer.eps)


def test_gamma_follows_weights_assigned_outside_the_optimizer():
    layer = quiet(SolverSpec("euler", steps=2, step_size=0.5))
    layer.build((None, 4))
    before = layer.theorem1_constants()["gamma"]
    layer.K.assign(layer.K * 10.0)
    after = layer.theorem1_constants()["gamma"]
    assert after > 5 * before
    K, _, L, gamma = layer.effective_weights()
    assert theorem1_inequality_holds(gamma, K, L, layer.kappa, layer.eps)


def test_cap_rescales_weights_that_would_make_gamma_infinite():
    layer = quiet(SolverSpec("euler", steps=2, step_size=0.5), eps=0.01, kappa=0.01,
                  dissipation_initializer="zeros")
    layer.build((None, 4))
    layer.K.assign(tf.ones_like(layer.K) * 1e3)   # alpha -> 1, 1 - alpha^2 << eps
    c = layer.theorem1_constants()
    assert c["one_minus_alpha_sq"] >= 2 * layer.eps * (1 - 1e-6)
    assert np.isfinite(c["gamma"])
    K, _, L, gamma = layer.effective_weights()
    assert theorem1_inequality_holds(gamma, K, L, layer.kappa, layer.eps)


def test_fixed_gamma_projects_initial_K_onto_theorem1_set():
    layer = quiet(SolverSpec("euler", steps=3, step_size=0.5), gamma=3.0, eps=0.05, kappa=0.1,
                  kernel_initializer=keras.initializers.RandomNormal(stddev=5.0))
    layer.build((None, 4))
    assert theorem1_inequality_holds(3.0, layer.K.numpy(), layer.L.numpy(), 0.1, 0.05)
    assert layer.theorem1_constants()["gamma"] == 3.0


@pytest.mark.parametrize("kwargs, message", [
    (dict(kappa=0.0), "kappa must be > 0"),
    (dict(kappa=-1.0), "kappa must be > 0"),
    (dict(eps=0.0), "eps must lie in"),
    (dict(eps=1.5), "eps must lie in"),
    (dict(gamma="big"), "gamma must be 'auto'"),
    (dict(gamma=-1.0), "gamma must be 'auto'"),
    (dict(gamma=2.0, dissipation_trainable=True), "fixed gamma needs a fixed L"),
    (dict(activation="gelu"), "no known slope bound"),
    (dict(activation=lambda x: x), "activation_slope_bound"),
    (dict(structure_matrix=[[0.0, 1.0], [1.0, 0.0]]), "skew-symmetric"),
    (dict(solver="dopri5"), "time_varying=False"),
    (dict(solver="leapfrog"), "allowed"),
    (dict(discrete_check="maybe"), "discrete_check"),
])
def test_bad_arguments_raise_value_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        CHNODE(**kwargs)


def test_bad_shapes_and_unreachable_gamma_raise_at_build():
    with pytest.raises(ValueError, match="even state size"):
        quiet()(np.zeros((2, 5), "float32"))
    with pytest.raises(ValueError, match="shape"):
        quiet(structure_matrix=canonical_J(4))(np.zeros((2, 6), "float32"))
    with pytest.raises(ValueError, match="unreachable"):   # below sqrt(eps / (1 - eps))
        quiet(gamma=0.05, eps=0.01)(np.zeros((2, 4), "float32"))
    with pytest.raises(ValueError, match="unreachable"):   # L too anisotropic for gamma
        quiet(gamma=0.2, eps=0.01, kappa=1e-3,
              dissipation_initializer=keras.initializers.Constant(np.diag([3.0, 0.0, 0.0, 0.0])))(np.zeros((2, 4), "float32"))
    with pytest.raises(ValueError, match=r"eps=0.5 must lie in \(0, 1 - alpha\^2\)"):
        quiet(eps=0.5, kernel_initializer=keras.initializers.RandomNormal(stddev=3.0))(np.zeros((2, 4), "float32"))


def test_custom_activation_with_slope_bound_and_skew_J():
    J = np.array([[0.0, 2.0, 1.0], [-2.0, 0.0, 0.5], [-1.0, -0.5, 0.0]])
    layer = quiet(SolverSpec("euler", steps=2, step_size=0.05), structure_matrix=J,
                  activation=keras.activations.tanh, activation_slope_bound=1.0)
    assert layer(np.ones((2, 3), "float32")).shape == (2, 3)
    assert layer.j2 == pytest.approx(np.linalg.eigvalsh(J @ J.T)[-1])


def test_the_layer_never_certifies_itself_and_certify_checks_its_discretization():
    """Building warns of nothing; certify.check_discretization warns, raises or
    stays silent per the layer's discrete_check; models.build runs the check."""
    init = keras.initializers.RandomNormal(stddev=1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        layer = CHNODE(SolverSpec("euler", steps=2, step_size=0.5), kernel_initializer=init)
        layer(np.zeros((1, 8), "float32"))
    with pytest.warns(RuntimeWarning, match="NOT certified contractive for the current weights"):
        cert = certify.check_discretization(layer)
    assert cert.value > 1.0 and cert.value == certify.layer_certificate(layer).value
    strict = CHNODE(SolverSpec("euler", steps=2, step_size=0.5), kernel_initializer=init,
                    discrete_check="raise")
    strict(np.zeros((1, 8), "float32"))
    with pytest.raises(ValueError, match="largest certified step size"):
        certify.check_discretization(strict)
    small = CHNODE(SolverSpec("euler", steps=2, step_size=0.01), discrete_check="raise",
                   kernel_initializer=keras.initializers.RandomNormal(stddev=0.1))
    small(np.zeros((1, 8), "float32"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert certify.check_discretization(small).value <= 1.0
    with pytest.warns(RuntimeWarning, match="initial weights"):
        models.build("chnode", depth=2)


def test_a_trained_layer_is_checked_on_its_trained_weights_after_loading(tmp_path):
    large = keras.initializers.RandomNormal(stddev=1.0)
    inputs = keras.Input((8,))
    layer = CHNODE(SolverSpec("euler", steps=2, step_size=0.5), kernel_initializer=large)
    model = keras.Model(inputs, layer(inputs))
    assert certify.layer_certificate(layer).value > 1.0
    layer.K.assign(0.01 * layer.K.numpy())          # trained to small weights
    layer.b.assign(np.zeros_like(layer.b.numpy()))
    assert certify.check_discretization(layer).value <= 1.0
    path = str(tmp_path / "m.keras")
    model.save(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = keras.models.load_model(path)
        np.testing.assert_array_equal(loaded.layers[1].K.numpy(), layer.K.numpy())
        assert certify.check_discretization(loaded.layers[1]).value <= 1.0


def _jacobian_norms(layer, x):
    x = tf.convert_to_tensor(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x)
    jac = tape.batch_jacobian(y, x).numpy().astype(np.float64)
    return np.linalg.norm(jac, ord=2, axis=(1, 2))


def with_step_size(layer, step_size, **changes):
    """A copy of a built layer with another step size (same weights)."""
    config = dict(layer.get_config(), step_size=step_size, t1=None, **changes)
    config.pop("name")
    clone = type(layer).from_config(config)
    clone.build((None, layer.state_size))
    clone.set_weights(layer.get_weights())
    return clone


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_block_jacobian_is_below_the_certified_bound_at_random_states(seed):
    keras.utils.set_random_seed(seed)
    layer = quiet(SolverSpec("euler", steps=4, step_size=0.5), kappa=0.05,
                  kernel_initializer=keras.initializers.RandomNormal(stddev=0.6),
                  bias_initializer=keras.initializers.RandomNormal(stddev=1.0))
    x = (np.random.randn(64, 6) * 3).astype("float32")
    layer(x)
    cert = certify.layer_certificate(layer)
    assert _jacobian_norms(layer, x).max() <= cert.value * (1 + 1e-5)
    # At the certified step size the block is non-expansive at every state.
    safe = with_step_size(layer, 0.95 * cert.details["max_step_size"])
    safe_cert = certify.layer_certificate(safe)
    assert safe_cert.value <= 1.0
    norms = _jacobian_norms(safe, x)
    assert norms.max() <= safe_cert.value * (1 + 1e-5)
    assert norms.max() <= 1.0 + 1e-5


def _directional_fd(loss, var, direction, step=1e-6):
    base = var.numpy()
    var.assign(base + step * direction)
    plus = float(loss())
    var.assign(base - step * direction)
    minus = float(loss())
    var.assign(base)
    return (plus - minus) / (2 * step)


def test_gradients_match_finite_differences():
    keras.utils.set_random_seed(5)
    # gamma is held constant in the gradient (the reference recomputes it after
    # the step); with a fixed gamma the map is differentiated exactly.
    layer = quiet(SolverSpec("euler", steps=3, step_size=0.1), dtype="float64", kappa=0.2,
                  gamma=3.0, eps=0.01,
                  bias_initializer=keras.initializers.RandomNormal(stddev=0.5),
                  kernel_initializer=keras.initializers.RandomNormal(stddev=0.3))
    x = tf.Variable(np.random.randn(3, 4))
    layer(x)
    weights = np.random.randn(3, 4)

    def loss():
        return tf.reduce_sum(layer(x) * weights)

    with tf.GradientTape() as tape:
        value = loss()
    grads = tape.gradient(value, [layer.K, layer.b, x])
    for var, grad in zip((layer.K, layer.b, x), grads):
        direction = np.random.randn(*var.shape)
        expected = float(np.sum(tf.convert_to_tensor(grad).numpy() * direction))
        assert _directional_fd(loss, var, direction) == pytest.approx(expected, rel=1e-6)


def test_auto_gamma_gradient_treats_gamma_as_a_constant():
    layer = quiet(SolverSpec("euler", steps=2, step_size=0.1), dtype="float64", kappa=0.2)
    x = tf.constant(np.random.randn(3, 4))
    layer(x)
    frozen = with_step_size(layer, 0.1, gamma=layer.theorem1_constants()["gamma"])
    grads = []
    for each in (layer, frozen):
        with tf.GradientTape() as tape:
            value = tf.reduce_sum(each(x) ** 2)
        grads.append(tf.convert_to_tensor(tape.gradient(value, each.K)).numpy())
    np.testing.assert_allclose(grads[0], grads[1], rtol=1e-12, atol=1e-14)


def _tiny_model(**kwargs):
    inputs = keras.Input((3, 3, 4))
    x = quiet(SolverSpec("euler", steps=2, step_size=0.1), name="ode", **kwargs)(inputs)
    x = keras.layers.Flatten()(x)
    return keras.Model(inputs, keras.layers.Dense(2)(x))


def test_get_config_round_trip():
    layer = quiet(SolverSpec("euler", steps=3, t1=0.6), gamma=4.0, eps=0.01, kappa=0.3, units=6,
                  time_varying=False, return_trajectory=True,
                  kernel_regularizer=keras.regularizers.L2(1e-3))
    clone = CHNODE.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    assert clone.step_size == pytest.approx(0.2)


def test_keras_file_and_savedmodel_round_trips_give_identical_outputs(tmp_path):
    model = _tiny_model(gamma="auto")
    x = np.random.randn(4, 3, 3, 4).astype("float32")
    expected = model(x).numpy()
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_array_equal(loaded(x).numpy(), expected)
    export = str(tmp_path / "export")
    model.export(export, verbose=False)
    tfsm = keras.layers.TFSMLayer(export, call_endpoint="serve")
    np.testing.assert_array_equal(tfsm(x).numpy(), expected)
    restored = tf.saved_model.load(export)
    np.testing.assert_array_equal(restored.serve(x).numpy(), expected)


def test_training_with_fit_keeps_fixed_gamma_theorem1_after_every_step():
    model = _tiny_model(gamma=2.0, eps=0.05, kappa=0.1,
                        kernel_initializer=keras.initializers.RandomNormal(stddev=0.1))
    layer = model.get_layer("ode")
    model.compile(keras.optimizers.Adam(5.0), "mse")
    x = np.random.randn(16, 3, 3, 4).astype("float32")
    y = np.random.randn(16, 2).astype("float32") * 100

    class Check(keras.callbacks.Callback):
        checked = 0

        def on_train_batch_end(self, batch, logs=None):
            assert theorem1_inequality_holds(2.0, layer.K.numpy(), layer.L.numpy(), 0.1, 0.05)
            Check.checked += 1

    model.fit(x, y, batch_size=4, epochs=2, verbose=0, callbacks=[Check()])
    assert Check.checked == 8
    # The huge learning rate did push K to the boundary of the set.
    assert certify.contraction_constants(layer)["gamma_min"] == pytest.approx(2.0, rel=1e-4)


@pytest.mark.slow   # trains under a two-device strategy (make test-slow)
def test_mirrored_strategy_with_two_cpu_devices():
    script = textwrap.dedent("""
        import numpy as np, tensorflow as tf, keras
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        from contractive_keras.layers import CHNODE
        from contractive_keras.solvers import SolverSpec
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        with strategy.scope():
            inputs = keras.Input((4,))
            ode = CHNODE(SolverSpec("euler", steps=2, step_size=0.1), gamma=2.0, eps=0.05,
                         kappa=0.1, discrete_check="ignore")
            model = keras.Model(inputs, keras.layers.Dense(1)(ode(inputs)))
            model.compile(keras.optimizers.Adam(3.0), "mse")
        x = np.random.randn(32, 4).astype("float32")
        model.fit(x, 100 * x[:, :1], batch_size=8, epochs=1, verbose=0)
        # custom strategy.run loop
        with strategy.scope():
            opt = keras.optimizers.Adam(3.0)
            opt.build(model.trainable_variables)
        @tf.function
        def step(xb):
            def replica(xb):
                with tf.GradientTape() as tape:
                    loss = tf.reduce_mean(model(xb) ** 2) * 1e4
                grads = tape.gradient(loss, model.trainable_variables)
                opt.apply_gradients(zip(grads, model.trainable_variables))
            strategy.run(replica, args=(xb,))
        ds = strategy.experimental_distribute_dataset(
            tf.data.Dataset.from_tensor_slices(x).batch(8))
        for xb in ds:
            step(xb)
        K = np.asarray(ode.K.numpy(), np.float64)
        c1 = 0.1 + 0.02 ** 2
        c2 = max(np.linalg.eigvalsh(k.T @ k)[-1] for k in K) + 0.1 + 0.02 ** 2
        a = (c2 - c1) / (c2 + c1)
        assert 4.0 * (1 - a * a - 0.05) >= a * a + 0.05, (c1, c2)
        print("OK", len(strategy.extended.worker_devices))
    """)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=env, timeout=300)
    assert "OK 2" in done.stdout, done.stderr[-3000:]


def _gradients(gradient, steps, t1=0.4):
    keras.utils.set_random_seed(0)
    layer = quiet(SolverSpec("euler", steps=steps, t1=t1, gradient=gradient), dtype="float64",
                  kappa=0.1, time_varying=False)
    x = tf.constant(np.random.default_rng(0).normal(size=(5, 4)))
    with tf.GradientTape() as tape:
        value = tf.reduce_sum(layer(x) ** 2)
    return [tf.convert_to_tensor(g).numpy() for g in tape.gradient(value, [layer.K, layer.b])]


def test_checkpoint_gradients_equal_backprop_and_adjoint_converges():
    exact = _gradients("backprop", 8)
    for a, b in zip(_gradients("checkpoint", 8), exact):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    # The adjoint is the continuous gradient: it and the discrete one converge
    # to each other as h -> 0 (first order for Euler).
    errors = []
    for steps in (8, 32):
        adjoint, backprop = _gradients("adjoint", steps), _gradients("backprop", steps)
        errors.append(np.linalg.norm(adjoint[0] - backprop[0]) / np.linalg.norm(backprop[0]))
    assert errors[1] < errors[0] / 2
