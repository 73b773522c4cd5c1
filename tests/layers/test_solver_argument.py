"""The layers' ``solver=``: names or solver instances, serialized by get_config.

Shared by CHNODE, HDNN, ResNetODE (``PerStepODE``), NeuralODE and
StabilizedNODE (shared/DESIGN.md, "Solver call shape").
"""

import os

import keras
import numpy as np
import pytest
import tensorflow_probability as tfp

from contractive_keras import solvers
from contractive_keras.layers import CHNODE, HDNN, NeuralODE, ResNetODE, StabilizedNODE
from contractive_keras.layers import StepwiseIdentity
from contractive_keras.solvers import SolverSpec

ode = tfp.math.ode


def make_layer(kind, solver, **settings):
    """``kind`` integrating with ``SolverSpec(solver, **settings)`` on its own time grid."""
    # Fields strong enough that the adaptive solvers' tolerances matter.
    K = keras.initializers.RandomNormal(stddev=1.0, seed=3)
    if kind in ("chnode", "hdnn", "resnet"):
        spec = SolverSpec(solver, **{"steps": 3, "step_size": 0.2, **settings})
    else:
        spec = SolverSpec(solver, **{"steps": 10, "t1": 0.6, **settings})
    if kind == "chnode":
        return CHNODE(spec, time_varying=False, discrete_check="ignore", dtype="float64",
                      kernel_initializer=K, dissipation_initializer=StepwiseIdentity(1.0),
                      dissipation_trainable=True)
    if kind == "hdnn":
        return HDNN(spec, time_varying=False, dtype="float64", kernel_initializer=K)
    if kind == "resnet":
        return ResNetODE(spec, time_varying=False, dtype="float64", kernel_initializer=K)
    if kind == "node":
        return NeuralODE(spec,
                         vector_field=keras.layers.Dense(4, activation="tanh", dtype="float64"),
                         dtype="float64")
    return StabilizedNODE(spec, min_slope=0.2, delta_bar=0.0, activation="smooth_leaky_relu",
                          dtype="float64")


KINDS = ["chnode", "hdnn", "resnet", "node", "stabilized"]


def twin(kind, solver, reference, **kwargs):
    """``kind`` with ``solver``, weights copied from ``reference``."""
    layer = make_layer(kind, solver, **kwargs)
    layer.build((None, 4))
    layer.set_weights(reference.get_weights())
    return layer


@pytest.mark.parametrize("kind", KINDS)
def test_tfp_instance_matches_the_name_and_round_trips_through_get_config(kind):
    x = np.random.default_rng(0).standard_normal((5, 4))
    named = make_layer(kind, "tfp_dopri5", rtol=1e-5)
    expected = named(x).numpy()
    layer = twin(kind, ode.DormandPrince(rtol=1e-5), named)
    # Same scheme, same tolerances (tfp's default atol = the layers' 1e-6).
    np.testing.assert_allclose(layer(x).numpy(), expected, rtol=1e-12, atol=1e-12)
    config = layer.get_config()
    assert config["solver"]["config"]["method"]["class_name"] == "DormandPrince"
    assert config["solver"]["config"]["method"]["config"]["rtol"] == 1e-5
    clone = type(layer).from_config(config)
    assert type(clone.solver) is ode.DormandPrince and clone.solver._rtol == 1e-5
    assert clone.get_config() == config
    clone.build((None, 4))
    clone.set_weights(layer.get_weights())
    np.testing.assert_array_equal(clone(x).numpy(), layer(x).numpy())


