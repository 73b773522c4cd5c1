"""The reference recipes: they are the documented ones, and they are what
``training.make_config`` (train.py), the optimizer and the built models use."""

import os
import re
import warnings

import numpy as np
import pytest

from contractive_keras import models
from contractive_keras.training import TrainConfig, make_config
from contractive_keras.training.builders import build_model, build_optimizer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_the_hamiltonian_recipes_are_the_recipe_docs_reproduction_states():
    """docs/reproduction.md section 1 states the reference recipe the zoo was
    trained with; the registry must not drift from it."""
    with open(os.path.join(ROOT, "docs", "reproduction.md")) as f:
        text = " ".join(f.read().split("## 2.")[0].split())
    found = re.search(
        r"forward Euler with h = (?P<h>[\d.]+) .*?dense (?P<classes>\d+); Adam lr (?P<lr>[\d.]+) "
        r"decayed x(?P<decay>[\d.]+) per epoch, batch (?P<batch>\d+), (?P<epochs>\d+) epochs, "
        r"weight decay (?P<wd>[\d.e-]+) \((?P<wd_hdnn>[\d.e-]+) for H-DNN\), smoothness penalty "
        r"(?P<smooth>[\d.e-]+) \((?P<smooth_hdnn>[\d.e-]+) for H-DNN\)", text)
    assert found, "docs/reproduction.md no longer states the recipe in the expected words"
    lift = re.search(r"3x3 conv lift 1 -> (\d+) channels", text)
    for name in models.HAMILTONIAN:
        recipe = models.REFERENCE_HPARAMS[name]
        hdnn = name == "hdnn"
        assert recipe["step_size"] == float(found["h"])
        assert recipe["learning_rate"] == float(found["lr"])
        assert recipe["lr_decay"] == float(found["decay"])
        assert recipe["batch_size"] == int(found["batch"])
        assert recipe["epochs"] == int(found["epochs"])
        assert recipe["weight_decay"] == float(found["wd_hdnn" if hdnn else "wd"])
        assert recipe["smoothness"] == float(found["smooth_hdnn" if hdnn else "smooth"])
        assert recipe["channels"] == int(lift.group(1))


@pytest.mark.parametrize("name", models.NAMES)
def test_make_config_takes_every_training_value_and_option_from_the_recipe(name):
    """train.py builds its config with make_config: every recipe entry that is a
    TrainConfig field arrives unchanged, and the optimizer starts at the
    recipe's learning rate and decays by its lr_decay per epoch."""
    recipe = models.REFERENCE_HPARAMS[name]
    config = make_config(name)
    fields = set(TrainConfig.__dataclass_fields__)
    shared = sorted(set(recipe) & fields)
    assert {"learning_rate", "lr_decay", "batch_size", "epochs"} <= set(shared)
    for key in shared:
        assert getattr(config, key) == recipe[key], key
    optimizer = build_optimizer(config, steps_per_epoch=5)
    rates = {}
    for step in (0, 5):
        optimizer.iterations.assign(step)
        rates[step] = float(optimizer.learning_rate)
    assert rates[0] == pytest.approx(recipe["learning_rate"], rel=1e-6)
    if recipe.get("final_learning_rate") is None:
        assert rates[5] == pytest.approx(recipe["learning_rate"] * recipe["lr_decay"], rel=1e-6)
    else:   # linear per step to the final rate over the whole run
        end = 5 * recipe["epochs"]
        optimizer.iterations.assign(end)
        assert float(optimizer.learning_rate) == pytest.approx(recipe["final_learning_rate"],
                                                               rel=1e-6)


@pytest.mark.parametrize("name", models.HAMILTONIAN)
def test_the_hamiltonian_preset_is_built_with_its_recipe(name):
    recipe = models.REFERENCE_HPARAMS[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)     # h = 0.5 is not certified
        model = build_model(make_config(name))
    ode = model.get_layer({"resnet": "resnet_ode"}.get(name, name))
    assert ode.steps == recipe["depth"] and ode.step_size == recipe["step_size"]
    assert ode.solver == "euler"
    lift, logits = model.get_layer("lift"), model.get_layer("logits")
    assert lift.filters == recipe["channels"] and ode.K.shape[-1] == recipe["channels"]
    for layer in (lift, logits):
        assert layer.kernel_regularizer.l2 == pytest.approx(recipe["weight_decay"] / 2)
    regularizer = ode.K.regularizer
    assert regularizer.l2 == pytest.approx(recipe["weight_decay"] / 2)
    assert regularizer.smoothness == pytest.approx(recipe["smoothness"] * recipe["step_size"])


@pytest.mark.parametrize("name", models.STABILIZED)
def test_the_stabilized_preset_is_built_with_its_recipe(name):
    recipe = models.REFERENCE_HPARAMS[name]
    model = build_model(make_config(name))
    layer = model.get_layer("stabilized_node")
    assert model.get_layer("lift").units == recipe["width"]
    assert layer.min_slope == recipe["min_slope"] and layer.t1 == recipe["t1"]
    assert layer.steps == recipe["steps"] and layer.solver == recipe["solver"]
    assert layer.delta_bar == recipe.get("delta_bar")
    assert (layer.kernel_constraint is None) == (recipe.get("delta_bar") is None)
    if recipe["weight_decay"] == 0:
        assert not model.losses         # no weight decay: no regularization loss at all


def test_the_recipes_of_a_family_agree_except_where_the_models_differ():
    """chnode and resnet share one recipe; H-DNN differs from it in its
    regularization only; stable_node is node plus its delta_bar; the three
    certified presets train alike."""
    hp = models.REFERENCE_HPARAMS
    assert hp["chnode"] == hp["resnet"]
    assert {k for k in hp["chnode"] if hp["chnode"][k] != hp["hdnn"].get(k)} == {
        "weight_decay", "smoothness"}
    assert set(hp["hdnn"]) == set(hp["chnode"])
    assert {k: v for k, v in hp["stable_node"].items() if k != "delta_bar"} == hp["node"]
    assert "delta_bar" not in hp["node"] and hp["stable_node"]["delta_bar"] is not None
    assert hp["lipschitz_cnn"] == hp["chnode_certified"] == hp["stable_node_certified"]
