"""Neural ODE layers (Keras 3), imported like ``keras.layers``.

>>> from contractive_keras.layers import CHNODE, StabilizedNODE   # doctest: +SKIP

Layers: ``CHNODE`` (contractive Hamiltonian NODE), its baselines ``HDNN`` and
``ResNetODE``, the generic ``NeuralODE`` (any Keras layer as vector field) and
``StabilizedNODE`` (u' = sigma(A u + b) with a delta_bar guarantee).

Importing this module registers every layer (and the regularizers,
initializers and constraints they use) with Keras, so
``keras.saving.load_model`` can rebuild saved models after
``import contractive_keras.layers``.
"""

import importlib

# Registers the package's regularizers and constraints, which saved layer
# configs refer to.
from contractive_keras import constraints, regularizers  # noqa: F401
from contractive_keras.layers.chnode import CHNODE
from contractive_keras.layers.hdnn import HDNN
from contractive_keras.layers.neural_ode import NeuralODE
from contractive_keras.layers.resnet_ode import ResNetODE

_LAZY = {"StabilizedNODE": "stabilized_node"}

__all__ = ["CHNODE", "HDNN", "NeuralODE", "ResNetODE", "StabilizedNODE"]


def __getattr__(name):
    if name in _LAZY:
        module = importlib.import_module(f"{__name__}.{_LAZY[name]}")
        value = getattr(module, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
