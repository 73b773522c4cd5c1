"""The one certificate type every certificate function returns."""

import dataclasses
import types

CERTIFIES = ("map", "flow")
METHODS = ("exact", "upper")


@dataclasses.dataclass(frozen=True)
class Factor:
    """One factor of a product bound: what it bounds, how, and its value.

    Attributes:
        name: the layer or step it belongs to (e.g. "dense", "step 3").
        kind: what was bounded and how (e.g. "conv2d (circulant bound)").
        value: the factor (a certified upper bound).
    """

    name: str
    kind: str
    value: float

    def __iter__(self):
        """Unpacks as ``name, kind, value``."""
        return iter((self.name, self.kind, self.value))


@dataclasses.dataclass(frozen=True)
class Certificate:
    """A certified upper bound on a Lipschitz constant (l2 -> l2) and what it covers.

    Attributes:
        value: the bound.
        certifies: "map" -- the map the layer or model computes (its
            fixed-step scheme included); or "flow" -- the exact ODE flow,
            which an adaptive solver only approximates to its tolerance.
        method: "exact" (the worst case itself, e.g. by vertex enumeration
            of the activation slopes) or "upper" (a certified upper bound).
            A lower bound is never a certificate.
        factors: the per-factor breakdown (``Factor``): per step of an ODE
            block, per layer of a model; ``value`` is their product.
        details: further numbers of the family (read-only mapping), e.g.
            ``max_step_size`` of a CH-NODE or ``delta`` of a stabilized NODE.

    Example:

    >>> c = Certificate(0.5, "map", "exact", (Factor("step 0", "euler step", 0.5),))
    >>> float(c)
    0.5
    """

    value: float
    certifies: str
    method: str
    factors: tuple = ()
    details: types.MappingProxyType = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if self.certifies not in CERTIFIES:
            raise ValueError(f"certifies must be one of {CERTIFIES}, got {self.certifies!r}.")
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}.")
        object.__setattr__(self, "value", float(self.value))
        object.__setattr__(self, "factors", tuple(Factor(*f) for f in self.factors))
        object.__setattr__(self, "details", types.MappingProxyType(dict(self.details)))

    def __float__(self):
        return self.value

    def summary(self):
        """Flat dict of the scalar entries (value, certifies, method, scalar details)."""
        out = {"lipschitz_bound": self.value, "certifies": self.certifies,
               "method": self.method}
        out.update({k: v for k, v in self.details.items()
                    if isinstance(v, (int, float, str, bool)) or v is None})
        return out


def product(factors, certifies, method="upper", details=None):
    """The certificate of a composition: the product of its factors' bounds.

    Lip(f o g) <= Lip(f) Lip(g); the product of exact factors is in general
    only an upper bound, hence ``method="upper"`` unless the caller knows better.
    """
    factors = tuple(Factor(*f) for f in factors)
    value = 1.0
    for factor in factors:
        value *= factor.value
    return Certificate(value, certifies, method, factors, details or {})
