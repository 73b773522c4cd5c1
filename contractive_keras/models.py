"""The registry of model builders: names, reference recipes and options.

``MODELS`` holds, once, every model this package builds by name: its builder,
its family, its reference recipe (``REFERENCE_HPARAMS``) and the
model-specific options it accepts. ``train.py`` takes its ``--model`` values
and the rule of which flag applies to which model from here; an option has
the same name as the train.py flag that sets it.

Hamiltonian family (``chnode``, ``hdnn``, ``resnet``; shared/DESIGN.md,
"CH-NODE", reference MNIST experiment):

    images in [0, 1] (N, 28, 28, 1)
      -> Rescaling: (x - mean) / std, data.NORMALIZATION["mnist"]
      -> Conv2D 3x3, 1 -> 8 channels, no activation (lifts each pixel to R^8)
      -> per-pixel ODE block (weights shared over the 28 x 28 grid, N steps)
      -> Flatten -> Dense 10 (logits)

with the reference regularization as Keras regularizers (so it is in
``model.losses``): PyTorch-Adam weight decay wd as an L2 penalty
(wd / 2) ||w||^2 on every trainable weight, and the smoothness penalty
smoothness * h * sum_j 0.5 (||K_{j+1} - K_j||^2 + ||b_{j+1} - b_j||^2) on the
ODE weights. The smoothness coefficient is the stated 1e-3 * h; pass
``smoothness=1e-3 * (depth - 1)`` for the coefficient the reference code's
loop applies.

Stabilized family (``node``, ``stable_node``; DESIGN, "Stabilized NODE"):
flatten -> dense lift to width d = 64 -> u' = sigma(A u + b) on [0, t1 = 1],
explicit Euler with 10 steps -> dense 10; leaky-ReLU slope (the lower
slope bound, option ``alpha``, the layer's ``min_slope``) 0.1; ``stable_node`` keeps max_D mu_2(D A) <= delta_bar
= 0 after every step, so the ODE block's certified Lipschitz bound is
exp(delta_bar * t1) = 1 for the flow and (1 + h * delta_bar)^N = 1 for the
Euler map. A ``node`` model and a ``stable_node`` model have the same weight
list, so one fine-tunes the other (train.py ``--init_from``).

Certified family (``lipschitz_cnn``, ``chnode_certified``,
``stable_node_certified``; DESIGN, "Certified robustness"): the skeleton of
``lipschitz_cnn.lipschitz_cnn`` on [0, 1] pixels (norm-bounded convolutions,
GroupSort, L2-norm pooling, a free dense read-out) with no ODE block, a
per-pixel fixed-gamma CH-NODE or a per-pixel stabilized NODE after the
first pooling; their recipes train against the certificate
(``loss="lipschitz_margin"`` at ``train_eps`` = 1.58, train.py's
``--loss`` / ``--train_eps``).

Example:

>>> from contractive_keras import models
>>> models.NAMES
('chnode', 'hdnn', 'resnet', 'node', 'stable_node', 'lipschitz_cnn', 'chnode_certified', \
'stable_node_certified')
>>> model = models.build("chnode", depth=4)   # doctest: +SKIP
>>> model.output_shape                        # doctest: +SKIP
(None, 10)
"""

import dataclasses
import math
from typing import Any, Callable, Mapping

import keras

from contractive_keras import data
from contractive_keras.constraints import ConvNormClip
from contractive_keras.constraints import SpectralNormClip
from contractive_keras.layers import CHNODE
from contractive_keras.layers import HDNN
from contractive_keras.layers import ResNetODE
from contractive_keras.layers import StabilizedNODE
from contractive_keras.layers import StepwiseIdentity
from contractive_keras.lipschitz_cnn import lipschitz_cnn
from contractive_keras.regularizers import PiecewiseSmoothness

#: Families of models: the reference conv skeleton around a per-pixel
#: Hamiltonian-type ODE, and the dense skeleton around a stabilized NODE.
HAMILTONIAN_FAMILY = "hamiltonian"
STABILIZED_FAMILY = "stabilized"

CERTIFIED_FAMILY = "certified"

#: Options every model accepts (beyond its family's recipe keys).
COMMON_OPTIONS = ("weight_decay", "solver", "step_size", "lift_max_norm", "readout_max_norm",
                  "normalize_inputs")

#: Training settings of a recipe: ``build`` accepts and ignores them, so a
#: whole ``REFERENCE_HPARAMS`` entry can be passed as overrides.
TRAINING_KEYS = ("learning_rate", "lr_decay", "final_learning_rate", "batch_size", "epochs", "loss", "train_eps",
                 "temperature")

