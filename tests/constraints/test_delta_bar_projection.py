"""DeltaBarProjection: certified after every step, in eager, graph, XLA, fit and Mirrored."""

import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from contractive_keras.solvers import SolverSpec
from contractive_keras import certify, stability
from contractive_keras.constraints import DeltaBarProjection

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def relaxation_value(B, alpha, t):
    """The certified bound at the constraint's own scaling T, computed here."""
    B = np.asarray(B, np.float64)
    c, r = (1 + alpha) / 2, (1 - alpha) / 2
    M = c * (B + B.T) / 2 + r / 2 * (np.diag(t) + B.T @ (B / t[:, None]))
    return np.linalg.eigvalsh(M).max()


def euler_relaxation_norm(B, alpha, h, t):
    """Certified bound on max_D ||I + h D B||_2 at scaling t, computed here."""
    B = np.asarray(B, np.float64)
    d = len(B)
    k = h * (1 + alpha)
    Q = (np.eye(d) + k * (B + B.T) / 2 + h * h * (1 + alpha ** 2) / 2 * B.T @ B
         + h * (1 - alpha) / 4 * (B.T @ (t[:, None] * B)
                                  + (2 * np.eye(d) + k * B).T @ ((2 * np.eye(d) + k * B) / t[:, None])))
    return np.sqrt(np.linalg.eigvalsh(Q).max())


@pytest.mark.parametrize("d,alpha,delta_bar", [(4, 0.1, 0.0), (16, 0.5, -0.5), (64, 0.1, 0.0),
                                               (64, 0.3, 1.0)])
def test_projection_is_certified_and_idempotent(d, alpha, delta_bar):
    rng = np.random.default_rng(d)
    A = (2 * rng.standard_normal((d, d)) / np.sqrt(d)).astype("float32")
    constraint = DeltaBarProjection(alpha, delta_bar)
    B = np.asarray(constraint(A))
    assert B.dtype == np.float32
    assert relaxation_value(B, alpha, constraint.scaling()) <= delta_bar + 1e-6
    if d <= 8:
        assert stability.delta(B, alpha, "exact").value <= delta_bar + 1e-6
    # a certified kernel is returned unchanged, bit for bit
    np.testing.assert_array_equal(np.asarray(constraint(B)), B)


def test_kernel_already_inside_is_untouched():
    A = (-2.0 * np.eye(5)).astype("float32")        # delta = -2 alpha
    constraint = DeltaBarProjection(0.5, 0.0)
    np.testing.assert_array_equal(np.asarray(constraint(A)), A)


def test_euler_mode_certifies_the_step_and_delta():
    rng = np.random.default_rng(1)
    A = (2 * rng.standard_normal((6, 6))).astype("float32")
    h, delta_bar, alpha = 0.1, -0.2, 0.2
    constraint = DeltaBarProjection(alpha, delta_bar, step_size=h)
    B = np.asarray(constraint(A))
    step = euler_relaxation_norm(B, alpha, h, constraint.scaling())
    assert step <= 1 + h * delta_bar + 1e-7
    exact = stability.step_lipschitz_bound(B, alpha, h, "euler", method="exact")
    assert exact.value <= step + 1e-9
    assert stability.delta(B, alpha, "exact").value <= delta_bar + 1e-6


def make_model(d=64, delta_bar=0.0, alpha=0.1, steps=5, h=None):
    from contractive_keras.layers import StabilizedNODE

    layer = StabilizedNODE(SolverSpec("euler" if h is None else "euler", steps=steps, t1=1.0),
                           min_slope=alpha, delta_bar=delta_bar, name="node")
    inputs = keras.Input((12,))
    x = keras.layers.Dense(d)(inputs)
    outputs = keras.layers.Dense(3)(layer(x))
    return keras.Model(inputs, outputs), layer


def data(n=256, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 12)).astype("float32")
    return x, (x[:, 0] > 0).astype("int32") + (x[:, 1] > 0)


class CertificateRecorder(keras.callbacks.Callback):
    def __init__(self, layer):
        super().__init__()
        self.layer, self.values = layer, []

    def on_train_batch_end(self, batch, logs=None):
        constraint = self.layer.kernel.constraint
        B = np.asarray(self.layer.kernel)
        h = constraint.step_size
        if h is None:
            self.values.append(relaxation_value(B, constraint.min_slope, constraint.scaling()))
        else:
            self.values.append((euler_relaxation_norm(B, constraint.min_slope, h, constraint.scaling())
                                - 1) / h)


