"""contractive_keras: neural ODE layers that are robust by construction.

Two families of layers for Keras 3, on its TensorFlow, JAX and PyTorch
backends (``contractive_keras.backend`` says what is TensorFlow-only):

* CH-NODE (contractive Hamiltonian neural ODE) and its baselines,
  ``contractive_keras.layers.CHNODE``, ``HDNN``, ``ResNetODE``, ``NeuralODE``;
* the stabilized NODE, ``contractive_keras.layers.StabilizedNODE``,

with the package in tiers (shared/DESIGN.md, "Layout and public API"), each
importing only from the tiers below it:

0. ``solvers``: Runge-Kutta schemes, adaptive solvers, gradient methods;
   ``datasets``: the datasets' facts (no TensorFlow); ``backend``: the Keras
   backend in use and the refusal of TensorFlow-only parts elsewhere;
1. ``bounds``: the guarantees as pure mathematics on arrays;
2. ``layers``, ``constraints``, ``regularizers``: Keras objects; ``saving``:
   reading ``.keras`` files;
3. ``certify``, ``stability``, ``losses``: certificates and certified training;
4. ``robustness``, ``models``: evaluation and model builders;
5. ``training``: the distributed loop behind ``train.py``; plus ``data``,
   ``export``, ``callbacks``, the ``zoo`` and the ``evaluate`` command.

tests/test_tiers.py holds the tier of every module and checks the imports.

Importing the package registers every serializable class (layers,
constraints, regularizers, initializers, losses) with Keras, so
``keras.models.load_model`` works after ``import contractive_keras``; the
other submodules are imported on first attribute access.

Example:

>>> import contractive_keras as ck
>>> layer = ck.layers.CHNODE(ck.solvers.SolverSpec("euler", steps=4, step_size=0.5))  # doctest: +SKIP
"""

import importlib

# Registration with Keras (``register_keras_serializable`` runs on import).
from contractive_keras import constraints  # noqa: F401
from contractive_keras import layers  # noqa: F401
from contractive_keras import losses  # noqa: F401
from contractive_keras import regularizers  # noqa: F401

__version__ = "0.1.0"

_LAZY_SUBMODULES = (
    "backend",
    "bounds",
    "callbacks",
    "certify",
    "data",
    "datasets",
    "evaluate",
    "export",
    "models",
    "robustness",
    "saving",
    "solvers",
    "stability",
    "training",
    "zoo",
)

__all__ = ["__version__", "constraints", "layers", "losses", "regularizers",
           *_LAZY_SUBMODULES]


def __getattr__(name):
    if name in _LAZY_SUBMODULES:
        module = importlib.import_module(f"{__name__}.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY_SUBMODULES))
