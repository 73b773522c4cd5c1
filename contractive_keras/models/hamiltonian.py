"""The Hamiltonian family (``chnode``, ``hdnn``, ``resnet``): the reference conv
skeleton around a per-pixel Hamiltonian-type ODE block (shared/DESIGN.md,
"CH-NODE"; the layout is in ``contractive_keras.models``' docstring)."""

import keras

from contractive_keras import datasets
from contractive_keras.constraints import ConvNormClip
from contractive_keras.constraints import SpectralNormClip
from contractive_keras.layers import CHNODE
from contractive_keras.layers import HDNN
from contractive_keras.layers import ResNetODE
from contractive_keras.layers import StepwiseIdentity
from contractive_keras.models import parts
from contractive_keras.regularizers import PiecewiseSmoothness

_RECIPE = {
    "learning_rate": 0.04,  # Adam
    "lr_decay": 0.8,        # multiplied in after every epoch
    "batch_size": 100,
    "epochs": 10,
    "step_size": 0.5,       # h of forward Euler
    "depth": 8,             # N, the reference script's default (table: 4, 8, 12)
    "channels": 8,
}

#: name -> reference recipe (training settings included).
RECIPES = {
    "chnode": dict(_RECIPE, weight_decay=2e-4, smoothness=1e-3),
    "hdnn": dict(_RECIPE, weight_decay=4e-3, smoothness=8e-3),
    "resnet": dict(_RECIPE, weight_decay=2e-4, smoothness=1e-3),
}

#: Options of every model of the family (beyond ``parts.COMMON_OPTIONS``).
OPTIONS = ("depth", "smoothness")


def reference_classifier(ode_layer, weight_decay, channels=8, num_classes=datasets.NUM_CLASSES,
                         input_shape=datasets.INPUT_SHAPE, name=None, lift_max_norm=None,
                         readout_max_norm=None, normalize_inputs=True):
    """The reference skeleton around a per-pixel ODE layer (``models``' docstring).

    ``lift_max_norm`` / ``readout_max_norm`` (default None: free, as in the
    reference) bound the l2 operator norms of the conv lift
    (``constraints.ConvNormClip``) and of the dense read-out
    (``constraints.SpectralNormClip``) after every optimizer step; with a
    non-expansive ODE block the logits are then certified
    (1 / std) * lift_max_norm * readout_max_norm-Lipschitz.
    """

    inputs = keras.Input(shape=input_shape, name="images")
    x = parts.normalize_layer()(inputs) if normalize_inputs else inputs
    fan_in = 9 * input_shape[-1]
    x = keras.layers.Conv2D(
        channels, 3, padding="same", kernel_initializer=parts.torch_kernel(),
        bias_initializer=parts.torch_uniform(fan_in), kernel_regularizer=parts.l2(weight_decay),
        bias_regularizer=parts.l2(weight_decay),
        kernel_constraint=parts.norm_bound(ConvNormClip, lift_max_norm),
        name="lift")(x)
    x = ode_layer(x)
    x = keras.layers.Flatten(name="flatten")(x)
    fan_in = channels * input_shape[0] * input_shape[1]
    outputs = keras.layers.Dense(
        num_classes, kernel_initializer=parts.torch_kernel(),
        bias_initializer=parts.torch_uniform(fan_in), kernel_regularizer=parts.l2(weight_decay),
        bias_regularizer=parts.l2(weight_decay),
        kernel_constraint=parts.norm_bound(SpectralNormClip, readout_max_norm),
        name="logits")(x)
    model = keras.Model(inputs, outputs, name=name)
    parts.start_inside_constraints(model)
    return model


def _split(name, depth, overrides):
    """(hyperparameters, depth, ODE-layer kwargs, lift / read-out norm bounds)."""
    norms = parts.classifier_norms(overrides)
    hp = parts.recipe_with(RECIPES[name], overrides)
    depth = int(depth if depth is not None else hp.pop("depth"))
    hp.pop("depth", None)
    return hp, depth, overrides, norms


def _ode_regularizer(hp):
    if not (hp["smoothness"] or hp["weight_decay"]):
        return None
    return PiecewiseSmoothness(smoothness=hp["smoothness"] * hp["step_size"],
                               l2=hp["weight_decay"] / 2.0)


def _hamiltonian_kwargs(hp, depth, name, overrides):
    """ODE-layer arguments shared by the three Hamiltonian-family builders
    (the solver, and its settings, popped from ``overrides``)."""
    reg = _ode_regularizer(hp)
    return dict(
        solver=parts.solver_spec("euler", overrides, steps=depth, step_size=hp["step_size"]),
        activation="tanh",
        kernel_initializer=keras.initializers.RandomNormal(stddev=1.0),
        bias_initializer=keras.initializers.RandomNormal(stddev=1.0),
        kernel_regularizer=reg, bias_regularizer=reg, name=name)


def _build(model, layer_class, layer_name, depth, overrides, **fixed):
    """``layer_class`` with the recipe's solver and initializers, ``fixed`` and the
    caller's options on top, in the reference skeleton."""
    hp, depth, layer_kwargs, norms = _split(model, depth, overrides)
    kwargs = _hamiltonian_kwargs(hp, depth, layer_name, layer_kwargs)
    kwargs.update(fixed)
    kwargs.update(layer_kwargs)
    return reference_classifier(layer_class(**kwargs), hp["weight_decay"], hp["channels"],
                                name=f"{model}_{depth}", **norms)


def build_chnode(depth=None, **overrides):
    """CH-NODE; ``L_scale`` sets the fixed dissipation L = L_scale * I
    (default 0.02, the reference), i.e. c1 = L_scale^2 + kappa of Theorem 1."""
    L_scale = overrides.pop("L_scale", None)
    return _build("chnode", CHNODE, "chnode", depth, overrides, kappa=1e-6, eps=1e-6, gamma="auto",
                  dissipation_initializer=StepwiseIdentity(0.02 if L_scale is None else L_scale),
                  dissipation_trainable=False)


def build_hdnn(depth=None, **overrides):
    """HDNN in the reference skeleton."""
    return _build("hdnn", HDNN, "hdnn", depth, overrides)


def build_resnet(depth=None, **overrides):
    """ResNetODE in the reference skeleton."""
    return _build("resnet", ResNetODE, "resnet_ode", depth, overrides)
