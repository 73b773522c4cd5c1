"""Certificate scalars for logging: one vocabulary for every ODE layer of a model."""

from contractive_keras.bounds.threads import single_threaded_blas
from contractive_keras.certify.layer import check_discretization
from contractive_keras.certify.layer import describes_itself
from contractive_keras.certify.layer import layer_certificate


def ode_layers(model_or_layer):
    """The built ODE layers (those describing their Jacobian) of a model, or the layer itself."""
    if describes_itself(model_or_layer):
        return [model_or_layer]
    flatten = getattr(model_or_layer, "_flatten_layers", None)
    if flatten is None:
        return []
    return [layer for layer in flatten(include_self=False)
            if describes_itself(layer) and layer.built]


def _layer_summary(layer, warn):
    structure = layer.jacobian_structure()
    values = {}
    if structure.theorem1 is not None:
        c = structure.theorem1
        values.update(gamma=c.gamma, alpha=c.alpha, rho=c.rho, c1=c.c1, c2=c.c2)
    if structure.scheme is not None:
        cert = check_discretization(layer) if warn else layer_certificate(layer)
    else:
        cert = layer_certificate(layer, certifies="flow")
    values["lipschitz_bound"] = cert.value
    values["lipschitz_certifies"] = cert.certifies
    for key in ("max_step_size", "step_size", "flow_bound"):
        if key in cert.details:
            values["flow_lipschitz_bound" if key == "flow_bound" else key] = cert.details[key]
    if "delta" in cert.details:
        values["delta"] = float(cert.details["delta"].value)
        values["delta_kind"] = cert.details["delta"].kind
    if structure.stabilized_form:
        values["min_slope"] = structure.slopes[0]
        values["delta_bar"] = structure.delta_bar
    return values


@single_threaded_blas
def summary(model_or_layer, warn=True):
    """Flat dict for logging the certificates of every ODE layer.

    Keys for each layer: "lipschitz_bound" and "lipschitz_certifies" ("map"
    for fixed-step schemes, "flow" for adaptive ones); "max_step_size",
    "step_size" where known; a CH-NODE adds gamma, alpha, rho, c1, c2
    (Theorems 1-2); a stabilized NODE adds delta, delta_kind,
    flow_lipschitz_bound, min_slope and delta_bar (None when unconstrained).
    Keys are prefixed with "<layer name>/" when there are several layers.
    With ``warn=True`` a fixed-step layer whose map is not certified warns
    (or raises) per its ``discrete_check`` (``check_discretization``).
    """
    layers = ode_layers(model_or_layer)
    out = {}
    for layer in layers:
        prefix = f"{layer.name}/" if len(layers) > 1 else ""
        out.update({prefix + k: v for k, v in _layer_summary(layer, warn).items()})
    return out
