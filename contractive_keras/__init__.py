"""contractive_keras: neural ODE layers that are robust by construction.

Two families of layers for Keras 3 / TensorFlow:

* CH-NODE (contractive Hamiltonian neural ODE) and its baselines,
  ``contractive_keras.layers.CHNODE``, ``HDNN``, ``ResNetODE``, ``NeuralODE``;
* the stabilized NODE, ``contractive_keras.layers.StabilizedNODE``,

together with the constraints that keep their guarantees after every
optimizer step (``contractive_keras.constraints``), the tools that certify
them (``stability``, ``certify``), fixed-step and adaptive ODE solvers
(``solvers``), input pipelines (``data``), robustness evaluation
(``robustness``) and a zoo of pretrained models (``zoo``).

Importing the package is cheap: submodules (and TensorFlow) are imported on
first attribute access, so ``import contractive_keras`` builds no graph and
downloads nothing.

Example:

>>> import contractive_keras as ck
>>> layer = ck.layers.CHNODE(steps=4)          # doctest: +SKIP
"""

import importlib

__version__ = "0.1.0"

_SUBMODULES = (
    "attacks",
    "callbacks",
    "certify",
    "constraints",
    "data",
    "evaluate",
    "export",
    "layers",
    "models",
    "regularizers",
    "robustness",
    "solvers",
    "stability",
    "trainer",
    "zoo",
)

__all__ = ["__version__", *_SUBMODULES]


def __getattr__(name):
    if name in _SUBMODULES:
        module = importlib.import_module(f"{__name__}.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_SUBMODULES))
