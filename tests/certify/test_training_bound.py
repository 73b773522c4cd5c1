"""certify.body_bound_fn / ode_guarantee: the loss's bound is never below the certificate."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from contractive_keras.solvers import SolverSpec
from contractive_keras import certify
from contractive_keras.bounds.operator_norms import conv_operator_norm
from contractive_keras.bounds.operator_norms import conv_operator_norm_tf
from contractive_keras.constraints import ConvNormClip
from contractive_keras.constraints import SpectralNormClip
from contractive_keras.layers import CHNODE
from contractive_keras.layers import StabilizedNODE
from contractive_keras.layers import StepwiseIdentity
from contractive_keras.layers.group_sort import GroupSort
from contractive_keras.layers.l2_norm_pooling import L2NormPooling2D


def _cnn(ode=None, constrained=True):
    clip = (lambda grid: ConvNormClip(1.0, input_shape=grid)) if constrained else (lambda g: None)
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3, padding="same", kernel_constraint=clip((8, 8)))(inputs)
    x = GroupSort(2)(x)
    x = L2NormPooling2D(2)(x)
    if ode is not None:
        x = ode(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(6, kernel_constraint=SpectralNormClip(1.0) if constrained else None)(x)
    x = GroupSort(2)(x)
    outputs = keras.layers.Dense(3)(x)
    return keras.Model(inputs, outputs)


def test_conv_norm_tf_matches_the_numpy_circulant_bound():
    kernel = np.random.default_rng(0).normal(size=(3, 3, 2, 5))
    for spatial in [(6, 6), (5, 7)]:
        expected = conv_operator_norm(kernel, spatial)
        got = float(conv_operator_norm_tf(kernel, spatial))
        np.testing.assert_allclose(got, expected, rtol=1e-12)
    single = kernel[:, :, :1, :]
    np.testing.assert_allclose(float(conv_operator_norm_tf(single, (6, 6))),
                               conv_operator_norm(single, (6, 6)), rtol=1e-12)


@pytest.mark.parametrize("mode", ["exact", "constraint"])
def test_bound_is_at_or_above_the_certificate(mode):
    keras.utils.set_random_seed(1)
    model = _cnn()
    if mode == "constraint":
        with pytest.raises(ValueError, match="outside its constraint"):
            certify.body_bound_fn(model, mode)
        for kernel in (model.layers[1].kernel, model.layers[5].kernel):
            kernel.assign(kernel.constraint(kernel))
    certified = certify.body_and_readout(model)[0].value
    value = float(certify.body_bound_fn(model, mode)())
    assert value >= certified
    if mode == "exact":
        assert value <= certified * (1 + 1e-6)      # tight: the same factors


def test_exact_bound_gradient_matches_finite_differences():
    keras.utils.set_random_seed(2)
    model = _cnn(constrained=False)
    bound = certify.body_bound_fn(model)
    conv = model.layers[1]
    with tf.GradientTape() as tape:
        value = bound()
    grad = tape.gradient(value, conv.kernel).numpy()
    direction = np.random.default_rng(3).normal(size=grad.shape).astype("float32")
    base = conv.kernel.numpy()
    h = 1e-3
    conv.kernel.assign(base + h * direction)
    up = float(bound())
    conv.kernel.assign(base - h * direction)
    down = float(bound())
    conv.kernel.assign(base)
    np.testing.assert_allclose((up - down) / (2 * h), np.sum(grad * direction), rtol=2e-2)


def test_stabilized_block_guarantee_holds_for_the_computed_map():
    block = StabilizedNODE(SolverSpec("euler", steps=4, t1=1.0), min_slope=0.5, delta_bar=-0.2)
    keras.utils.set_random_seed(4)
    model = _cnn(block)
    with pytest.raises(ValueError, match="outside its constraint"):
        certify.ode_guarantee(block)          # the initial kernel is not projected yet
    block.kernel.assign(block.kernel.constraint(block.kernel))
    assert certify.ode_guarantee(block) == pytest.approx((1 - 0.25 * 0.2) ** 4)
    assert certify.layer_certificate(block).value <= certify.ode_guarantee(block) * (1 + 1e-9)
    assert float(certify.body_bound_fn(model)()) >= certify.body_and_readout(model)[0].value


def test_fixed_gamma_chnode_guarantee_and_refusals():
    block = CHNODE(SolverSpec("euler", steps=4, step_size=0.25), gamma=2.0, eps=0.3, kappa=1e-6,
                   dissipation_initializer=StepwiseIdentity(0.3), discrete_check="ignore")
    model = _cnn(block)
    assert certify.ode_guarantee(block) == 1.0
    assert certify.layer_certificate(block).value <= 1.0 + 1e-12
    too_big = CHNODE(SolverSpec("euler", steps=1, step_size=50.0), gamma=2.0, eps=0.3,
                     dissipation_initializer=StepwiseIdentity(0.3), discrete_check="ignore")
    _cnn(too_big)
    with pytest.raises(ValueError, match="worst-case"):
        certify.ode_guarantee(too_big)
    auto = CHNODE(SolverSpec("euler", steps=2, step_size=0.1), discrete_check="ignore")
    _cnn(auto)
    with pytest.raises(ValueError, match="auto"):
        certify.ode_guarantee(auto)
    assert float(certify.body_bound_fn(model)()) >= certify.body_and_readout(model)[0].value


def test_refusals_name_what_is_wrong():
    with pytest.raises(ValueError, match="mode"):
        certify.body_bound_fn(_cnn(), mode="estimate")
    with pytest.raises(ValueError, match="constraint"):
        certify.body_bound_fn(_cnn(constrained=False), mode="constraint")
    free = StabilizedNODE(SolverSpec("euler", steps=2, t1=1.0), min_slope=0.5)
    with pytest.raises(ValueError, match="delta_bar"):
        certify.body_bound_fn(_cnn(free))
    relu = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, activation="relu"),
                             keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="linear"):
        certify.body_bound_fn(relu)
