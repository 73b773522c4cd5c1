"""Certificates of one ODE layer, from the structure the layer describes.

A layer describes its field (``layer.jacobian_structure()``, a
``bounds.JacobianStructure``); the certificate is computed here from that
description alone (``bounds.map_certificate`` / ``bounds.flow_certificate``),
so anyone can verify a trained layer without trusting its training code.

Backends: the certificates are NumPy float64 computations on the weights,
the same whichever Keras backend built the layer; ``step_lipschitz_bounds``
takes NumPy arrays or backend tensors.
"""

import warnings

import numpy as np

from contractive_keras import backend
from contractive_keras.bounds import block_certificate
from contractive_keras.bounds import step_bound
from contractive_keras.bounds.jacobian_structure import JacobianStructure
from contractive_keras.bounds.threads import single_threaded_blas


def describes_itself(layer):
    """Whether ``layer`` exposes ``jacobian_structure()`` (the package's ODE layers)."""
    return callable(getattr(layer, "jacobian_structure", None))


def _structure(layer):
    if not describes_itself(layer):
        raise ValueError(f"{getattr(layer, 'name', layer)}: not an ODE layer describing its "
                         "Jacobian structure (jacobian_structure()).")
    try:
        return layer.jacobian_structure()
    except NotImplementedError as error:
        raise ValueError(f"{layer.name}: {error}") from None


@single_threaded_blas
def layer_certificate(layer, certifies="map", method="auto"):
    """Certified Lipschitz bound of an ODE layer.

    Args:
        layer: a built ODE layer (CHNODE, HDNN, ResNetODE, StabilizedNODE).
        certifies: "map" (what the layer computes: its fixed-step scheme's
            N steps; refused for adaptive solvers) or "flow" (the exact ODE
            flow: exp(delta t1) for the stabilized NODE, Theorem 2 for a
            CH-NODE).
        method: "auto", "exact" or "upper".

    Returns:
        ``Certificate``; for "map" its ``details`` hold per_step_bounds,
        max_step_size (the largest step with every step bound <= 1, where
        computed), exact_in_slopes, and the family's numbers (CH-NODE:
        worst_case_max_step_size, invariant_max_step_size with a fixed
        gamma; stabilized NODE: delta and flow_bound).
    """
    structure = _structure(layer)
    if certifies == "map":
        if structure.scheme is None:
            raise ValueError(
                f"{layer.name}: solver={layer.solver!r} is adaptive; the certificate of the "
                "computed map covers the fixed-step schemes only (certifies='flow' bounds "
                "the exact flow, which the solver only approximates).")
        return block_certificate.map_certificate(structure, method)
    if certifies == "flow":
        return block_certificate.flow_certificate(structure, method)
    raise ValueError(f"certifies must be 'map' or 'flow', got {certifies!r}.")


def contraction_constants(layer):
    """c1, c2, alpha, beta, gamma, gamma_min, rho, ... of a CHNODE (dict of floats)."""
    constants = _structure(layer).theorem1
    if constants is None:
        raise ValueError(f"{layer.name}: not a CH-NODE (no Theorem 1 constants).")
    return constants.as_dict()


def contraction_rate(layer):
    """rho of Theorem 2: ||d xi(T) / d xi(T - t)||_2 <= exp(-rho t / 2)."""
    return contraction_constants(layer)["rho"]


@single_threaded_blas
def step_lipschitz_bounds(A0, U, V, slope_bound, step_size, solver="euler"):
    """Certified per-step Lipschitz bounds of a fixed-step scheme, from raw arrays.

    The Jacobian of the field at step k is A0[k] + U[k] diag(s) V[k]^T with
    s in [0, S]^m (``bounds.step_bound``, equations (1)-(2)).

    Returns:
        (bounds (W,), max_step_sizes (W,), exact): ``exact`` says the Euler
        part is the exact worst case over slope patterns (vertex enumeration).
    """
    if step_bound.butcher_arrays(solver) is None:
        raise ValueError(f"no discrete certificate for solver={solver!r}; fixed-step "
                         "schemes: euler, midpoint, rk4.")
    structure = JacobianStructure(
        offset=backend.to_numpy(A0, np.float64), left=backend.to_numpy(U, np.float64),
        right=backend.to_numpy(V, np.float64), slopes=(0.0, float(slope_bound)),
        step_size=float(step_size), scheme=solver)
    bound = step_bound.StepBound(structure)
    return bound(structure.step_size), bound.largest(structure.step_size), bound.vertex


def check_discretization(layer, weights="current"):
    """Warns or raises if a fixed-step ODE layer's computed map is not certified non-expansive.

    The continuous-time guarantee of a CH-NODE (Theorems 1-2) does not carry
    over to every step size: when the certificate of the map the layer
    computes (``layer_certificate(layer)``) exceeds 1, this warns
    (``RuntimeWarning``) or raises (``ValueError``) as the layer's
    ``discrete_check`` setting says ("warn", the CHNODE default, "raise" or
    "ignore"; a layer without the setting is not checked). ``models.build``, train.py, ``certify.summary`` and
    ``callbacks.BSMLogger`` call it; a layer never certifies itself.

    Args:
        layer: a built ODE layer with a fixed-step solver.
        weights: how the message names the weights checked ("current",
            "initial").

    Returns:
        The ``Certificate`` of the layer's map.
    """
    cert = layer_certificate(layer)
    policy = getattr(layer, "discrete_check", "ignore")     # a CHNODE setting
    if cert.value > 1.0 and policy != "ignore":
        message = (
            f"{layer.name}: the {layer.solver} scheme with step_size={layer.step_size:.4g} is NOT "
            f"certified contractive for the {weights} weights: certified Lipschitz bound of the "
            f"{layer.steps}-step block = {cert.value:.7g} > 1; the largest certified step size is "
            f"{cert.details['max_step_size']:.3g}. The continuous-time guarantee of Theorems 1-2 "
            "does not transfer to this discretization (see "
            "contractive_keras.certify.layer_certificate).")
        if policy == "raise":
            raise ValueError(message)
        warnings.warn(message, RuntimeWarning, stacklevel=2)
    return cert
