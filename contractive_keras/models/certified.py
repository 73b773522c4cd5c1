"""The certified family (``lipschitz_cnn``, ``chnode_certified``,
``stable_node_certified``): the 1-Lipschitz-bounded CNN of ``lipschitz_cnn``
with no ODE block, a per-pixel fixed-gamma CH-NODE or a per-pixel stabilized
NODE (shared/DESIGN.md, "Certified robustness"; docs/certified.md)."""

from contractive_keras.layers import CHNODE
from contractive_keras.layers import StabilizedNODE
from contractive_keras.layers import StepwiseIdentity
from contractive_keras.models import parts
from contractive_keras.models.lipschitz_cnn import lipschitz_cnn
from contractive_keras.solvers.spec import SolverSpec

# Certified presets (docs/certified.md): Adam 1e-3 decayed linearly per step
# to 1e-4 over the run, batch 128, the Lipschitz-margin loss at MNIST's L2 1.58.
_RECIPE = {
    "learning_rate": 1e-3, "lr_decay": 1.0, "final_learning_rate": 1e-4, "batch_size": 128,
    "epochs": 10,
    "loss": "lipschitz_margin", "train_eps": 1.58, "temperature": 1.0,
    "channels": (16, 32), "dense": 128, "kernels": "orthonormal", "weight_decay": 0.0,
}

#: name -> reference recipe (training settings included).
RECIPES = {name: dict(_RECIPE) for name in ("lipschitz_cnn", "chnode_certified", "stable_node_certified")}

#: Options of the certified skeleton (``lipschitz_cnn``): kernel kind, dense width.
OPTIONS = ("kernels", "dense")


def _certified_skeleton(name, ode_layer, overrides):
    normalize = overrides.pop("normalize_inputs", None)
    hp = parts.recipe_with(RECIPES[name], overrides)
    for key in ("lift_max_norm", "readout_max_norm", "solver"):
        if overrides.pop(key, None) is not None:
            raise ValueError(f"{name}: {key} is fixed by the certified skeleton "
                             "(every kernel is norm-bounded by 1; Euler steps).")
    if overrides:
        raise ValueError(f"{name}: unknown options {sorted(overrides)}.")
    return lipschitz_cnn(ode_layer, channels=hp["channels"], dense=hp["dense"],
                         normalize_inputs=bool(normalize), kernels=hp["kernels"], name=name)


def build_lipschitz_cnn(depth=None, **overrides):
    """The 1-Lipschitz CNN baseline (``lipschitz_cnn.lipschitz_cnn``, no ODE block)."""
    return _certified_skeleton("lipschitz_cnn", None, overrides)


def build_chnode_certified(depth=None, **overrides):
    """Per-pixel CH-NODE (gamma fixed, L = L_scale I, Euler) in the certified skeleton.

    The defaults (gamma 2, eps 0.3, L = 0.3 I, 4 steps of h = 0.25) keep every
    Euler step non-expansive for every K the layer allows
    (``certify.ode_guarantee``), so the block's certified factor is 1.
    ``kernel_size=3`` makes K(t) a convolution (spatial mixing in the block).
    """
    steps = int(depth if depth is not None else 4)
    step_size = float(overrides.pop("step_size", None) or 1.0 / steps)
    L_scale = float(overrides.pop("L_scale", None) or 0.3)
    block = CHNODE(SolverSpec("euler", steps=steps, step_size=step_size), activation="tanh",
                   gamma=float(overrides.pop("gamma", None) or 2.0),
                   eps=float(overrides.pop("eps", None) or 0.3), kappa=1e-6,
                   dissipation_initializer=StepwiseIdentity(L_scale),
                   dissipation_trainable=False, kernel_size=overrides.pop("kernel_size", None),
                   name="ode")
    return _certified_skeleton("chnode_certified", block, overrides)


def build_stable_node_certified(depth=None, **overrides):
    """Per-pixel stabilized NODE (delta_bar projection covering Euler) in the certified skeleton."""
    steps = int(depth if depth is not None else 4)
    step_size = overrides.pop("step_size", None)
    t1 = 1.0 if step_size is None else float(step_size) * steps
    block = StabilizedNODE(SolverSpec("euler", steps=steps, t1=t1),
                           min_slope=float(overrides.pop("min_slope", None) or 0.5),
                           delta_bar=float(overrides.pop("delta_bar", None) or 0.0),
                           kernel_initializer="zeros", name="ode")
    return _certified_skeleton("stable_node_certified", block, overrides)
