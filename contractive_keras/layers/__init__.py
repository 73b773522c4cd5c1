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

# Registers the package's regularizers and constraints, which saved layer
# configs refer to.
from contractive_keras import constraints, regularizers  # noqa: F401
from contractive_keras.layers.chnode import CHNODE
from contractive_keras.layers.hdnn import HDNN
from contractive_keras.layers.neural_ode import NeuralODE
from contractive_keras.layers.resnet_ode import ResNetODE
from contractive_keras.layers.stabilized_node import StabilizedNODE

__all__ = ["CHNODE", "HDNN", "NeuralODE", "ResNetODE", "StabilizedNODE"]