def test_certified_after_every_step_of_fit_with_a_large_learning_rate():
    model, layer = make_model(d=64, delta_bar=0.0)
    model.compile(keras.optimizers.Adam(0.05), keras.losses.SparseCategoricalCrossentropy(
        from_logits=True))
    recorder = CertificateRecorder(layer)
    x, y = data()
    model.fit(x, y, batch_size=32, epochs=2, verbose=0, callbacks=[recorder])
    assert len(recorder.values) == 16
    assert max(recorder.values) <= 0.0 + 1e-6
    assert layer.kernel.constraint.step_size == pytest.approx(0.2)   # Euler covered
    summary = certify.summary(layer)
    assert summary["delta_kind"] == "upper" and summary["delta"] <= 1e-6
    assert summary["lipschitz_certifies"] == "map" and summary["lipschitz_bound"] <= 1 + 1e-5


def test_certified_in_an_xla_compiled_custom_loop():
    model, layer = make_model(d=16, delta_bar=-0.3, alpha=0.3)
    optimizer = keras.optimizers.SGD(0.5)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    x, y = data(64)

    @tf.function(jit_compile=True)
    def step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    constraint = layer.kernel.constraint
    for i in range(6):
        step(x[i * 8:(i + 1) * 8], y[i * 8:(i + 1) * 8])
        B = np.asarray(layer.kernel)
        h = constraint.step_size
        value = (euler_relaxation_norm(B, 0.3, h, constraint.scaling()) - 1) / h
        assert value <= -0.3 + 1e-6
        reported = certify.layer_certificate(layer)        # what certify.summary logs
        delta = reported.details["delta"]
        assert delta.kind == "exact" and delta.value <= -0.3 + 1e-6
        assert reported.value <= (1 - 0.3 * h) ** 5 * (1 + 1e-6)


def test_far_outside_kernel_is_reoptimised_and_certified():
    """Fine-tuning: a kernel set by hand far outside the ball is handled at the next call."""
    rng = np.random.default_rng(2)
    constraint = DeltaBarProjection(0.1, 0.0)
    constraint(np.zeros((32, 32), "float32"))
    A = (3 * rng.standard_normal((32, 32)) / np.sqrt(32)).astype("float32")
    B = np.asarray(constraint(A))
    assert relaxation_value(B, 0.1, constraint.scaling()) <= 1e-6
    reference = stability.min_perturbation(A, 0.1, 0.0, method="upper")
    # weighted-metric projection: feasible, and within a factor of the Frobenius-minimal one
    assert reference.norm <= np.linalg.norm(B - A) <= 2.0 * reference.norm


def test_config_round_trip():
    constraint = DeltaBarProjection(0.2, -0.1, step_size=0.25, refresh_every=7)
    config = constraint.get_config()
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(constraint))
    assert isinstance(clone, DeltaBarProjection) and clone.get_config() == config


@pytest.mark.parametrize("kwargs,match", [
    (dict(min_slope=0.0, delta_bar=0.0), "min_slope"),
    (dict(min_slope=1.2, delta_bar=0.0), "min_slope"),
    (dict(min_slope=0.5, delta_bar=float("nan")), "NaN"),
    (dict(min_slope=0.5, delta_bar=float("inf")), "finite"),
    (dict(min_slope=0.5, delta_bar=-float("inf")), "inf"),
    (dict(min_slope=0.1, delta_bar=-9.0, step_size=0.1), "No kernel reaches"),
    (dict(min_slope=0.5, delta_bar=0.0, step_size=0.0), "step_size"),
])
def test_bad_arguments_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DeltaBarProjection(**kwargs)


def test_non_square_kernel_is_refused():
    with pytest.raises(ValueError, match="square"):
        DeltaBarProjection(0.5, 0.0)(np.zeros((3, 4), "float32"))


