"""The ODE layers' constructor contract (contractive_keras.layers.ode_block):
integration settings only through ``solver=``, keyword-only arguments, Keras's
names; the old loose settings and names are refused by ``__init__`` and read
from saved configs, so every zoo model loads and computes what it did."""

import inspect
import os

import keras
import numpy as np
import pytest

from contractive_keras import backend
from contractive_keras import saving
from contractive_keras.layers import CHNODE, HDNN, NeuralODE, ResNetODE, StabilizedNODE
from contractive_keras.layers import StepwiseIdentity
from contractive_keras.solvers import SolverSpec
from scripts.zoo_reference_logits import entry_name, fixed_inputs, zoo_logits, zoo_paths

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
REFERENCE = os.path.join(ROOT, "tests", "layers", "data", "zoo_logits.npz")
ODE_LAYERS = (CHNODE, HDNN, ResNetODE, NeuralODE, StabilizedNODE)


def new_layers():
    """One layer of each class with non-default settings, built by the new arguments."""
    normal = keras.initializers.RandomNormal(stddev=0.3, seed=5)
    J = [[0.0, 1.0, 0.0, 0.0], [-1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 2.0],
         [0.0, 0.0, -2.0, 0.0]]
    return {
        "chnode": CHNODE(SolverSpec("midpoint", steps=3, step_size=0.1, gradient="checkpoint"),
                         gamma="auto", kappa=0.2, eps=0.1, structure_matrix=J, units=6,
                         kernel_initializer=normal, bias_initializer="ones",
                         kernel_regularizer=keras.regularizers.L2(1e-3),
                         dissipation_initializer=StepwiseIdentity(0.2),
                         dissipation_regularizer=keras.regularizers.L2(1e-4),
                         dissipation_trainable=True, dissipation_units=3,
                         discrete_check="ignore", dtype="float64", name="chnode"),
        "hdnn": HDNN(SolverSpec("rk4", steps=2, t1=0.4), structure_matrix=J, units=5,
                     kernel_initializer=normal, bias_regularizer=keras.regularizers.L2(1e-3),
                     dtype="float64", name="hdnn"),
        "resnet": ResNetODE(SolverSpec("euler", steps=3, step_size=0.2), time_varying=False,
                            kernel_initializer=normal, dtype="float64", name="resnet"),
        "node": NeuralODE(SolverSpec("euler", steps=4, t1=0.8),
                          vector_field=keras.layers.Dense(4, activation="tanh", dtype="float64"),
                          dtype="float64", name="node"),
        "stabilized": StabilizedNODE(SolverSpec("rk4", steps=5, t1=0.5), min_slope=0.3,
                                     delta_bar=0.1, kernel_initializer=normal, dtype="float64",
                                     name="stabilized"),
    }


OLD_NAMES = {"kernel_initializer": "K_initializer", "bias_initializer": "b_initializer",
             "kernel_regularizer": "K_regularizer", "bias_regularizer": "b_regularizer",
             "dissipation_initializer": "L_initializer",
             "dissipation_regularizer": "L_regularizer",
             "dissipation_trainable": "L_trainable", "dissipation_units": "L_units",
             "structure_matrix": "J", "min_slope": "alpha"}


def old_style(layer):
    """The config an older version saved: loose solver settings, old argument names."""
    config = layer.get_config()
    spec = config.pop("solver")["config"]
    config["solver"] = spec.pop("method")
    config.update({k: v for k, v in spec.items() if v is not None})
    if isinstance(layer, StabilizedNODE):
        config["alpha"] = config.pop("min_slope")
        return config
    for new, old in OLD_NAMES.items():
        if new in config and not isinstance(layer, NeuralODE):
            config[old] = config.pop(new)
    config.pop("kernel_constraint", None)     # not in old configs: the defaults apply
    config.pop("bias_constraint", None)
    return config


@pytest.mark.parametrize("cls", ODE_LAYERS)
@pytest.mark.parametrize("loose", [dict(steps=4), dict(t1=2.0), dict(step_size=0.1),
                                   dict(gradient="adjoint"), dict(rtol=1e-5, atol=1e-7)])
def test_init_refuses_the_loose_solver_settings_and_names_solver_spec(cls, loose):
    extra = dict(vector_field=keras.layers.Dense(3)) if cls is NeuralODE else {}
    with pytest.raises(TypeError, match=r"only through solver=.*solver=SolverSpec\(method, "
                                        r"steps=\.\.\."):
        cls(**loose, **extra)


