"""The stabilized family (``node``, ``stable_node``): flatten -> dense lift ->
``StabilizedNODE`` -> dense logits (shared/DESIGN.md, "Stabilized NODE"; the
layout is in ``contractive_keras.models``' docstring)."""

import math

import keras

from contractive_keras import datasets
from contractive_keras.constraints import SpectralNormClip
from contractive_keras.layers import StabilizedNODE
from contractive_keras.models import parts

# The published stabilized-NODE setup is not available: these are the
# documented defaults (DESIGN, "Stabilized NODE"): Adam 1e-3, batch 128,
# 5 epochs, no decay, no weight decay.
_RECIPE = {
    "learning_rate": 1e-3, "lr_decay": 1.0, "batch_size": 128, "epochs": 5,
    "width": 64, "min_slope": 0.1, "t1": 1.0, "steps": 10, "solver": "euler",
    "weight_decay": 0.0,
}

#: name -> reference recipe (training settings included).
RECIPES = {"node": dict(_RECIPE), "stable_node": dict(_RECIPE, delta_bar=0.0)}


def _build_stabilized(name, depth=None, **overrides):
    """flatten -> dense lift to width d -> StabilizedNODE -> dense logits.

    ``depth`` (or ``steps``) is the number of ODE steps; ``step_size`` sets
    steps = ceil(t1 / step_size); other overrides go to ``StabilizedNODE``.
    """

    norms = parts.classifier_norms(overrides)
    hp = parts.recipe_with(RECIPES[name], overrides)
    step_size = overrides.pop("step_size", None)
    if depth is not None:
        hp["steps"] = int(depth)
    if step_size is not None:
        hp["steps"] = max(1, math.ceil(hp["t1"] / float(step_size) - 1e-9))
    width, weight_decay = hp.pop("width"), hp.pop("weight_decay")
    inputs = keras.Input(shape=datasets.INPUT_SHAPE, name="images")
    x = parts.normalize_layer()(inputs) if norms["normalize_inputs"] else inputs
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(width, kernel_regularizer=parts.l2(weight_decay),
                           kernel_constraint=parts.norm_bound(SpectralNormClip, norms["lift_max_norm"]),
                           name="lift")(x)
    overrides.setdefault("solver", hp.pop("solver"))
    solver = parts.solver_spec(None, overrides, steps=hp.pop("steps"), t1=hp.pop("t1"))
    layer_kwargs = dict(hp, solver=solver, name="stabilized_node")
    layer_kwargs.update(overrides)
    x = StabilizedNODE(**layer_kwargs)(x)
    outputs = keras.layers.Dense(datasets.NUM_CLASSES, kernel_regularizer=parts.l2(weight_decay),
                                 kernel_constraint=parts.norm_bound(SpectralNormClip,
                                                                    norms["readout_max_norm"]),
                                 name="logits")(x)
    model = keras.Model(inputs, outputs, name=name)
    parts.start_inside_constraints(model)
    return model


def build_node(depth=None, **overrides):
    """The unconstrained NODE (no delta_bar projection)."""
    if overrides.get("delta_bar") is not None:
        raise ValueError("'node' is the unconstrained NODE; use 'stable_node' for delta_bar.")
    overrides.pop("delta_bar", None)
    return _build_stabilized("node", depth, **overrides)


def build_stable_node(depth=None, **overrides):
    """The stabilized NODE: max_D mu_2(D A) <= delta_bar after every step."""
    return _build_stabilized("stable_node", depth, **overrides)
