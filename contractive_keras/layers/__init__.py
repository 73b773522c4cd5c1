"""Neural ODE layers (Keras 3), imported like ``keras.layers``.

>>> from contractive_keras.layers import CHNODE, StabilizedNODE   # doctest: +SKIP

Layers: ``CHNODE`` (contractive Hamiltonian NODE), its baselines ``HDNN`` and
``ResNetODE``, the generic ``NeuralODE`` (any Keras layer as vector field) and
``StabilizedNODE`` (u' = sigma(A u + b) with a delta_bar guarantee), all on
the ``ODEBlock`` base (one ``solvers.SolverSpec``; ``jacobian_structure()``
describes each field to ``contractive_keras.certify``).  Also the
1-Lipschitz ``GroupSort``, ``L2NormPooling2D``, ``OrthonormalDense`` and
``OrthonormalConv2D`` (Bjorck-orthonormalised kernels) for certified networks, the
``StepwiseIdentity`` initializer and the slope registry ``activations``.

Backends: every layer here is written with ``keras.ops`` and runs under
Keras's TensorFlow, JAX and PyTorch backends (``layers.dispatch`` holds the
few operations done per backend); TensorFlow is not imported off its
backend.  Only what the solvers keep TensorFlow-only (tfp's "tfp_dopri5" and
"bdf", see ``contractive_keras.solvers``) refuses elsewhere, in one line.
On JAX without ``jax_enable_x64`` the in-graph guarantees (CHNODE's gamma,
OrthonormalConv2D's norm) are computed in float32 and rounded outwards.

Importing this module registers every layer (and the regularizers,
initializers and constraints they use) with Keras.
"""

# Registers the package's regularizers and constraints, which saved layer
# configs refer to.
from contractive_keras import constraints, regularizers  # noqa: F401
from contractive_keras.layers import activations
from contractive_keras.layers.chnode import CHNODE
from contractive_keras.layers.group_sort import GroupSort
from contractive_keras.layers.hdnn import HDNN
from contractive_keras.layers.initializers import StepwiseIdentity
from contractive_keras.layers.l2_norm_pooling import L2NormPooling2D
from contractive_keras.layers.neural_ode import NeuralODE
from contractive_keras.layers.orthonormal_conv2d import OrthonormalConv2D
from contractive_keras.layers.orthonormal_dense import OrthonormalDense
from contractive_keras.layers.ode_block import ODEBlock
from contractive_keras.layers.per_step_ode import PerStepODE
from contractive_keras.layers.resnet_ode import ResNetODE
from contractive_keras.layers.stabilized_node import StabilizedNODE

__all__ = ["CHNODE", "GroupSort", "HDNN", "L2NormPooling2D", "NeuralODE", "ODEBlock",
           "OrthonormalConv2D", "OrthonormalDense",
           "PerStepODE", "ResNetODE", "StabilizedNODE", "StepwiseIdentity", "activations"]
