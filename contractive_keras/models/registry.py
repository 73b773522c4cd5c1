"""The registry: every model this package builds by name, once.

``MODELS`` maps a name to its ``ModelSpec``: builder, family, reference recipe
(``REFERENCE_HPARAMS``) and the model-specific options it accepts. ``train.py``
takes its ``--model`` values and the rule of which flag applies to which model
from here; an option has the same name as the train.py flag that sets it.
"""

import dataclasses
from typing import Any, Callable, Mapping

import keras

from contractive_keras.certify.layer import check_discretization
from contractive_keras.certify.report import ode_layers
from contractive_keras.models import certified
from contractive_keras.models import hamiltonian
from contractive_keras.models import stabilized
from contractive_keras.models.parts import COMMON_OPTIONS
from contractive_keras.models.parts import TRAINING_KEYS

__all__ = ["BUILDERS", "CERTIFIED", "CERTIFIED_FAMILY", "COMMON_OPTIONS", "HAMILTONIAN",
           "HAMILTONIAN_FAMILY", "MODELS", "MODEL_OPTIONS", "ModelSpec", "NAMES",
           "REFERENCE_HPARAMS", "STABILIZED", "STABILIZED_FAMILY", "TRAINING_KEYS", "build",
           "models_accepting", "options"]

#: Families of models: the reference conv skeleton around a per-pixel
#: Hamiltonian-type ODE, the dense skeleton around a stabilized NODE, and the
#: certified CNN skeleton.
HAMILTONIAN_FAMILY = "hamiltonian"
STABILIZED_FAMILY = "stabilized"
CERTIFIED_FAMILY = "certified"


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """One buildable model.

    Attributes:
        name: the name ``build`` and train.py's ``--model`` take.
        family: ``HAMILTONIAN_FAMILY``, ``STABILIZED_FAMILY`` or ``CERTIFIED_FAMILY``.
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


#: name -> ModelSpec, in the order train.py lists them.
MODELS = {spec.name: spec for spec in (
    ModelSpec("chnode", HAMILTONIAN_FAMILY, hamiltonian.RECIPES["chnode"],
              hamiltonian.OPTIONS + ("gamma", "eps", "L_scale"), hamiltonian.build_chnode),
    ModelSpec("hdnn", HAMILTONIAN_FAMILY, hamiltonian.RECIPES["hdnn"], hamiltonian.OPTIONS,
              hamiltonian.build_hdnn),
    ModelSpec("resnet", HAMILTONIAN_FAMILY, hamiltonian.RECIPES["resnet"], hamiltonian.OPTIONS,
              hamiltonian.build_resnet),
    ModelSpec("node", STABILIZED_FAMILY, stabilized.RECIPES["node"], ("min_slope",), stabilized.build_node),
    ModelSpec("stable_node", STABILIZED_FAMILY, stabilized.RECIPES["stable_node"],
              ("min_slope", "delta_bar"), stabilized.build_stable_node),
    ModelSpec("lipschitz_cnn", CERTIFIED_FAMILY, certified.RECIPES["lipschitz_cnn"], certified.OPTIONS,
              certified.build_lipschitz_cnn),
    ModelSpec("chnode_certified", CERTIFIED_FAMILY, certified.RECIPES["chnode_certified"],
              ("depth", "gamma", "eps", "L_scale", "kernel_size") + certified.OPTIONS,
              certified.build_chnode_certified),
    ModelSpec("stable_node_certified", CERTIFIED_FAMILY, certified.RECIPES["stable_node_certified"],
              ("depth", "min_slope", "delta_bar") + certified.OPTIONS, certified.build_stable_node_certified),
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
            and of the dense read-out, see ``hamiltonian.reference_classifier``)
            or keyword arguments of the ODE layer (e.g. ``solver="rk4"``,
            ``discrete_check="ignore"``).

    Returns:
        ``keras.Model`` from float32 images in [0, 1] of shape
        ``(N, *datasets.INPUT_SHAPE)`` to logits ``(N, datasets.NUM_CLASSES)``.

    A fixed-step ODE layer whose computed map is not certified non-expansive
    warns (or raises) per its ``discrete_check`` (``certify.check_discretization``).

    Raises:
        ValueError: unknown name.
    """
    model = _spec(name).builder(depth=depth, **overrides)
    for layer in ode_layers(model):   # only the layers that ask for the check (CHNODE's discrete_check)
        if layer.fixed_step and getattr(layer, "discrete_check", "ignore") != "ignore":
            check_discretization(layer, weights="initial")
    return model