_HAMILTONIAN_RECIPE = {
    "learning_rate": 0.04,  # Adam
    "lr_decay": 0.8,        # multiplied in after every epoch
    "batch_size": 100,
    "epochs": 10,
    "step_size": 0.5,       # h of forward Euler
    "depth": 8,             # N, the reference script's default (table: 4, 8, 12)
    "channels": 8,
}

# The published stabilized-NODE setup is not available: these are the
# documented defaults (DESIGN, "Stabilized NODE"): Adam 1e-3, batch 128,
# 5 epochs, no decay, no weight decay.
_STABILIZED_RECIPE = {
    "learning_rate": 1e-3, "lr_decay": 1.0, "batch_size": 128, "epochs": 5,
    "width": 64, "alpha": 0.1, "t1": 1.0, "steps": 10, "solver": "euler",
    "weight_decay": 0.0,
}


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """One buildable model.

    Attributes:
        name: the name ``build`` and train.py's ``--model`` take.
        family: ``HAMILTONIAN_FAMILY`` or ``STABILIZED_FAMILY``.
        recipe: the reference hyperparameters (training settings included).
        options: the model-specific options it accepts, beyond
            ``COMMON_OPTIONS``; each is also a train.py flag.
        builder: ``builder(depth=None, **overrides) -> keras.Model``.
    """

    name: str
    family: str
    recipe: Mapping[str, Any]
    options: tuple
    builder: Callable[..., keras.Model]


def _torch_uniform(fan_in):
    """PyTorch's default Linear / Conv2d initialization: U(+-1/sqrt(fan_in))."""
    return keras.initializers.RandomUniform(-1.0 / math.sqrt(fan_in), 1.0 / math.sqrt(fan_in))


def _torch_kernel():
    # kaiming_uniform(a=sqrt(5)): U(+-sqrt(3 * (1/3) / fan_in)) = U(+-1/sqrt(fan_in)).
    return keras.initializers.VarianceScaling(1.0 / 3.0, "fan_in", "uniform")


def _l2(weight_decay):
    return keras.regularizers.L2(weight_decay / 2.0) if weight_decay else None


def _normalize_layer():
    """(x - mean) / std with the reference MNIST statistics (``normalize_inputs``)."""
    mean, std = data.NORMALIZATION["mnist"]
    return keras.layers.Rescaling(1.0 / std, offset=-mean / std, name="normalize")


def reference_classifier(ode_layer, weight_decay, channels=8, num_classes=data.NUM_CLASSES,
                         input_shape=data.INPUT_SHAPE, name=None, lift_max_norm=None,
                         readout_max_norm=None, normalize_inputs=True):
    """The reference skeleton around a per-pixel ODE layer (see module doc).

    ``lift_max_norm`` / ``readout_max_norm`` (default None: free, as in the
    reference) bound the l2 operator norms of the conv lift
    (``constraints.ConvNormClip``) and of the dense read-out
    (``constraints.SpectralNormClip``) after every optimizer step; with a
    non-expansive ODE block the logits are then certified
    (1 / std) * lift_max_norm * readout_max_norm-Lipschitz.
    """

    inputs = keras.Input(shape=input_shape, name="images")
    x = _normalize_layer()(inputs) if normalize_inputs else inputs
    fan_in = 9 * input_shape[-1]
    x = keras.layers.Conv2D(
        channels, 3, padding="same", kernel_initializer=_torch_kernel(),
        bias_initializer=_torch_uniform(fan_in), kernel_regularizer=_l2(weight_decay),
        bias_regularizer=_l2(weight_decay),
        kernel_constraint=_norm_bound(ConvNormClip, lift_max_norm),
        name="lift")(x)
    x = ode_layer(x)
    x = keras.layers.Flatten(name="flatten")(x)
    fan_in = channels * input_shape[0] * input_shape[1]
    outputs = keras.layers.Dense(
        num_classes, kernel_initializer=_torch_kernel(),
        bias_initializer=_torch_uniform(fan_in), kernel_regularizer=_l2(weight_decay),
        bias_regularizer=_l2(weight_decay),
        kernel_constraint=_norm_bound(SpectralNormClip, readout_max_norm),
        name="logits")(x)
    model = keras.Model(inputs, outputs, name=name)
    _start_inside_constraints(model)
    return model


def _start_inside_constraints(model):
    """Applies the lift / read-out norm bounds to the initial kernels."""
    for layer in (model.get_layer("lift"), model.get_layer("logits")):
        if layer.kernel.constraint is not None:
            layer.kernel.assign(layer.kernel.constraint(layer.kernel))