@pytest.mark.parametrize("cls, old, new", [
    (CHNODE, "K_initializer", "kernel_initializer"), (CHNODE, "b_regularizer", "bias_regularizer"),
    (CHNODE, "L_initializer", "dissipation_initializer"),
    (CHNODE, "L_trainable", "dissipation_trainable"), (CHNODE, "L_units", "dissipation_units"),
    (CHNODE, "J", "structure_matrix"), (HDNN, "J", "structure_matrix"),
    (ResNetODE, "K_initializer", "kernel_initializer"), (StabilizedNODE, "alpha", "min_slope"),
])
def test_init_refuses_the_old_names_and_says_the_new_one(cls, old, new):
    with pytest.raises(TypeError, match=f"renamed arguments: {old} -> {new}"):
        cls(**{old: None})


def test_one_positional_argument_the_solver_for_every_ode_layer():
    for cls in ODE_LAYERS:
        params = list(inspect.signature(cls.__init__).parameters.values())[1:]
        positional = [p.name for p in params if p.kind == p.POSITIONAL_OR_KEYWORD]
        assert positional == ["solver"], cls.__name__
    with pytest.raises(TypeError, match="only positional argument is solver"):
        CHNODE(4)                               # the old first positional, steps
    with pytest.raises(TypeError, match="vector_field="):
        NeuralODE(keras.layers.Dense(3))        # the old first positional, the field
    with pytest.raises(TypeError, match="needs vector_field"):
        NeuralODE("rk4")


def test_a_method_name_takes_the_layer_defaults():
    assert CHNODE("rk4").solver_spec == SolverSpec("rk4", steps=4, step_size=0.5)
    assert NeuralODE(vector_field=keras.layers.Dense(3)).solver_spec == SolverSpec(
        "rk4", steps=10, t1=1.0)
    assert StabilizedNODE("midpoint").solver_spec == SolverSpec("midpoint", steps=10, t1=1.0)


@pytest.mark.parametrize("name", ["chnode", "hdnn", "resnet", "node", "stabilized"])
def test_get_config_round_trips_and_stores_the_solver_spec(name):
    layer = new_layers()[name]
    config = layer.get_config()
    assert config["solver"] == layer.solver_spec.get_config()
    assert not set(config) & {"steps", "step_size", "t1", "gradient", "rtol", "atol"}
    assert not set(config) & set(OLD_NAMES.values())
    clone = layer.__class__.from_config(config)
    assert clone.get_config() == config


@pytest.mark.parametrize("name", ["chnode", "hdnn", "resnet", "node", "stabilized"])
def test_an_old_style_config_loads_into_the_same_layer(name):
    layer = new_layers()[name]
    legacy = old_style(layer)
    assert set(legacy) & {"steps", "gradient", "rtol"} and isinstance(legacy["solver"], str)
    restored = layer.__class__.from_config(legacy)
    assert restored.get_config() == layer.get_config()
    x = np.random.default_rng(1).normal(size=(3, 4))
    expected = layer(x).numpy()
    restored.build(x.shape)
    restored.set_weights(layer.get_weights())
    np.testing.assert_array_equal(restored(x).numpy(), expected)


def test_an_old_config_giving_both_names_with_different_values_is_refused():
    legacy = old_style(new_layers()["chnode"])
    with pytest.raises(ValueError, match="dissipation_units=4 and its old name L_units=3 differ"):
        CHNODE.from_config({**legacy, "dissipation_units": 4})


def test_every_zoo_model_loads_with_the_logits_recorded_before_the_new_constructors():
    """scripts/zoo_reference_logits.py wrote the reference with the old constructors."""
    reference = np.load(REFERENCE)
    paths = zoo_paths()
    assert sorted(entry_name(p) for p in paths) == sorted(reference.files)
    for path in paths:
        np.testing.assert_array_equal(zoo_logits(path), reference[entry_name(path)],
                                      err_msg=entry_name(path))


# -- the zoo on every backend ---------------------------------------------
#: One entry per architecture of the zoo but the certified CNNs (whose first
#: eager call costs JAX ~30 s of compilation): the fast, backends-marked check.
#: Every entry: the slow-marked test below, run under each backend with
#:   KERAS_BACKEND=jax CONTRACTIVE_KERAS_NO_TENSORFLOW=1 python -m pytest -m slow \
#:       tests/layers/test_legacy_configs.py      (and torch, and tensorflow).
ZOO_FAST = ("chnode_mnist_n4", "hdnn_mnist_n4", "resnet_mnist_n4", "stable_node_mnist")
ZOO_ALL = tuple(entry_name(p) for p in zoo_paths())


