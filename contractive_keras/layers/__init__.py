"""Neural ODE layers (Keras 3), imported like ``keras.layers``.

>>> from contractive_keras.layers import CHNODE, StabilizedNODE   # doctest: +SKIP

Layers: ``CHNODE`` (contractive Hamiltonian NODE), its baselines ``HDNN`` and
``ResNetODE``, the generic ``NeuralODE`` (any Keras layer as vector field) and
``StabilizedNODE`` (u' = sigma(A u + b) with a delta_bar guarantee).
"""

import importlib

_LAYERS = {
    "CHNODE": "chnode",
    "HDNN": "hdnn",
    "ResNetODE": "resnet_ode",
    "NeuralODE": "neural_ode",
    "StabilizedNODE": "stabilized_node",
}

__all__ = sorted(_LAYERS)


def __getattr__(name):
    if name in _LAYERS:
        module = importlib.import_module(f"{__name__}.{_LAYERS[name]}")
        value = getattr(module, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAYERS))
