"""Pieces shared by the model builders: PyTorch's default initializers, the
weight-decay penalty, input standardisation, norm bounds and recipe handling."""

import math

import keras

from contractive_keras import datasets
from contractive_keras.solvers.spec import SolverSpec

#: Options every model accepts (beyond its family's recipe keys).
COMMON_OPTIONS = ("weight_decay", "solver", "step_size", "lift_max_norm", "readout_max_norm",
                  "normalize_inputs")

#: Training settings of a recipe: ``build`` accepts and ignores them, so a
#: whole ``REFERENCE_HPARAMS`` entry can be passed as overrides.
TRAINING_KEYS = ("learning_rate", "lr_decay", "final_learning_rate", "batch_size", "epochs", "loss", "train_eps",
                 "temperature")


def torch_uniform(fan_in):
    """PyTorch's default Linear / Conv2d initialization: U(+-1/sqrt(fan_in))."""
    return keras.initializers.RandomUniform(-1.0 / math.sqrt(fan_in), 1.0 / math.sqrt(fan_in))


def torch_kernel():
    """PyTorch's default kernel initialization, kaiming_uniform(a=sqrt(5)):
    U(+-sqrt(3 * (1/3) / fan_in)) = U(+-1/sqrt(fan_in))."""
    return keras.initializers.VarianceScaling(1.0 / 3.0, "fan_in", "uniform")


def l2(weight_decay):
    """PyTorch-Adam weight decay wd as the L2 penalty (wd / 2) ||w||^2, or None."""
    return keras.regularizers.L2(weight_decay / 2.0) if weight_decay else None


def normalize_layer():
    """(x - mean) / std with the reference MNIST statistics (``normalize_inputs``)."""
    mean, std = datasets.NORMALIZATION["mnist"]
    return keras.layers.Rescaling(1.0 / std, offset=-mean / std, name="normalize")


def norm_bound(constraint_cls, max_norm):
    """``constraint_cls(max_norm)``, or None (no bound) for a None max_norm."""
    return None if max_norm is None else constraint_cls(max_norm)


def start_inside_constraints(model):
    """Applies the lift / read-out norm bounds to the initial kernels."""
    for layer in (model.get_layer("lift"), model.get_layer("logits")):
        if layer.kernel.constraint is not None:
            layer.kernel.assign(layer.kernel.constraint(layer.kernel))


def classifier_norms(overrides):
    """Pops the skeleton's options: lift / read-out norm bounds, input normalisation."""
    norms = {key: overrides.pop(key, None) for key in ("lift_max_norm", "readout_max_norm")}
    norms["normalize_inputs"] = bool(overrides.pop("normalize_inputs", None) is not False)
    return norms


def recipe_with(recipe, overrides):
    """``recipe`` updated by (and popped from) ``overrides``, without its training settings."""
    hp = dict(recipe)
    hp.update({k: overrides.pop(k) for k in list(overrides) if k in hp})
    for key in TRAINING_KEYS:
        hp.pop(key, None)
    return hp


#: Integration settings a builder takes as overrides besides the time grid.
SOLVER_SETTINGS = ("gradient", "rtol", "atol")


def solver_spec(method, overrides, **grid):
    """The ``SolverSpec`` of an ODE block: ``method`` on ``grid`` (steps and
    step_size or t1), with ``gradient`` / ``rtol`` / ``atol`` popped from
    ``overrides``.  An override ``solver`` that is a ``SolverSpec`` is used as is."""
    solver = overrides.pop("solver", None)
    settings = {k: overrides.pop(k) for k in SOLVER_SETTINGS
                if overrides.get(k) is not None}
    if isinstance(solver, SolverSpec):
        return solver.replace(**settings) if settings else solver
    return SolverSpec(method if solver is None else solver, **grid, **settings)