def zoo_tolerance():
    """atol as a fraction of the entry's largest |logit|, per backend.

    The reference was recorded under TensorFlow; there the logits must be
    equal bit for bit.  Elsewhere the same float32 network runs with other
    kernels (another summation order in every product and convolution): the
    logits differ by float32 rounding amplified by the network, measured
    <= 1.3e-5 of the largest |logit| under PyTorch (the chnode_mnist_n*
    entries expand their inputs to logits of 1e4-7e4); 1e-4 allows 8x that.
    On JAX without x64 the guarantees computed inside the forward pass
    (CH-NODE's gamma and cap factor, OrthonormalConv2D's circulant norm)
    run in float32 rounded outwards by bounds' documented float32 margins
    (up to ~1e-4 relative), so the weights used differ from TensorFlow's by
    that much: measured <= 2.7e-4 of the largest |logit| (chnode_mnist_n12),
    hence 1e-3.
    """
    if backend.is_tensorflow():
        return 0.0
    return 1e-4 if backend.float64_in_graph() else 1e-3


def check_zoo_entry(name):
    saving.register_custom_objects()
    path = os.path.join(ROOT, "zoo", name, "model.keras")
    model = keras.saving.load_model(path, compile=False, safe_mode=True)
    x = fixed_inputs(model.input_shape)
    logits = keras.ops.convert_to_numpy(model(x, training=False))
    expected = np.load(REFERENCE)[name]
    atol = zoo_tolerance() * float(np.max(np.abs(expected)))
    np.testing.assert_allclose(logits, expected, rtol=0.0, atol=atol, err_msg=name)
    top2 = np.sort(expected, axis=-1)[:, -2:]
    clear = top2[:, 1] - top2[:, 0] > 2 * atol       # the classes are the same where
    np.testing.assert_array_equal(np.argmax(logits, -1)[clear],   # rounding cannot swap them
                                  np.argmax(expected, -1)[clear])


@pytest.mark.backends
@pytest.mark.parametrize("name", ZOO_FAST)
def test_zoo_entries_load_and_give_the_recorded_logits_on_this_backend(name):
    check_zoo_entry(name)


@pytest.mark.slow
@pytest.mark.backends
@pytest.mark.parametrize("name", ZOO_ALL)
def test_every_zoo_entry_loads_and_gives_the_recorded_logits_on_this_backend(name):
    check_zoo_entry(name)


def test_delta_bar_projection_configs_saved_with_alpha_load_as_min_slope():
    from contractive_keras.constraints import DeltaBarProjection

    constraint = DeltaBarProjection(min_slope=0.3, delta_bar=-0.1, step_size=0.25)
    config = constraint.get_config()
    legacy = {("alpha" if k == "min_slope" else k): v for k, v in config.items()}
    assert DeltaBarProjection.from_config(legacy).get_config() == config
    with pytest.raises(ValueError, match="differ"):
        DeltaBarProjection.from_config({**legacy, "min_slope": 0.5})
    with pytest.raises(TypeError, match="alpha"):
        DeltaBarProjection(alpha=0.3, delta_bar=0.0)


def test_kernel_and_bias_constraints_act_after_every_optimizer_step():
    layer = ResNetODE(SolverSpec("euler", steps=2, step_size=0.5),
                      kernel_constraint=keras.constraints.NonNeg(),
                      bias_constraint=keras.constraints.MaxNorm(0.1, axis=-1))
    model = keras.Sequential([keras.Input((4,)), layer, keras.layers.Dense(1)])
    model.compile(keras.optimizers.SGD(10.0), "mse")
    rng = np.random.default_rng(0)
    model.fit(rng.normal(size=(16, 4)), 100 * rng.normal(size=(16, 1)), epochs=2, verbose=0)
    assert np.min(layer.K.numpy()) >= 0.0 and np.any(layer.K.numpy() > 0.0)
    assert np.max(np.linalg.norm(layer.b.numpy(), axis=-1)) <= 0.1 + 1e-6
    with pytest.raises(ValueError, match="kernel_constraint=.*dissipation_trainable=True"):
        CHNODE(kernel_constraint=keras.constraints.NonNeg())
    free_L = CHNODE(SolverSpec("euler", steps=2, step_size=0.01), dissipation_trainable=True,
                    kernel_constraint=keras.constraints.NonNeg(), discrete_check="ignore")
    free_L.build((None, 4))
    assert isinstance(free_L.K.constraint, keras.constraints.NonNeg)
