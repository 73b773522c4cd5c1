"""Certified bounds of a model's body for training against the certificate.

A certified-training loss (``contractive_keras.losses``) needs, at every
step, an upper bound L_body on the Lipschitz constant of the map from the
input to the read-out's input (shared/DESIGN.md, "Certified robustness"):

    z_y - z_j > eps * L_body * ||w_y - w_j||_2  for every j != y.          (1)

``body_bound_fn(model)`` returns a zero-argument function giving that bound
as a float32 scalar tensor, never below what ``certify.body_and_readout``
reports for the current weights, the same product of layer factors:

* linear ``Dense`` and stride-1 ``Conv2D`` kernels: with ``mode="exact"``
  their current operator norms, differentiable, in float64 (the spectral
  norm; for a convolution the circulant-embedding bound, Sedghi et al.
  2019), with ``mode="constraint"`` the bound their kernel constraint
  guarantees after every optimizer step (constant, no cost);
* ``GroupSort``, ``L2NormPooling2D`` (1-Lipschitz by construction), reshapes
  and ``Rescaling``: their constant;
* ODE blocks: ``ode_guarantee``, a bound of the computed map valid for every
  weight the layer's constraint or parametrization allows (it cannot depend
  on the current weights without re-running the certificate every step).

The float64 product is rounded up to float32, and inflated by
``bounds.operator_norms.F64_SLACK`` per factor for the eigensolver's
rounding, so the loss trains against a value at or above the certificate.

Backends: written with ``keras.ops``; the bound is differentiable in the
kernels under ``KERAS_BACKEND=tensorflow``, ``jax`` and ``torch``.  It is
computed in float64 where the backend keeps float64 in graphs
(``backend.wide_float``); on JAX without ``jax_enable_x64`` the products
run in float32, their rounding covered by an outward factor.

Example:

>>> import keras, numpy as np
>>> from contractive_keras import certify
>>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8), keras.layers.Dense(3)])
>>> bound = certify.body_bound_fn(model)
>>> value = float(bound())
>>> bool(value >= certify.body_and_readout(model)[0].value)
True
"""

import math

import keras
import numpy as np
from keras import ops

from contractive_keras import backend
from contractive_keras.bounds.operator_norms import F64_SLACK
from contractive_keras.bounds.operator_norms import conv_operator_norm_tf
from contractive_keras.bounds.operator_norms import spectral_norm_tf
from contractive_keras.bounds.theorem1 import round_up
from contractive_keras.bounds.theorem1 import worst_case_max_step_size
from contractive_keras.certify.layer import describes_itself
from contractive_keras.certify.layer import layer_certificate
from contractive_keras.certify.model import applied_kernel
from contractive_keras.certify.model import conv_input_grid
from contractive_keras.certify.model import layer_factor
from contractive_keras.certify.model import linear_readout

MODES = ("exact", "constraint")


def ode_guarantee(layer):
    """Bound of an ODE block's computed map for every weight its constraint allows.

    * ``StabilizedNODE`` on explicit Euler steps whose ``DeltaBarProjection``
      covers the Euler step h: each step is (1 + h delta_bar)-Lipschitz after
      every optimizer step, so the N-step map is (1 + h delta_bar)^N; the
      current kernel must be inside (checked against its certificate).
    * ``CHNODE`` with a fixed gamma, a fixed L and explicit Euler steps: the
      layer scales K into c2 <= q_max c1 (Theorem 1's cap), c1 = kappa +
      min lambda_min(L^T L) is fixed, and every Euler step of size
      h <= worst_case_max_step_size(c1, q_max c1, gamma) is non-expansive
      (``bounds.theorem1.worst_case_max_step_size``): the map is 1-Lipschitz.

    Raises:
        ValueError: a block with no weight-independent guarantee (adaptive
            solver, an unconstrained kernel, gamma "auto", a step above the
            worst-case step), with what would give one.
    """
    name = type(layer).__name__
    if not getattr(layer, "fixed_step", False) or layer.solver != "euler":
        raise ValueError(f"{layer.name}: a training bound needs explicit Euler steps "
                         f"(solver='euler'), got solver={layer.solver!r}.")
    h, steps = float(layer.step_size), int(layer.steps)
    if name == "StabilizedNODE":
        constraint = layer.kernel_constraint
        covers = (constraint is not None and hasattr(constraint, "covers_euler")
                  and constraint.covers_euler()
                  and math.isclose(float(constraint.step_size), h, rel_tol=1e-12))
        if not covers:
            raise ValueError(f"{layer.name}: no constraint bounds its Euler map; build it with "
                             f"delta_bar=... (a DeltaBarProjection that covers the Euler step).")
        guarantee = max(1.0 + h * float(constraint.delta_bar), 0.0) ** steps
        current = layer_certificate(layer).value
        if not current <= guarantee * (1.0 + 1e-9):
            raise ValueError(f"{layer.name}: the kernel is outside its constraint set "
                             f"(certified {current:.6g} > {guarantee:.6g}; Keras applies the "
                             "constraint after each optimizer step only); assign "
                             "kernel.constraint(kernel) first.")
        return guarantee
    if name == "CHNODE":
        if layer.gamma == "auto" or layer.dissipation_trainable:
            raise ValueError(f"{layer.name}: gamma='auto' or a trainable L changes the worst-case "
                             "step with the weights; fix gamma and L for a training bound.")
        L = backend.to_numpy(layer.L, np.float64)
        c1 = layer.kappa + float(np.min(np.linalg.eigvalsh(np.einsum("kpi,kpj->kij", L, L))))
        c1 *= 1.0 - F64_SLACK
        c2 = layer.max_ratio * c1 * (1.0 + F64_SLACK)
        largest = worst_case_max_step_size(c1, c2, float(layer.gamma), layer.j2)
        if not h <= largest * (1.0 - 1e-9):
            raise ValueError(f"{layer.name}: step_size={h:.6g} is above the worst-case "
                             f"non-expansive Euler step {largest:.6g} of its constraint set "
                             f"(c1={c1:.4g}, q_max={layer.max_ratio:.4g}, "
                             f"gamma={layer.gamma}); use smaller steps or a larger gamma.")
        return 1.0
    raise ValueError(f"{layer.name}: no training bound for {name} blocks "
                     "(StabilizedNODE and fixed-gamma CHNODE have one).")


