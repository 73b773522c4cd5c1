"""serialize / deserialize: solver configs round-trip, unknown solvers are refused."""

import json

import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from contractive_keras import solvers
from contractive_keras.solvers import serialization

ode = tfp.math.ode


def test_names_and_parameterless_schemes_serialize_to_lower_case_names():
    assert solvers.serialize("RK4") == "rk4"
    assert solvers.serialize("dopri5") == "dopri5"
    assert [solvers.serialize(s()) for s in (solvers.Euler, solvers.Midpoint, solvers.RK4)] \
        == ["euler", "midpoint", "rk4"]
    assert solvers.deserialize("BDF") == "bdf"


@pytest.mark.parametrize("solver", [
    ode.DormandPrince(rtol=1e-5, atol=1e-9, first_step_size=0.01, safety_factor=0.8,
                      min_step_size_factor=0.2, max_step_size_factor=5.0,
                      max_num_steps=50, validate_args=True, name="dp"),
    ode.DormandPrince(rtol=tf.constant(1e-4, tf.float64)),
    ode.BDF(rtol=1e-4, first_step_size=0.05, max_order=3, max_num_newton_iters=6,
            newton_tol_factor=0.2, newton_step_size_factor=0.4,
            bdf_coefficients=(-0.1, -0.1, 0.0, 0.0, 0.0), evaluate_jacobian_lazily=True),
    solvers.Dopri5(max_steps=64, safety=0.8, min_factor=0.3, max_factor=4.0),
], ids=["dormand_prince", "tensor_rtol", "bdf", "dopri5"])
def test_adaptive_solvers_round_trip_through_json_with_every_argument(solver):
    config = solvers.serialize(solver)
    assert config["class_name"] == type(solver).__name__
    restored = solvers.deserialize(json.loads(json.dumps(config)))
    assert type(restored) is type(solver)
    assert solvers.serialize(restored) == config
    if isinstance(solver, ode.Solver):
        keys = serialization._TFP_ARGUMENTS[config["class_name"]]
        for key in keys:
            expected = tf.get_static_value(getattr(solver, "_" + key))
            got = getattr(restored, "_" + key)
            if isinstance(got, tuple):
                assert list(got) == list(expected), key
            else:
                assert got == expected, key
    else:
        assert vars(restored) == vars(solver)


class _MySolver(ode.DormandPrince):
    pass


class _Heun(solvers.ExplicitRungeKutta):
    tableau = solvers.ButcherTableau(a=((1.0,),), b=(0.5, 0.5), c=(0.0, 1.0))
    order = 2
    name = "heun"


@pytest.mark.parametrize("solver", [
    _MySolver(),
    ode.DormandPrince(make_adjoint_solver_fn=lambda: ode.DormandPrince(rtol=1e-8)),
    _Heun(),
    object(),
    "rk45",
])
def test_unknown_solvers_are_refused_naming_what_is_supported(solver):
    with pytest.raises(ValueError, match="DormandPrince or tfp.math.ode.BDF") as error:
        solvers.serialize(solver)
    assert "euler, midpoint, rk4, dopri5, bdf" in str(error.value)


@pytest.mark.parametrize("config, match", [
    ({"class_name": "RungeKutta45", "config": {}}, "unknown solver class 'RungeKutta45'"),
    ({"class_name": "Dopri5"}, "keys 'class_name' and 'config'"),
    (3, "a name or a dict"),
])
def test_bad_configs_are_refused(config, match):
    with pytest.raises(ValueError, match=match):
        solvers.deserialize(config)


def test_layer_solver_classifies_and_checks():
    assert serialization.layer_solver("Euler") == ("euler", True)
    assert serialization.layer_solver(solvers.RK4()) == ("rk4", True)
    dopri = solvers.Dopri5()
    assert serialization.layer_solver(dopri) == (dopri, False)
    restored, fixed = serialization.layer_solver(solvers.serialize(ode.BDF(rtol=1e-3)))
    assert isinstance(restored, ode.BDF) and not fixed
    heun = _Heun()
    assert serialization.layer_solver(heun, allow_custom_schemes=True) == (heun, True)
    with pytest.raises(ValueError, match="named fixed-step schemes only"):
        serialization.layer_solver(heun)
    with pytest.raises(ValueError, match="of type int is not a solver; allowed"):
        serialization.layer_solver(3)