@pytest.mark.parametrize("kind", KINDS)
def test_own_dopri5_instance_solves_to_its_tolerance(kind):
    x = np.random.default_rng(1).standard_normal((5, 4))
    fine = make_layer(kind, "rk4", **({"steps": 96} if kind in ("node", "stabilized") else {}))
    if kind not in ("node", "stabilized"):      # 3 steps of h = 0.2 -> 96 of 0.00625
        fine = type(fine).from_config({**fine.get_config(), "steps": 96, "step_size": 0.6 / 96})
    fine.build((None, 4))
    layer = twin(kind, solvers.Dopri5(max_steps=200), fine, rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(layer(x).numpy(), fine(x).numpy(), atol=1e-6)
    assert solvers.deserialize(layer.get_config()["solver"]["config"]["method"]).max_steps == 200


@pytest.mark.parametrize("kind", KINDS)
def test_the_name_dopri5_selects_this_packages_pair_and_old_configs_load(kind):
    x = np.random.default_rng(4).standard_normal((5, 4))
    named = make_layer(kind, "dopri5", rtol=1e-5)
    named.build((None, 4))
    config = named.get_config()
    assert config["solver"]["config"]["method"] == "dopri5"
    own = twin(kind, solvers.Dopri5(), named, rtol=1e-5)
    np.testing.assert_array_equal(named(x).numpy(), own(x).numpy())
    clone = type(named).from_config(config)          # a config that says "dopri5"
    clone.build((None, 4))
    clone.set_weights(named.get_weights())
    np.testing.assert_array_equal(clone(x).numpy(), own(x).numpy())


@pytest.mark.parametrize("kind", ["chnode", "stabilized"])
@pytest.mark.parametrize("solver", [ode.DormandPrince(rtol=1e-5), solvers.Dopri5(max_steps=64)],
                         ids=["tfp", "own"])
def test_solver_instances_survive_keras_files(kind, solver, tmp_path):
    layer = make_layer(kind, solver)
    inputs = keras.Input((4,), dtype="float64")
    model = keras.Model(inputs, layer(inputs))
    x = np.random.default_rng(2).standard_normal((3, 4))
    path = os.path.join(tmp_path, "m.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_array_equal(loaded(x).numpy(), model(x).numpy())
    restored = loaded.layers[-1]
    assert type(restored.solver) is type(solver)
    assert restored.get_config() == layer.get_config()


def test_named_scheme_instances_act_as_their_names():
    layer = make_layer("chnode", solvers.RK4())
    assert layer.solver == "rk4" and layer.get_config()["solver"]["config"]["method"] == "rk4"
    node = StabilizedNODE(SolverSpec(solvers.Euler(), steps=4, t1=1.0), min_slope=0.2,
                          delta_bar=0.1)
    # The Euler instance gets the projection that covers the Euler map.
    assert node.solver == "euler" and node.kernel_constraint.step_size == 0.25


class _Heun(solvers.ExplicitRungeKutta):
    tableau = solvers.ButcherTableau(a=((1.0,),), b=(0.5, 0.5), c=(0.0, 1.0))
    order = 2
    name = "heun"


class _MySolver(ode.DormandPrince):
    pass


@pytest.mark.parametrize("kind", KINDS)
def test_bad_solvers_raise_clear_value_errors(kind):
    with pytest.raises(ValueError, match=r"Unknown solver 'rk45'; allowed: .*euler, midpoint, "
                                         r"rk4, dopri5, bdf.*DormandPrince"):
        make_layer(kind, "rk45")
    with pytest.raises(ValueError, match="type dict is not a solver|a name or a dict"):
        make_layer(kind, {"rtol": 1e-5})
    with pytest.raises(ValueError, match="of type float is not a solver; allowed"):
        make_layer(kind, 0.5)
    layer = make_layer(kind, _MySolver(rtol=1e-5))      # runs, but has no faithful config
    with pytest.raises(ValueError, match="cannot serialize solver .* of type _MySolver; "
                                         "supported: .*Dopri5 instance"):
        layer.get_config()


def test_adaptive_instances_need_shared_weights_and_custom_schemes_need_stabilized_node():
    with pytest.raises(ValueError, match="adaptive: per-step weights .* time_varying=False"):
        CHNODE(solver=ode.DormandPrince())
    with pytest.raises(ValueError, match="adaptive: per-step weights .* time_varying=False"):
        HDNN(solver=solvers.Dopri5())
    with pytest.raises(ValueError, match="named fixed-step schemes only"):
        ResNetODE(solver=_Heun())
    custom = SolverSpec(_Heun(), steps=2, t1=1.0, allow_custom_schemes=True)
    with pytest.raises(ValueError, match="named fixed-step schemes only"):
        ResNetODE(custom)                   # a spec that allows it does not sneak it in
    with pytest.raises(ValueError, match="named fixed-step schemes only"):
        SolverSpec(_Heun(), steps=2, t1=1.0)
    node = StabilizedNODE(custom, min_slope=0.5)
    assert node.steps == 2 and node.step_size == 0.5
    assert node(np.ones((1, 3), "float32")).shape == (1, 3)
    with pytest.raises(ValueError, match="cannot serialize solver .* of type _Heun"):
        node.get_config()


def test_stabilized_node_with_an_adaptive_instance_certifies_the_flow_only():
    from contractive_keras import certify

    for solver in (solvers.Dopri5(), ode.DormandPrince()):
        layer = make_layer("stabilized", solver)
        layer.build((None, 4))
        assert not layer.fixed_step and layer.steps is None and layer.step_size is None
        assert certify.summary(layer)["lipschitz_certifies"] == "flow"
        with pytest.raises(ValueError, match="adaptive"):
            certify.layer_certificate(layer)
