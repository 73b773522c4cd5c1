"""SolverSpec: one validated set of integration settings for every ODE layer."""

import numpy as np
import pytest
import tensorflow as tf

from contractive_keras import solvers
from contractive_keras.solvers import SolverSpec


def test_time_grid_from_step_size_or_final_time():
    by_step = SolverSpec("rk4", steps=8, step_size=0.25)
    by_time = SolverSpec("rk4", steps=8, t1=2.0)
    assert by_step.t1 == 2.0 and by_time.step_size == 0.25
    assert by_time.times[-1] == 2.0 and len(by_time.times) == 9
    assert by_step.fixed_step and not SolverSpec("dopri5", t1=1.0).fixed_step


def test_config_round_trip_and_replace():
    spec = SolverSpec(solvers.Dopri5(max_steps=64), t1=3.0, rtol=1e-5, gradient="adjoint")
    restored = SolverSpec.from_config(spec.get_config())
    assert restored == spec and restored.method.max_steps == 64
    moved = SolverSpec("euler", steps=4, t1=2.0).replace(step_size=0.1)
    assert moved.step_size == 0.1 and moved.t1 == pytest.approx(0.4)


def test_layer_defaults_are_completed_and_overridden():
    defaults = dict(method="euler", steps=4, step_size=0.5)
    assert SolverSpec.from_arguments(None, defaults=defaults).t1 == 2.0
    assert SolverSpec.from_arguments("rk4", t1=1.0, defaults=defaults).step_size == 0.25
    spec = SolverSpec("midpoint", steps=2, t1=1.0)
    assert SolverSpec.from_arguments(spec, defaults=defaults) is spec
    assert SolverSpec.from_arguments(spec.get_config(), steps=4, defaults=defaults).steps == 4


@pytest.mark.parametrize("kwargs,match", [
    (dict(method="heun", steps=2, t1=1.0), "Unknown solver"),
    (dict(method="euler", t1=1.0), "steps"),
    (dict(method="euler", steps=0, t1=1.0), "steps"),
    (dict(method="euler", steps=2.5, t1=1.0), "steps"),
    (dict(method="euler", steps=2, t1=1.0, step_size=0.5), "not both"),
    (dict(method="euler", steps=2), "step_size or t1"),
    (dict(method="euler", steps=2, t1=-1.0), "t1"),
    (dict(method="dopri5", t1=1.0, rtol=0.0), "rtol"),
    (dict(method="euler", steps=2, t1=1.0, gradient="magic"), "gradient"),
])
def test_bad_settings_are_refused_with_what_is_allowed(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SolverSpec(**kwargs)


def test_odeint_integrates_with_the_spec_settings():
    spec = SolverSpec("rk4", steps=20, t1=1.0)
    y1 = spec.odeint(lambda t, y: -y, tf.ones([3], tf.float64))
    np.testing.assert_allclose(y1.numpy(), np.exp(-1.0), rtol=1e-6)
    trajectory = spec.odeint(lambda t, y: -y, tf.ones([3], tf.float64), times=spec.times)
    assert trajectory.shape == (21, 3)
