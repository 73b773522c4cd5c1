"""Schemes: tableau consistency and convergence order on a linear system."""

import numpy as np
import pytest
import tensorflow as tf

from contractive_keras import solvers
from contractive_keras.solvers.runge_kutta import ButcherTableau
from tests.solvers import oracles

SCHEMES = [(solvers.Euler, 1), (solvers.Midpoint, 2), (solvers.RK4, 4)]


@pytest.mark.parametrize("scheme_class, order", SCHEMES)
def test_scheme_declares_its_order_and_stages(scheme_class, order):
    scheme = scheme_class()
    assert scheme.order == order
    assert scheme.stages == order  # explicit RK with p <= 4 needs s = p
    assert scheme.name in solvers.FIXED_STEP_METHODS


@pytest.mark.parametrize("scheme_class, order", SCHEMES)
def test_one_step_on_linear_problem_is_the_stability_polynomial(
        scheme_class, order):
    # For y' = lambda y, one step multiplies y by R(h lambda) exactly.
    rate, h = -1.7, 0.3
    y1 = scheme_class().step(lambda t, y: rate * y, tf.constant(0.0, tf.float64),
                             tf.constant(1.0, tf.float64),
                             tf.constant(h, tf.float64))
    expected = oracles.rk_stability_polynomial(order)(rate * h)
    np.testing.assert_allclose(float(y1), expected, rtol=1e-14)


@pytest.mark.parametrize("scheme_class, order", SCHEMES)
def test_observed_convergence_order_matches_the_scheme(scheme_class, order):
    fn = oracles.linear_field()
    y0 = tf.constant(oracles.LINEAR_Y0)
    t1 = 2.0
    exact = oracles.linear_exact(t1)
    step_counts = [20, 40, 80, 160]
    errors = [
        np.max(np.abs(solvers.odeint(fn, y0, t1, method=scheme_class(),
                                     steps=n).numpy() - exact))
        for n in step_counts]
    orders = oracles.observed_orders(errors)
    assert np.all(np.abs(orders - order) < 0.2), (errors, orders)


def test_time_dependent_field_reaches_the_exact_solution_at_order_four():
    # y' = cos(t) y, y(t) = exp(sin t): the stage times c_i must be right.
    errors = []
    for steps in (40, 80, 160):
        y1 = solvers.odeint(lambda t, y: tf.cos(t) * y,
                            tf.constant(1.0, tf.float64), 3.0, t0=0.5,
                            steps=steps)
        errors.append(abs(float(y1) - np.exp(np.sin(3.0) - np.sin(0.5))))
    orders = oracles.observed_orders(errors)
    assert np.all(np.abs(orders - 4) < 0.2), (errors, orders)


def test_inconsistent_tableau_is_rejected():
    with pytest.raises(ValueError, match="sums to"):
        ButcherTableau(a=((0.4,),), b=(0.0, 1.0), c=(0.0, 0.5))
    with pytest.raises(ValueError, match="must sum to 1"):
        ButcherTableau(a=((0.5,),), b=(0.5, 0.4), c=(0.0, 0.5))


def test_float32_state_stays_float32():
    y1 = solvers.odeint(lambda t, y: -y * t, tf.ones([2, 3]), 1.0, steps=5)
    assert y1.dtype == tf.float32
    np.testing.assert_allclose(y1.numpy(), np.exp(-0.5), rtol=1e-5)
