"""CH-NODE constraints: SpectralNormClip is the Frobenius projection; GammaProjection keeps Theorem 1."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from contractive_keras.solvers import SolverSpec
from contractive_keras import certify
from contractive_keras.constraints import GammaProjection, SpectralNormClip
from contractive_keras.layers import CHNODE


def numpy_clip(w, radius):
    u, s, vt = np.linalg.svd(w)
    return u @ np.diag(np.minimum(s, radius)) @ vt


def test_spectral_norm_clip_is_the_frobenius_projection():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(5, 4, 4)).astype("float32") * 2
    radii = [0.5, 1.0, 100.0, 2.0, 3.0]
    out = SpectralNormClip(radii)(w).numpy()
    for k in range(5):
        assert np.linalg.norm(out[k].astype(np.float64), 2) <= radii[k]
        np.testing.assert_allclose(out[k], numpy_clip(w[k].astype(np.float64), radii[k]),
                                   rtol=1e-5, atol=1e-5)
        # No other matrix in the ball is closer (random feasible competitors).
        for _ in range(20):
            other = numpy_clip(rng.normal(size=(4, 4)) * 3, radii[k])
            assert np.linalg.norm(w[k] - out[k]) <= np.linalg.norm(w[k] - other) + 1e-5
    np.testing.assert_array_equal(out[2], w[2])          # inside: unchanged, bit for bit
    assert SpectralNormClip.from_config(SpectralNormClip(radii).get_config()).max_norm == radii


def theorem1_holds(gamma, K, L, kappa, eps, S=1.0):
    K = np.asarray(K, np.float64)
    L = np.asarray(L, np.float64)
    l_eig = [np.linalg.eigvalsh(l.T @ l) for l in L]
    c1 = kappa + min(e[0] for e in l_eig)
    c2 = kappa + max(e[-1] + S * np.linalg.eigvalsh(k.T @ k)[-1] for e, k in zip(l_eig, K))
    alpha = (c2 - c1) / (c2 + c1)
    return gamma ** 2 * (1 - alpha ** 2 - eps) >= alpha ** 2 + eps


@pytest.mark.parametrize("gamma", [0.3, 1.0, 5.0, 40.0])
@pytest.mark.parametrize("scale", [0.1, 3.0, 100.0])
def test_gamma_projection_makes_the_fixed_gamma_satisfy_theorem1(gamma, scale):
    rng = np.random.default_rng(int(gamma * 10 + scale))
    L = (np.eye(4) * 0.3 + rng.normal(size=(3, 4, 4)) * 0.05).astype("float32")
    K = (rng.normal(size=(3, 4, 4)) * scale).astype("float32")
    try:
        projection = GammaProjection(kappa=0.05, eps=0.01, gamma=gamma, L=L.tolist())
    except ValueError as error:
        assert "unreachable" in str(error)
        assert not theorem1_holds(gamma, np.zeros_like(K), L, 0.05, 0.01)
        return
    projected = projection(K).numpy()
    assert theorem1_holds(gamma, projected, L, 0.05, 0.01)
    if not theorem1_holds(gamma, K, L, 0.05, 0.01):
        # Tight: the binding step sits on the boundary (within float32 rounding).
        norms = [np.linalg.norm(k.astype(np.float64), 2) for k in projected]
        assert max(n / r for n, r in zip(norms, projection.max_norms)) > 1 - 1e-5
    clone = GammaProjection.from_config(projection.get_config())
    np.testing.assert_array_equal(clone(K).numpy(), projected)


def test_gamma_projection_rejects_an_unreachable_gamma():
    with pytest.raises(ValueError, match="gamma >"):
        GammaProjection(kappa=0.1, eps=0.2, gamma=0.4)   # needs gamma > sqrt(0.2/0.8) = 0.5


def _driven_layer(gamma, lr, seed, mode):
    """A CHNODE block whose weights a huge learning rate drives hard."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((6,))
    layer = CHNODE(SolverSpec("euler", steps=4, step_size=0.25), gamma=gamma, eps=0.02, kappa=0.1,
                   discrete_check="ignore",
                   kernel_initializer=keras.initializers.RandomNormal(stddev=0.5),
                   bias_initializer=keras.initializers.RandomNormal(stddev=0.5))
    model = keras.Model(inputs, keras.layers.Dense(1)(layer(inputs)))
    x = np.random.randn(32, 6).astype("float32")
    y = (np.random.randn(32, 1) * 1e3).astype("float32")
    optimizer = keras.optimizers.Adam(lr)
    if mode == "fit":
        model.compile(optimizer, "mse")
        model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    else:
        for i in range(4):
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean((model(x[i * 8:(i + 1) * 8]) - y[i * 8:(i + 1) * 8]) ** 2)
            grads = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(grads, model.trainable_variables))
    return layer


def _jacobian_norms(layer, x):
    x = tf.convert_to_tensor(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x)
    return np.linalg.norm(tape.batch_jacobian(y, x).numpy().astype(np.float64),
                          ord=2, axis=(1, 2))


def _clone(layer, repeat=1, **changes):
    """Same weights (each piece repeated ``repeat`` times), other time grid."""
    config = dict(layer.get_config(), **changes)
    config.pop("name")
    clone = CHNODE.from_config(config)
    clone.build((None, 6))
    clone.set_weights([np.repeat(w, repeat, axis=0) for w in layer.get_weights()])
    return clone


@pytest.mark.parametrize("mode", ["fit", "custom_loop"])
@pytest.mark.parametrize("gamma, seed", [("auto", 0), ("auto", 1), (1.5, 2), (8.0, 3)])
def test_after_huge_optimizer_steps_jacobians_contract_and_obey_theorem2(gamma, seed, mode):
    layer = _driven_layer(gamma, lr=50.0, seed=seed, mode=mode)
    K, _, L, g = layer.effective_weights()
    assert theorem1_holds(float(g), K, L, 0.1, 0.02)
    if gamma != "auto":
        np.testing.assert_array_equal(K.numpy(), layer.K.numpy())   # projected by Keras
        assert float(g) == gamma
    x = (np.random.randn(32, 6) * 3).astype("float32")
    # The discrete block at its certified step size is non-expansive.
    cert = certify.layer_certificate(layer)
    safe = _clone(layer, step_size=0.9 * cert.details["max_step_size"])
    assert certify.layer_certificate(safe).value <= 1.0
    assert _jacobian_norms(safe, x).max() <= 1.0 + 1e-5
    # The flow (RK4, many small steps, float64) obeys Theorem 2 along the trajectory.
    c = certify.contraction_constants(layer)
    T = min(1.0, 20.0 / (c["gamma"] * c["c2"]))
    # 40 RK4 steps, each of the 4 weight pieces held for 10 of them.
    flow = _clone(layer, repeat=10, step_size=None, t1=T, steps=40, solver="rk4",
                  dtype="float64")
    norms = certify.bsm_norms(flow, x.astype(np.float64), method="exact")
    times = np.linspace(0.0, T, 41)
    assert np.all(norms <= np.exp(-c["rho"] * (T - times) / 2) * (1 + 1e-6))
