"""certify: Theorem 1 / 2 as numerical properties, the discrete certificates, model bounds."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from contractive_keras.solvers import SolverSpec
from contractive_keras.bounds import conv_operator_norm
from contractive_keras import certify
from contractive_keras.layers import CHNODE, HDNN, ResNetODE
from tests.certify.classifiers import tiny_classifier


def canonical_J(n):
    half = n // 2
    eye, zero = np.eye(half), np.zeros((half, half))
    return np.block([[zero, eye], [-eye, zero]])


def log_norm(B):
    return np.linalg.eigvalsh(0.5 * (B + B.T))[-1]


def random_spd(rng, n, c1, c2):
    Q, _ = np.linalg.qr(rng.normal(size=(n, n)))
    eig = rng.uniform(c1, c2, size=n)
    eig[:2] = c1, c2
    return Q @ np.diag(eig) @ Q.T


def householder(x, target):
    """Symmetric orthogonal H with H x = target (unit vectors)."""
    u = x - target
    if np.linalg.norm(u) < 1e-14:
        return np.eye(len(x))
    u = u / np.linalg.norm(u)
    return np.eye(len(x)) - 2 * np.outer(u, u)


def extremal_M(x, w, c1, c2):
    """Symmetric M, spectrum in {c1, c2}, with M x = beta (x + w), |w| = alpha."""
    beta, alpha = 0.5 * (c1 + c2), (c2 - c1) / (c2 + c1)
    E = alpha * householder(x, w / np.linalg.norm(w))
    return beta * (np.eye(len(x)) + E)


def test_theorem1_gamma_makes_every_admissible_field_contract_at_rate_rho():
    rng = np.random.default_rng(0)
    n, J = 8, canonical_J(8)
    for _ in range(300):
        c1 = 10 ** rng.uniform(-3, 0)
        c2 = c1 * 10 ** rng.uniform(0, 3)
        gap = 4 * c1 * c2 / (c1 + c2) ** 2
        eps = gap * rng.uniform(0.01, 0.99)
        gamma = certify.theorem1_gamma(c1, c2, eps)
        beta = 0.5 * (c1 + c2)
        rho = eps * beta * (gamma ** 2 + 1) / gamma
        B = (J - gamma * np.eye(n)) @ random_spd(rng, n, c1, c2)
        mu = log_norm(B)
        bound = certify.log_norm_bound(c1, c2, gamma)
        assert mu <= bound + 1e-9 * gamma * c2
        assert bound <= -rho / 2 * (1 - 1e-9)


def test_log_norm_bound_is_attained_so_theorem1_is_sharp():
    rng = np.random.default_rng(1)
    n, J = 6, canonical_J(6)
    for _ in range(20):
        c1, c2 = 0.1, 0.1 * 10 ** rng.uniform(0.5, 2)
        gamma = certify.theorem1_gamma(c1, c2, eps=1e-3)
        x = rng.normal(size=n)
        x /= np.linalg.norm(x)
        v = gamma * x + J @ x
        alpha = (c2 - c1) / (c2 + c1)
        M = extremal_M(x, -alpha * v / np.linalg.norm(v), c1, c2)
        assert np.allclose(np.linalg.eigvalsh(M)[[0, -1]], [c1, c2])
        B = (J - gamma * np.eye(n)) @ M
        assert log_norm(B) == pytest.approx(certify.log_norm_bound(c1, c2, gamma), rel=1e-8)
        # With eps = 0 (gamma = alpha / sqrt(1 - alpha^2)) that field only just
        # fails to contract: Theorem 1 cannot be improved for such M.
        gamma0 = alpha / math.sqrt(1 - alpha ** 2)
        v0 = gamma0 * x + J @ x
        M0 = extremal_M(x, -alpha * v0 / np.linalg.norm(v0), c1, c2)
        assert abs(log_norm((J - gamma0 * np.eye(n)) @ M0)) <= 1e-9 * c2 * (1 + gamma0)


def test_worst_case_max_step_size_is_exact_for_the_canonical_J():
    rng = np.random.default_rng(2)
    n, J = 4, canonical_J(4)
    for _ in range(30):
        c1 = 10 ** rng.uniform(-2, 0)
        c2 = c1 * 10 ** rng.uniform(0.2, 2)
        gap = 4 * c1 * c2 / (c1 + c2) ** 2
        gamma = certify.theorem1_gamma(c1, c2, gap * rng.uniform(0.05, 0.9))
        h = certify.worst_case_max_step_size(c1, c2, gamma)
        A = J - gamma * np.eye(n)
        for _ in range(20):   # never exceeded...
            step = np.eye(n) + h * A @ random_spd(rng, n, c1, c2)
            assert np.linalg.norm(step, 2) <= 1 + 1e-10
        # ...and attained: the tangent point of the ball {M x} gives norm > 1 just above h.
        beta, alpha = 0.5 * (c1 + c2), (c2 - c1) / (c2 + c1)
        V = math.sqrt(gamma ** 2 + 1)
        x = rng.normal(size=n)
        x /= np.linalg.norm(x)
        v = gamma * x + J @ x
        centre = beta * (1 - alpha ** 2) / (2 * (gamma - alpha * V)) * v
        y = beta * x + alpha * beta * (beta * x - centre) / np.linalg.norm(beta * x - centre)
        M = extremal_M(x, (y - beta * x) / beta, c1, c2)
        np.testing.assert_allclose(M @ x, y, rtol=1e-10, atol=1e-12)
        above = np.eye(n) + h * (1 + 1e-4) * A @ M
        below = np.eye(n) + h * (1 - 1e-4) * A @ M
        assert np.linalg.norm(above @ x) > 1
        assert np.linalg.norm(below, 2) <= 1 + 1e-12


def _step_jacobian_norms(layer, x):
    x = tf.convert_to_tensor(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x)
    return np.linalg.norm(tape.batch_jacobian(y, x).numpy(), ord=2, axis=(1, 2))


@pytest.mark.parametrize("layer_cls", [CHNODE, ResNetODE])
def test_vertex_certificate_is_attained_with_relu(layer_cls):
    """With relu every slope pattern is realised by some state: the bound is exact."""
    rng = np.random.default_rng(3)
    extra = dict(discrete_check="ignore", kappa=0.05) if layer_cls is CHNODE else {}
    layer = layer_cls(SolverSpec("euler", steps=1, step_size=0.3), activation="relu",
                      dtype="float64",
                      kernel_initializer=keras.initializers.RandomNormal(stddev=0.7),
                      bias_initializer=keras.initializers.RandomNormal(stddev=0.5), **extra)
    layer.build((None, 4))
    cert = certify.layer_certificate(layer)
    assert cert.details["exact_in_slopes"]
    structure = layer.jacobian_structure()
    A0, U, V, S = structure.offset, structure.left, structure.right, structure.slopes[1]
    patterns = np.array(np.meshgrid(*[[0.0, 1.0]] * 4)).reshape(4, -1).T
    norms = [np.linalg.norm(np.eye(4) + 0.3 * (A0[0] + U[0] @ np.diag(s) @ V[0].T), 2)
             for s in patterns]
    worst = patterns[int(np.argmax(norms))]
    K, b = layer.K.numpy()[0], layer.b.numpy()[0]
    # The pre-activation at xi is K xi + b (CHNODE) or K^T xi + b (ResNetODE).
    pre = K if layer_cls is CHNODE else K.T
    z = np.where(worst > 0, 1.0, -1.0) * rng.uniform(0.5, 1.0, size=4)
    xi = np.linalg.solve(pre, z - b)[None]
    assert _step_jacobian_norms(layer, xi)[0] == pytest.approx(cert.value,
                                                               rel=1e-9)


@pytest.mark.parametrize("solver", ["euler", "midpoint", "rk4"])
@pytest.mark.parametrize("layer_cls", [CHNODE, HDNN, ResNetODE])
def test_certificate_dominates_block_jacobians_for_every_scheme(layer_cls, solver):
    keras.utils.set_random_seed(4)
    extra = dict(discrete_check="ignore", kappa=0.1) if layer_cls is CHNODE else {}
    layer = layer_cls(SolverSpec(solver, steps=3, step_size=0.2), dtype="float64",
                      kernel_initializer=keras.initializers.RandomNormal(stddev=0.8),
                      bias_initializer=keras.initializers.RandomNormal(stddev=1.0), **extra)
    x = np.random.randn(200, 4) * 2
    layer(x)
    cert = certify.layer_certificate(layer)
    assert _step_jacobian_norms(layer, x).max() <= cert.value * (1 + 1e-9)
    assert len(cert.details["per_step_bounds"]) == 3


def test_max_step_size_is_the_largest_certified_one():
    keras.utils.set_random_seed(6)
    layer = CHNODE(SolverSpec("euler", steps=2, step_size=0.1), kappa=0.1,
                   discrete_check="ignore",
                   kernel_initializer=keras.initializers.RandomNormal(stddev=0.6))
    layer.build((None, 4))
    cert = certify.layer_certificate(layer)
    structure = layer.jacobian_structure()
    A0, U, V, S = structure.offset, structure.left, structure.right, structure.slopes[1]
    h = cert.details["max_step_size"]
    at, _, _ = certify.step_lipschitz_bounds(A0, U, V, S, h)
    above, _, _ = certify.step_lipschitz_bounds(A0, U, V, S, h * (1 + 2e-6))
    assert at.max() <= 1.0 < above.max()


def test_wide_layers_keep_the_worst_case_step_size_of_theorem1():
    """Beyond MAX_EXACT_UNITS the certificate is at least the c1, c2, gamma one."""
    keras.utils.set_random_seed(8)
    layer = CHNODE(SolverSpec("euler", steps=2, step_size=1e-3),
                   units=certify.MAX_EXACT_UNITS + 4, kappa=0.2, eps=0.2, dtype="float64",
                   discrete_check="ignore",
                   kernel_initializer=keras.initializers.RandomNormal(stddev=0.1))
    x = np.random.randn(100, 8) * 2
    layer(x)
    cert = certify.layer_certificate(layer)
    assert not cert.details["exact_in_slopes"]
    assert cert.details["max_step_size"] >= cert.details["worst_case_max_step_size"] > 0
    structure = layer.jacobian_structure()
    A0, U, V, S = structure.offset, structure.left, structure.right, structure.slopes[1]
    centre_radius, largest, _ = certify.step_lipschitz_bounds(A0, U, V, S, 1e-3)
    assert cert.details["max_step_size"] >= largest.min() and cert.value <= 1.0
    at_max = CHNODE.from_config({**layer.get_config(), "step_size": cert.details["max_step_size"]})
    at_max(x)
    at_max.set_weights(layer.get_weights())
    assert _step_jacobian_norms(at_max, x).max() <= (1 + 1e-9) ** 2


def test_bsm_norms_obey_theorem2_and_match_the_full_jacobian():
    keras.utils.set_random_seed(7)
    layer = CHNODE(SolverSpec("rk4", steps=10, t1=2.0), kappa=0.2, eps=0.2, dtype="float64",
                   discrete_check="ignore",
                   kernel_initializer=keras.initializers.RandomNormal(stddev=0.4),
                   bias_initializer=keras.initializers.RandomNormal(stddev=1.0))
    x = np.random.randn(16, 4) * 2
    layer(x)
    c = certify.contraction_constants(layer)
    exact = certify.bsm_norms(layer, x, method="exact", per_row=True)
    norms = exact.max(axis=1)
    times = np.linspace(0.0, 2.0, 11)
    theorem2 = np.exp(-c["rho"] * (2.0 - times) / 2)
    sharper = np.exp(certify.log_norm_bound(c["c1"], c["c2"], c["gamma"]) * (2.0 - times))
    assert np.all(norms <= sharper * (1 + 1e-6))
    assert np.all(sharper <= theorem2 * (1 + 1e-12))
    assert norms[0] < 1.0 and norms[-1] == pytest.approx(1.0)
    full = _step_jacobian_norms(layer, x)
    np.testing.assert_allclose(exact[0], full, rtol=1e-9)
    power = certify.bsm_norms(layer, x, method="power", iterations=40, per_row=True)
    assert np.all(power[0] <= exact[0] * (1 + 1e-9))      # a lower estimate...
    assert power[0].max() == pytest.approx(norms[0], rel=1e-3)   # ...of the block norm
    assert np.isnan(power[1:-1]).all()


def test_conv_bound_dominates_the_explicit_operator_norm():
    rng = np.random.default_rng(8)
    conv = keras.layers.Conv2D(3, 3, padding="same", use_bias=False)
    conv.build((None, 6, 6, 2))
    conv.kernel.assign(rng.normal(size=(3, 3, 2, 3)))
    operator = np.stack([conv(e.reshape(1, 6, 6, 2)).numpy().ravel()
                         for e in np.eye(72)], axis=1)
    exact = np.linalg.norm(operator, 2)
    bound = conv_operator_norm(conv.kernel.numpy().astype(np.float64), (6, 6))
    assert exact <= bound * (1 + 1e-6)
    assert bound <= 1.5 * exact


def test_model_lipschitz_bound_and_certified_radius_hold():
    keras.utils.set_random_seed(9)
    model = tiny_classifier()
    bound = certify.lipschitz_bound(model)
    assert [kind for _, kind, _ in bound.factors][2:4] == [
        "conv2d (circulant bound)", "ode block (map certificate)"]
    x = np.random.rand(20, 5, 5, 1).astype("float32")
    delta = np.random.randn(20, 5, 5, 1).astype("float32") * 0.1
    diff = model(x + delta).numpy() - model(x).numpy()
    ratios = np.linalg.norm(diff, axis=1) / np.linalg.norm(delta.reshape(20, -1), axis=1)
    assert ratios.max() <= bound.value
    radius, correct = certified_radius = certify.certified_radius(model, x)
    pred = model(x).numpy().argmax(1)
    for _ in range(5):
        d = np.random.randn(*x.shape).astype("float32")
        d /= np.linalg.norm(d.reshape(20, -1), axis=1)[:, None, None, None]
        moved = model(x + 0.99 * radius[:, None, None, None].astype("float32") * d)
        assert np.all(moved.numpy().argmax(1) == pred)
    global_radius, _ = certify.certified_radius(model, x, bound="global")
    assert np.all(radius >= global_radius) and np.any(radius > global_radius)


def test_summary_reports_the_certificate_scalars():
    model = tiny_classifier()
    values = certify.summary(model)
    assert set(values) == {"gamma", "alpha", "rho", "c1", "c2", "lipschitz_bound",
                           "lipschitz_certifies", "max_step_size", "step_size"}
    assert values.pop("lipschitz_certifies") == "map"
    assert all(isinstance(v, float) for v in values.values())
    with pytest.raises(ValueError, match="cannot certify"):
        certify.lipschitz_bound(keras.Sequential([keras.Input((3,)), keras.layers.Dropout(0.1)]))


@pytest.mark.parametrize("name", ["node", "stable_node"])
def test_model_lipschitz_bound_covers_stabilized_node_models(name):
    """The whole-model bound of a stabilized NODE network dominates its Jacobians."""
    from contractive_keras import models

    keras.utils.set_random_seed(4)
    model = models.build(name, width=8)
    layer = model.get_layer("stabilized_node")
    bound = certify.lipschitz_bound(model)
    kinds = {name: kind for name, kind, _ in bound.factors}
    assert kinds["stabilized_node"] == "ode block (map certificate)"
    block = dict((n, f) for n, _, f in bound.factors)["stabilized_node"]
    assert block == certify.layer_certificate(layer).value
    x = tf.constant(np.random.rand(16, 28, 28, 1), tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(x)
        logits = model(x)
    jac = tape.batch_jacobian(logits, x).numpy().reshape(16, 10, -1)
    measured = np.linalg.norm(jac, 2, axis=(1, 2)).max()
    assert 0 < measured <= bound.value


def test_model_lipschitz_bound_refuses_an_adaptive_stabilized_node():
    from contractive_keras import models

    model = models.build("node", width=4, solver="dopri5")
    with pytest.raises(ValueError, match="adaptive"):
        certify.lipschitz_bound(model)


def test_lipschitz_network_layers_enter_the_model_bound_with_factor_one():
    """A 1-Lipschitz CNN: conv (circulant clip) -> GroupSort -> L2-norm pool -> dense."""
    from contractive_keras.constraints import ConvNormClip
    from contractive_keras.layers import GroupSort, L2NormPooling2D

    keras.utils.set_random_seed(12)
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3, padding="same", use_bias=False,
                            kernel_constraint=ConvNormClip(1.0, input_shape=(8, 8)))(inputs)
    x = L2NormPooling2D(2)(GroupSort(2)(x))
    logits = keras.layers.Dense(3, name="logits")(keras.layers.Flatten()(x))
    model = keras.Model(inputs, logits)
    bound = certify.lipschitz_bound(model)
    kinds = [kind for _, kind, _ in bound.factors]
    assert kinds.count("groupsort (a permutation)") == kinds.count("l2-norm pooling (disjoint windows)") == 1
    x = np.random.rand(16, 8, 8, 1).astype("float32")
    delta = np.random.randn(16, 8, 8, 1).astype("float32") * 0.05
    ratios = (np.linalg.norm(model(x + delta).numpy() - model(x).numpy(), axis=1)
              / np.linalg.norm(delta.reshape(16, -1), axis=1))
    assert ratios.max() <= bound.value




def test_a_layer_that_declares_its_own_bound_is_not_trusted():
    """certify bounds only the layers it knows: a method claiming a bound proves nothing."""

    class Doubling(keras.layers.Layer):
        def call(self, x):
            return 2.0 * x

        def lipschitz_bound(self):
            return 0.5          # false: the layer is 2-Lipschitz

    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(3, name="logits")(Doubling()(inputs)))
    with pytest.raises(ValueError, match="cannot certify layer .* of type Doubling"):
        certify.lipschitz_bound(model)