MIRRORED = textwrap.dedent("""
    import numpy as np, tensorflow as tf, keras
    tf.config.set_logical_device_configuration(
        tf.config.list_physical_devices("CPU")[0], [tf.config.LogicalDeviceConfiguration()] * 2)
    from contractive_keras.layers import StabilizedNODE
    from contractive_keras.solvers import SolverSpec
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        layer = StabilizedNODE(SolverSpec("euler", steps=4, t1=1.0), min_slope=0.1,
                               delta_bar=0.0)
        model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(12), layer,
                                  keras.layers.Dense(2)])
        optimizer = keras.optimizers.Adam(0.05)
        optimizer.build(model.trainable_variables)   # not lazily inside strategy.run
    x = np.random.default_rng(0).standard_normal((64, 6)).astype("float32")
    y = (x[:, 0] > 0).astype("int32")
    dataset = strategy.experimental_distribute_dataset(
        tf.data.Dataset.from_tensor_slices((x, y)).batch(16))

    @tf.function
    def step(batch):
        def replica(x, y):
            with tf.GradientTape() as tape:
                loss = tf.nn.compute_average_loss(keras.losses.sparse_categorical_crossentropy(
                    y, model(x, training=True), from_logits=True), global_batch_size=16)
            grads = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(grads, model.trainable_variables))
        strategy.run(replica, args=batch)

    c = layer.kernel.constraint
    for batch in dataset:
        step(batch)
        kernels = [np.asarray(v) for v in layer.kernel.value.values]
        assert np.array_equal(kernels[0], kernels[1])
        B, t = kernels[0].astype(np.float64), c.scaling()
        h, k = 0.25, 0.25 * 1.1
        Q = (np.eye(12) + k * (B + B.T) / 2 + h * h * 1.01 / 2 * B.T @ B
             + h * 0.9 / 4 * (B.T @ (t[:, None] * B)
                              + (2 * np.eye(12) + k * B).T @ ((2 * np.eye(12) + k * B) / t[:, None])))
        assert np.sqrt(np.linalg.eigvalsh(Q).max()) <= 1 + 1e-6, np.linalg.eigvalsh(Q).max()
    print("MIRRORED_OK")
""")


def test_certified_under_mirrored_strategy_with_two_replicas():
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", OPENBLAS_NUM_THREADS="1")
    result = subprocess.run([sys.executable, "-c", MIRRORED], capture_output=True, text=True,
                            env=env, cwd=ROOT, timeout=300)
    assert "MIRRORED_OK" in result.stdout, result.stderr[-3000:]


def test_reset_and_warm_start_are_public_and_keep_the_guarantee():
    rng = np.random.default_rng(7)
    constraint = DeltaBarProjection(0.2, 0.0)
    A = rng.standard_normal((8, 8)).astype("float32")
    B = np.asarray(constraint(A))
    scaling = constraint.scaling()
    assert scaling is not None and relaxation_value(B, 0.2, scaling) <= 1e-6
    constraint.reset()
    assert constraint.scaling() is None
    constraint.warm_start(scaling)
    np.testing.assert_allclose(constraint.scaling(), scaling)
    C = np.asarray(constraint(A * 3.0))
    assert relaxation_value(C, 0.2, constraint.scaling()) <= 1e-6
    with pytest.raises(ValueError, match="positive"):
        constraint.warm_start(-scaling)


@pytest.mark.parametrize("jit_compile", [False, True])
def test_kernels_the_cheap_test_keeps_are_certified_after_every_step(jit_compile):
    # A kernel well inside the set, moved by small steps: after the first
    # (projecting) call the trace-power bound proves every step inside, the
    # eigendecomposition is skipped (the refresh counter does not move), the
    # kernel is returned bit for bit and is certified at scaling().  Steps
    # that leave the set are projected as before.
    rng = np.random.default_rng(6)
    d, alpha = 24, 0.5
    constraint = DeltaBarProjection(alpha, 0.0)
    kernel = tf.Variable((-2.0 * np.eye(d) + 0.05 * rng.standard_normal((d, d))).astype("float32"))
    constraint.build((d, d))

    @tf.function(jit_compile=jit_compile)
    def step(move):
        before = tf.identity(kernel)
        kernel.assign(constraint(kernel + move))
        return before

    kept = 0
    for i in range(10):
        scale = 0.01 if i < 8 else 1.0          # the last two steps leave the set
        move = (scale * rng.standard_normal((d, d))).astype("float32")
        calls = int(constraint._state[2].numpy())
        before = step(tf.constant(move)).numpy()
        B = np.asarray(kernel)
        assert relaxation_value(B, alpha, constraint.scaling()) <= 1e-6
        if int(constraint._state[2].numpy()) == calls:
            kept += 1
            np.testing.assert_array_equal(B, before + move)
        else:
            assert i == 0 or scale == 1.0
    assert kept == 7