def _norm_bound(constraint_cls, max_norm):
    """``constraint_cls(max_norm)``, or None (no bound) for a None max_norm."""
    return None if max_norm is None else constraint_cls(max_norm)


def _classifier_norms(overrides):
    """Pops the skeleton's options: lift / read-out norm bounds, input normalisation."""
    norms = {key: overrides.pop(key, None) for key in ("lift_max_norm", "readout_max_norm")}
    norms["normalize_inputs"] = bool(overrides.pop("normalize_inputs", None) is not False)
    return norms


def _recipe_with(name, overrides):
    """The recipe of ``name`` updated by (and popped from) ``overrides``,
    without its training settings."""
    hp = dict(REFERENCE_HPARAMS[name])
    hp.update({k: overrides.pop(k) for k in list(overrides) if k in hp})
    for key in TRAINING_KEYS:
        hp.pop(key, None)
    return hp


def _split(name, depth, overrides):
    """(hyperparameters, depth, ODE-layer kwargs, lift / read-out norm bounds)."""
    norms = _classifier_norms(overrides)
    hp = _recipe_with(name, overrides)
    depth = int(depth if depth is not None else hp.pop("depth"))
    hp.pop("depth", None)
    return hp, depth, overrides, norms


def _ode_regularizer(hp):
    if not (hp["smoothness"] or hp["weight_decay"]):
        return None
    return PiecewiseSmoothness(smoothness=hp["smoothness"] * hp["step_size"],
                               l2=hp["weight_decay"] / 2.0)


def _hamiltonian_kwargs(hp, depth, name):
    """ODE-layer arguments shared by the three Hamiltonian-family builders."""
    reg = _ode_regularizer(hp)
    return dict(
        steps=depth, step_size=hp["step_size"], solver="euler", activation="tanh",
        K_initializer=keras.initializers.RandomNormal(stddev=1.0),
        b_initializer=keras.initializers.RandomNormal(stddev=1.0),
        K_regularizer=reg, b_regularizer=reg, name=name)


def _build_chnode(depth=None, **overrides):
    """CH-NODE; ``L_scale`` sets the fixed dissipation L = L_scale * I
    (default 0.02, the reference), i.e. c1 = L_scale^2 + kappa of Theorem 1."""

    hp, depth, layer_kwargs, norms = _split("chnode", depth, overrides)
    L_scale = layer_kwargs.pop("L_scale", None)
    kwargs = _hamiltonian_kwargs(hp, depth, "chnode")
    kwargs.update(kappa=1e-6, eps=1e-6, gamma="auto",
                  L_initializer=StepwiseIdentity(0.02 if L_scale is None else L_scale),
                  L_trainable=False)
    kwargs.update(layer_kwargs)
    return reference_classifier(CHNODE(**kwargs), hp["weight_decay"], hp["channels"],
                                name=f"chnode_{depth}", **norms)


def _build_hdnn(depth=None, **overrides):

    hp, depth, layer_kwargs, norms = _split("hdnn", depth, overrides)
    kwargs = _hamiltonian_kwargs(hp, depth, "hdnn")
    kwargs.update(layer_kwargs)
    return reference_classifier(HDNN(**kwargs), hp["weight_decay"], hp["channels"],
                                name=f"hdnn_{depth}", **norms)


def _build_resnet(depth=None, **overrides):

    hp, depth, layer_kwargs, norms = _split("resnet", depth, overrides)
    kwargs = _hamiltonian_kwargs(hp, depth, "resnet_ode")
    kwargs.update(layer_kwargs)
    return reference_classifier(ResNetODE(**kwargs), hp["weight_decay"], hp["channels"],
                                name=f"resnet_{depth}", **norms)


