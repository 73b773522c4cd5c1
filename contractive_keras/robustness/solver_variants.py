"""The same trained ODE model integrated with other solver settings: attacks that adapt to the solver.

An ODE model computes one map per solver setting: a fixed-step scheme and its
step count, or an adaptive scheme and its tolerances. An attack must target
the map the model computes at inference (``robustness.run_suite`` does, by
calling the model itself); for adaptive solvers it is also run on the map at a
tighter tolerance, whose adversarial images are then classified by the
inference map (a transfer attack), because a loose tolerance can make the
gradients noisy enough to hide adversarial directions (Carrara et al. 2019,
"On the robustness to adversarial examples of neural ODE image classifiers").

Example:

>>> tight = with_solver(model, SolverSpec("dopri5", t1=1.0, rtol=1e-7, atol=1e-7))  # doctest: +SKIP
>>> result = transfer_suite(model, tight, images, labels, eps=0.05)                # doctest: +SKIP
"""

import copy

import keras
import numpy as np

from contractive_keras.robustness.standard import run_suite
from contractive_keras.solvers import SolverSpec

__all__ = ["ode_layers", "transfer_suite", "with_solver"]


def _rewrite_solver(config, solver):
    """``config`` with the solver of every layer that has one replaced (recursively), and the count."""
    count = 0
    if isinstance(config, dict):
        out = {}
        for key, value in config.items():
            if key == "solver" and isinstance(value, dict) and value.get("class_name") == "SolverSpec":
                out[key], count = solver.get_config(), count + 1
            else:
                out[key], n = _rewrite_solver(value, solver)
                count += n
        return out, count
    if isinstance(config, list):
        items = [_rewrite_solver(v, solver) for v in config]
        return [v for v, _ in items], sum(n for _, n in items)
    return config, 0


def ode_layers(model):
    """The layers of ``model`` (nested models included) that hold a ``SolverSpec``."""
    return [layer for layer in model._flatten_layers(include_self=False)
            if isinstance(getattr(layer, "solver_spec", None), SolverSpec)]


def with_solver(model, solver):
    """A copy of a Keras ``model`` whose ODE layers integrate with ``solver``, same weights.

    Args:
        model: a functional or Sequential Keras model with ODE layers.
        solver: a ``SolverSpec`` (its horizon should be the layers' own).

    Returns:
        A new model; ``model`` is unchanged.

    Raises:
        ValueError: ``model`` has no ODE layer.
    """
    if not isinstance(solver, SolverSpec):
        raise TypeError(f"solver must be a SolverSpec, got {type(solver).__name__}")
    config, count = _rewrite_solver(copy.deepcopy(model.get_config()), solver)
    if count == 0:
        raise ValueError(f"{model.name} has no ODE layer with a solver to replace")
    clone = model.__class__.from_config(config)
    clone.set_weights(model.get_weights())
    return clone


def transfer_suite(model, source, images, labels, eps, *, norm="linf", suite="standard", seed=0,
                   batch_size=500):
    """Per-image robustness of ``model`` against the suite run on ``source``'s map (a transfer attack).

    The suite attacks ``source`` (e.g. the same weights at a tighter
    tolerance); each image's adversarial example is the one that broke
    ``source``, or the last attack's output where none did. An image counts
    as robust only if ``model`` classifies it correctly clean and at that
    adversarial example.

    Returns:
        ``(robust, source_result)``: bool ``(n,)`` flags for ``model`` and the
        ``SuiteResult`` of the suite on ``source``.
    """
    images = np.asarray(images, np.float32)
    labels = np.asarray(labels, np.int32)
    result = run_suite(source, images, labels, eps, norm=norm, suite=suite, seed=seed, batch_size=batch_size,
                       keep_adversarial=True)

    def correct(x):
        predictions = [np.asarray(keras.ops.argmax(model(x[i:i + batch_size], training=False), axis=-1))
                       for i in range(0, len(x), batch_size)]
        return np.concatenate(predictions) == labels

    return correct(images) & correct(result.adversarial), result