def _constraint_norm(layer, norm):
    """The operator-norm bound a kernel constraint guarantees (``max_norm``).

    Keras applies a constraint after each optimizer step only, so the
    current kernel must already be inside: its certified ``norm`` is checked.
    """
    constraint = getattr(layer.kernel, "constraint", None)
    max_norm = getattr(constraint, "max_norm", None)
    if callable(getattr(layer, "applied_kernel", None)):
        # An orthonormal layer: its parametrisation bounds the norm (rounding included).
        constraint, max_norm = layer, getattr(layer, "max_norm", None)
    if not isinstance(max_norm, (int, float)):
        raise ValueError(f"{layer.name}: mode='constraint' needs a norm-bounding kernel "
                         f"constraint (SpectralNormClip, ConvNormClip, ...), got "
                         f"{type(constraint).__name__}; use mode='exact'.")
    if not norm <= max_norm:
        raise ValueError(f"{layer.name}: the kernel is outside its constraint (norm {norm:.17g} > "
                         f"max_norm {max_norm:.6g}; Keras applies a constraint after each "
                         "optimizer step only); assign kernel.constraint(kernel) to every "
                         "constrained kernel first.")
    return float(max_norm)


def _factor(layer, mode):
    """A constant, or a function of no argument returning a float64 tensor.

    ODE blocks give their ``ode_guarantee``; every other layer goes through
    ``certify.model.layer_factor`` (which also refuses nonlinear or strided
    Dense / Conv2D layers and unknown ones), and a linear kernel's factor is
    then replaced by its differentiable norm or its constraint's bound.
    """
    if describes_itself(layer):
        return ode_guarantee(layer)
    value, _ = layer_factor(layer)
    if not isinstance(layer, (keras.layers.Dense, keras.layers.Conv2D)):
        return value
    if mode == "constraint":
        return _constraint_norm(layer, value)
    if isinstance(layer, keras.layers.Conv2D):
        spatial = conv_input_grid(layer)
        return lambda: conv_operator_norm_tf(applied_kernel(layer), spatial)
    return lambda: spectral_norm_tf(applied_kernel(layer))


def body_bound_fn(model, mode="exact"):
    """Zero-argument function: the certified body bound L_body of (1), float32.

    Args:
        model: a built chain model; with a linear ``Dense`` last layer that
            layer is the read-out (left out of the body), otherwise the
            whole model is the body.
        mode: "exact" (the current norms of the linear layers,
            differentiable) or "constraint" (their constraints' bounds).

    Returns:
        A function of no argument returning a float32 scalar tensor.

    Raises:
        ValueError: an unknown mode, or a layer without a bound (see
            ``ode_guarantee`` and ``_factor``), raised here, not at the
            first training step.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}.")
    layers = model.layers[:-1] if linear_readout(model) is not None else model.layers
    constant, variable = 1.0, []
    for layer in layers:
        factor = _factor(layer, mode)
        if callable(factor):
            variable.append(factor)
        else:
            constant *= factor
    constant *= (1.0 + F64_SLACK) ** len(layers)
    wide = backend.wide_float()
    if wide != "float64":
        # Each float32 product (and the constant's conversion) rounds by at
        # most 2^-24 relative: an outward factor keeps the result above.
        constant *= (1.0 + 2.0 ** -23) ** (len(variable) + 2)

    def bound():
        total = ops.convert_to_tensor(constant, wide)
        for factor in variable:
            total = total * ops.cast(factor(), wide)
        # Rounded up to float32, differentiated as the plain cast (nextafter has
        # no derivative on JAX): low + (up - low) is exactly up in float32.
        low = ops.cast(total, "float32")
        return low + ops.stop_gradient(round_up(ops.stop_gradient(total), "float32") - low)

    return bound