def _build_stabilized(name, depth=None, **overrides):
    """flatten -> dense lift to width d -> StabilizedNODE -> dense logits.

    ``depth`` (or ``steps``) is the number of ODE steps; ``step_size`` sets
    steps = ceil(t1 / step_size); other overrides go to ``StabilizedNODE``.
    """

    norms = _classifier_norms(overrides)
    hp = _recipe_with(name, overrides)
    step_size = overrides.pop("step_size", None)
    if depth is not None:
        hp["steps"] = int(depth)
    if step_size is not None:
        hp["steps"] = max(1, math.ceil(hp["t1"] / float(step_size) - 1e-9))
    width, weight_decay = hp.pop("width"), hp.pop("weight_decay")
    inputs = keras.Input(shape=data.INPUT_SHAPE, name="images")
    x = _normalize_layer()(inputs) if norms["normalize_inputs"] else inputs
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(width, kernel_regularizer=_l2(weight_decay),
                           kernel_constraint=_norm_bound(SpectralNormClip, norms["lift_max_norm"]),
                           name="lift")(x)
    # The recipe's (and train.py's) "alpha" is the layer's min_slope.
    hp["min_slope"] = hp.pop("alpha")
    layer_kwargs = dict(hp, name="stabilized_node")
    layer_kwargs.update(overrides)
    x = StabilizedNODE(**layer_kwargs)(x)
    outputs = keras.layers.Dense(data.NUM_CLASSES, kernel_regularizer=_l2(weight_decay),
                                 kernel_constraint=_norm_bound(SpectralNormClip,
                                                               norms["readout_max_norm"]),
                                 name="logits")(x)
    model = keras.Model(inputs, outputs, name=name)
    _start_inside_constraints(model)
    return model


def _build_node(depth=None, **overrides):
    if overrides.get("delta_bar") is not None:
        raise ValueError("'node' is the unconstrained NODE; use 'stable_node' for delta_bar.")
    overrides.pop("delta_bar", None)
    return _build_stabilized("node", depth, **overrides)


def _build_stable_node(depth=None, **overrides):
    return _build_stabilized("stable_node", depth, **overrides)


# Certified presets (docs/certified.md): Adam 1e-3 decayed linearly per step
# to 1e-4 over the run, batch 128, the Lipschitz-margin loss at MNIST's L2 1.58.
_CERTIFIED_RECIPE = {
    "learning_rate": 1e-3, "lr_decay": 1.0, "final_learning_rate": 1e-4, "batch_size": 128,
    "epochs": 10,
    "loss": "lipschitz_margin", "train_eps": 1.58, "temperature": 1.0,
    "channels": (16, 32), "dense": 128, "kernels": "orthonormal", "weight_decay": 0.0,
}


def _certified_skeleton(name, ode_layer, overrides):
    normalize = overrides.pop("normalize_inputs", None)
    hp = _recipe_with(name, overrides)
    for key in ("lift_max_norm", "readout_max_norm", "solver"):
        if overrides.pop(key, None) is not None:
            raise ValueError(f"{name}: {key} is fixed by the certified skeleton "
                             "(every kernel is norm-bounded by 1; Euler steps).")
    if overrides:
        raise ValueError(f"{name}: unknown options {sorted(overrides)}.")
    return lipschitz_cnn(ode_layer, channels=hp["channels"], dense=hp["dense"],
                         normalize_inputs=bool(normalize), kernels=hp["kernels"], name=name)


def _build_lipschitz_cnn(depth=None, **overrides):
    """The 1-Lipschitz CNN baseline (``lipschitz_cnn.lipschitz_cnn``, no ODE block)."""
    return _certified_skeleton("lipschitz_cnn", None, overrides)


def _build_chnode_certified(depth=None, **overrides):
    """Per-pixel CH-NODE (gamma fixed, L = L_scale I, Euler) in the certified skeleton.

    The defaults (gamma 2, eps 0.3, L = 0.3 I, 4 steps of h = 0.25) keep every
    Euler step non-expansive for every K the layer allows
    (``certify.ode_guarantee``), so the block's certified factor is 1.
    ``kernel_size=3`` makes K(t) a convolution (spatial mixing in the block).
    """
    steps = int(depth if depth is not None else 4)
    step_size = float(overrides.pop("step_size", None) or 1.0 / steps)
    block = CHNODE(steps=steps, step_size=step_size, solver="euler", activation="tanh",
                   gamma=float(overrides.pop("gamma", None) or 2.0),
                   eps=float(overrides.pop("eps", None) or 0.3), kappa=1e-6,
                   L_initializer=StepwiseIdentity(float(overrides.pop("L_scale", None) or 0.3)),
                   L_trainable=False, kernel_size=overrides.pop("kernel_size", None), name="ode")
    return _certified_skeleton("chnode_certified", block, overrides)


def _build_stable_node_certified(depth=None, **overrides):
    """Per-pixel stabilized NODE (delta_bar projection covering Euler) in the certified skeleton."""
    steps = int(depth if depth is not None else 4)
    step_size = overrides.pop("step_size", None)
    t1 = 1.0 if step_size is None else float(step_size) * steps
    block = StabilizedNODE(min_slope=float(overrides.pop("alpha", None) or 0.5),
                           delta_bar=float(overrides.pop("delta_bar", None) or 0.0),
                           steps=steps, t1=t1, solver="euler", kernel_initializer="zeros",
                           name="ode")
    return _certified_skeleton("stable_node_certified", block, overrides)


