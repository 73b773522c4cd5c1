"""robustness.solver_variants: the same weights under another solver, and the transfer attack
from a tight-tolerance map to the inference map."""

import keras
import numpy as np
import pytest

from contractive_keras.layers import StabilizedNODE
from contractive_keras.robustness import solver_variants, standard
from contractive_keras.solvers import SolverSpec
from tests.robustness.classifiers import MEAN, STD, mnist_test

SMALL_SUITE = (standard.AttackSpec("apgd-ce", "apgd", (("loss", "ce"), ("steps", 10))),)


@pytest.fixture(scope="module")
def adaptive_model():
    """A small stabilized NODE classifier integrated by dopri5 at a loose tolerance, briefly trained."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((28, 28, 1))
    h = keras.layers.Normalization(mean=MEAN, variance=STD**2)(inputs)
    h = keras.layers.Dense(16)(keras.layers.Flatten()(h))
    h = StabilizedNODE(min_slope=0.1, solver=SolverSpec("dopri5", t1=1.0, rtol=1e-2, atol=1e-2))(h)
    model = keras.Model(inputs, keras.layers.Dense(10)(h))
    x, y = mnist_test(300)
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=3, batch_size=50, verbose=0)
    return model


def test_with_solver_keeps_weights_and_changes_only_the_solver(adaptive_model):
    tight = solver_variants.with_solver(adaptive_model, SolverSpec("dopri5", t1=1.0, rtol=1e-7, atol=1e-7))
    [layer] = solver_variants.ode_layers(tight)
    assert layer.solver_spec.rtol == 1e-7 and solver_variants.ode_layers(adaptive_model)[0].solver_spec.rtol == 1e-2
    for a, b in zip(adaptive_model.get_weights(), tight.get_weights()):
        np.testing.assert_array_equal(a, b)
    x, _ = mnist_test(20)
    loose_logits, tight_logits = np.asarray(adaptive_model(x)), np.asarray(tight(x))
    assert np.abs(loose_logits - tight_logits).max() < 0.1 * np.abs(tight_logits).max()
    euler = solver_variants.with_solver(adaptive_model, SolverSpec("euler", steps=200, t1=1.0))
    np.testing.assert_allclose(np.asarray(euler(x)), tight_logits, atol=0.05 * np.abs(tight_logits).max())


def test_with_solver_refuses_a_model_without_ode_layers():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="no ODE layer"):
        solver_variants.with_solver(model, SolverSpec("rk4", steps=4, t1=1.0))


def test_transfer_suite_classifies_the_source_s_adversarial_examples_with_the_model(adaptive_model):
    x, y = mnist_test(60)
    robust, source = solver_variants.transfer_suite(adaptive_model, adaptive_model, x, y, 0.1,
                                                    suite=SMALL_SUITE)
    # Source and model the same map: the transfer result is the suite's own.
    np.testing.assert_array_equal(robust, source.robust)
    assert source.adversarial.shape == x.shape
    assert np.abs(source.adversarial - x).max() <= 0.1 + 1e-6