_HAMILTONIAN_OPTIONS = ("depth", "smoothness")
#: Options of the certified skeleton (``lipschitz_cnn``): kernel kind, dense width.
_CERTIFIED_OPTIONS = ("kernels", "dense")

#: name -> ModelSpec, in the order train.py lists them.
MODELS = {spec.name: spec for spec in (
    ModelSpec("chnode", HAMILTONIAN_FAMILY, dict(_HAMILTONIAN_RECIPE, weight_decay=2e-4, smoothness=1e-3),
              _HAMILTONIAN_OPTIONS + ("gamma", "eps", "L_scale"), _build_chnode),
    ModelSpec("hdnn", HAMILTONIAN_FAMILY, dict(_HAMILTONIAN_RECIPE, weight_decay=4e-3, smoothness=8e-3),
              _HAMILTONIAN_OPTIONS, _build_hdnn),
    ModelSpec("resnet", HAMILTONIAN_FAMILY, dict(_HAMILTONIAN_RECIPE, weight_decay=2e-4, smoothness=1e-3),
              _HAMILTONIAN_OPTIONS, _build_resnet),
    ModelSpec("node", STABILIZED_FAMILY, dict(_STABILIZED_RECIPE), ("alpha",), _build_node),
    ModelSpec("stable_node", STABILIZED_FAMILY, dict(_STABILIZED_RECIPE, delta_bar=0.0),
              ("alpha", "delta_bar"), _build_stable_node),
    ModelSpec("lipschitz_cnn", CERTIFIED_FAMILY, dict(_CERTIFIED_RECIPE), _CERTIFIED_OPTIONS,
              _build_lipschitz_cnn),
    ModelSpec("chnode_certified", CERTIFIED_FAMILY, dict(_CERTIFIED_RECIPE),
              ("depth", "gamma", "eps", "L_scale", "kernel_size") + _CERTIFIED_OPTIONS,
              _build_chnode_certified),
    ModelSpec("stable_node_certified", CERTIFIED_FAMILY, dict(_CERTIFIED_RECIPE),
              ("depth", "alpha", "delta_bar") + _CERTIFIED_OPTIONS, _build_stable_node_certified),
)}

#: The model names, in registry order.
NAMES = tuple(MODELS)
#: name -> reference hyperparameters (training settings included).
REFERENCE_HPARAMS = {name: dict(spec.recipe) for name, spec in MODELS.items()}
#: name -> builder function.
BUILDERS = {name: spec.builder for name, spec in MODELS.items()}
HAMILTONIAN = tuple(n for n, s in MODELS.items() if s.family == HAMILTONIAN_FAMILY)
STABILIZED = tuple(n for n, s in MODELS.items() if s.family == STABILIZED_FAMILY)
CERTIFIED = tuple(n for n, s in MODELS.items() if s.family == CERTIFIED_FAMILY)
#: Every model-specific option of any model, in registry order.
MODEL_OPTIONS = tuple(dict.fromkeys(o for spec in MODELS.values() for o in spec.options))


def _spec(name):
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known: {sorted(MODELS)}.")
    return MODELS[name]


def options(name):
    """Every option model ``name`` accepts: ``COMMON_OPTIONS`` and its own."""
    return COMMON_OPTIONS + _spec(name).options


def models_accepting(option):
    """The names of the models that accept ``option``, in registry order."""
    return tuple(name for name in NAMES if option in options(name))


def build(name, depth=None, **overrides):
    """Builds a registered model, uncompiled.

    Args:
        name: one of ``NAMES``.
        depth: number of ODE steps N (default: the recipe's).
        **overrides: recipe entries (``step_size``, ``weight_decay``,
            ``smoothness``, ``channels``, ...; the training settings
            ``TRAINING_KEYS`` are accepted and ignored), the model's options
            (``options(name)``, e.g. ``gamma=5.0``, ``L_scale=0.3``,
            ``lift_max_norm`` / ``readout_max_norm``: norm bounds of the lift
            and of the dense read-out, see ``reference_classifier``) or
            keyword arguments of the ODE layer (e.g. ``solver="rk4"``,
            ``discrete_check="ignore"``).

    Returns:
        ``keras.Model`` from float32 images in [0, 1] of shape
        ``(N, *data.INPUT_SHAPE)`` to logits ``(N, data.NUM_CLASSES)``.

    Raises:
        ValueError: unknown name.
    """
    return _spec(name).builder(depth=depth, **overrides)
