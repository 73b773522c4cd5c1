"""Certified Lipschitz bounds of one step of an explicit Runge-Kutta scheme.

One engine for both ODE families (``JacobianStructure``): the field's
Jacobian at step k is B_k(s) = A0_k + U_k diag(s) V_k^T with the slopes s in
a box [lo, hi]^m.

Euler.  One step has Jacobian I + h B_k(s), affine in s, and the spectral
norm is convex, so the worst case over the box is attained at one of its 2^m
vertices (mean value theorem on the secant slopes):

    Lip(step k) <= max_{s in {lo, hi}^m} ||I + h B_k(s)||_2.               (1)

This is exact by enumeration for m <= ``MAX_EXACT_UNITS``.  Wider layers use
a certified upper bound: for the D A form (stabilized NODE) the relaxation
of ``bounds.relaxation`` (or sqrt(1 + 2 h delta + h^2 ||A||_2^2), whichever
is smaller), otherwise the centre-radius bound
||I + h B(c)||_2 + h r ||U||_2 ||V||_2, c and r the box's centre and half-width.

Other explicit schemes (tableau a, b with b >= 0, sum b = 1).  With
Dbar = sum_i b_i diag(s_i) in the box, the step's Jacobian is
I + h B(Dbar) plus products of two or more stage Jacobians, so with
x = h max_s ||B(s)||_2

    Lip(step) <= (1) + sum_{k >= 2} c_k x^k,   c_k = |b|^T |a|^(k-1) 1,      (2)

and without b >= 0 the plain bound 1 + sum_{k >= 1} c_k x^k.  A block of N
steps is Lipschitz with constant at most the product of its step bounds.
"""

import dataclasses
import itertools
import math

import numpy as np

from contractive_keras import solvers
from contractive_keras.bounds.delta import upper_delta
from contractive_keras.bounds.operator_norms import spectral_norm
from contractive_keras.bounds.operator_norms import spectral_norms
from contractive_keras.bounds.relaxation import euler_relaxation
from contractive_keras.bounds.relaxation import minimize_relaxation
from contractive_keras.bounds.theorem1 import worst_case_max_step_size

# Vertex enumeration up to 2^MAX_EXACT_UNITS slope patterns per step.
MAX_EXACT_UNITS = 12
# "exact" is refused above this (2^24 norms per step).
EXACT_HARD_LIMIT = 24


def butcher_arrays(scheme):
    """(a as a full (s, s) matrix, b) of an explicit scheme, or None if adaptive.

    Args:
        scheme: a fixed-step name ("euler", "midpoint", "rk4"), a
            ``solvers`` scheme object with a ``tableau``, or anything else
            (adaptive solvers, tfp solvers: None).
    """
    if isinstance(scheme, str):
        scheme = solvers.FIXED_STEP_METHODS.get(scheme.lower())
        if scheme is None:
            return None
    tableau = getattr(scheme, "tableau", None)
    if tableau is None or getattr(tableau, "b_error", None) is not None:
        return None
    s = len(tableau.b)
    a = np.zeros((s, s))
    for i, row in enumerate(tableau.a):
        a[i + 1, :len(row)] = row
    return a, np.asarray(tableau.b, np.float64)


def power_coefficients(a, b):
    """[c_1, ..., c_s] with c_k = |b|^T |a|^(k-1) 1, equation (2)."""
    coefficients, vector = [], np.ones(len(b))
    for _ in range(len(b)):
        coefficients.append(float(np.abs(b) @ vector))
        vector = np.abs(a) @ vector
    return coefficients


@dataclasses.dataclass(frozen=True)
class StepBounds:
    """Certified bounds of the steps of a block.

    Attributes:
        values: (W,) bounds of each weight slice's step Lipschitz constant.
        method: "exact" (the worst case over the slopes, Euler by vertex
            enumeration) or "upper".
        how: "vertices", "relaxation" or "centre-radius", plus
            "+rk_remainder" for multi-stage schemes.
        witness: with vertex enumeration, (W, m) slope patterns attaining the
            Euler part (1) at each slice; else None.
    """

    values: np.ndarray
    method: str
    how: str
    witness: np.ndarray = None


class StepBound:
    """h -> certified bounds (W,) of one step of each weight slice, equations (1)-(2).

    Built once per structure (vertex enumeration, norms and relaxation data
    are prepared here), then evaluated at any step size: ``bound(h)``,
    ``bound.largest(h_start)``.  A structure without explicit matrices (a
    convolutional CH-NODE) is bounded through its Theorem 1 constants: the
    Jacobian is (J - gamma I) M(s) with M(s) symmetric, spectrum in [c1, c2],
    so ||B(s)||_2 <= sqrt(gamma^2 + j2) c2, and the Euler part (1) is <= 1 up
    to Theorem 1's worst-case step, else <= 1 + h ||B||.
    """

    def __init__(self, structure, method="auto"):
        a, b = _scheme_arrays(structure)
        self.structure = structure
        self.stages = len(b)
        lo, hi = (float(v) for v in structure.slopes)
        self.lo, self.hi = lo, hi
        if method not in ("auto", "exact", "upper"):
            raise ValueError(f"method must be 'auto', 'exact' or 'upper', got {method!r}.")
        self.coefficients = power_coefficients(a, b)
        self.positive = bool(np.all(b >= 0))
        self.vertex = self.diagonal = False
        if structure.offset is None:
            c = structure.theorem1
            self.worst_case = worst_case_max_step_size(c.c1, c.c2, c.gamma, c.j2)
            self.field_norm = np.array([math.sqrt(c.gamma ** 2 + c.j2) * c.c2])
            self.how = "theorem 1 worst case"
            return
        U, V = structure.left, structure.right
        m = U.shape[-1]
        self.n = structure.offset.shape[-1]
        if method == "exact" and m > EXACT_HARD_LIMIT:
            raise ValueError(f"method='exact' enumerates 2^m slope patterns; m = {m} is too large.")
        self.vertex = method == "exact" or (method == "auto" and m <= MAX_EXACT_UNITS)
        self.diagonal = not self.vertex and structure.stabilized_form
        if self.vertex:
            self.patterns = np.array(list(itertools.product((lo, hi), repeat=m)))
            patterns = self.patterns
            self.vertices = structure.offset[:, None] + np.einsum(
                "vi,kai,kbi->kvab", patterns, U, V)
            self.field_norm = np.max(spectral_norms(self.vertices), axis=1)
            self.how = "vertices"
        elif self.diagonal:
            self.kernels = [structure.kernel(k) for k in range(U.shape[0])]
            self.field_norm = max(abs(lo), abs(hi)) * np.array(
                [spectral_norm(A) for A in self.kernels])
            self.deltas = [upper_delta(A, lo).value if lo < hi else None for A in self.kernels]
            self.how = "relaxation"
        else:
            mid, half = 0.5 * (lo + hi), 0.5 * (hi - lo)
            self.centre = structure.offset + mid * U @ np.swapaxes(V, -1, -2)
            self.radius = (abs(half) * np.linalg.norm(U, 2, axis=(-2, -1))
                           * np.linalg.norm(V, 2, axis=(-2, -1)))
            self.field_norm = spectral_norms(self.centre) + self.radius
            self.how = "centre-radius"
        if self.stages > 1:
            self.how += "+rk_remainder"

    def _diagonal_euler(self, k, h):
        """Bound of max_D ||I + h D A_k||_2 for the D A form (relaxation or cheap)."""
        A, delta_upper = self.kernels[k], self.deltas[k]
        eye = np.eye(A.shape[0])
        if delta_upper is None:         # lo == hi: a single slope, the exact norm
            return spectral_norm(eye + h * self.hi * A)
        scaling = self.structure.scaling if self.structure.scaling_covers_euler else None
        candidates = [] if scaling is None else [np.asarray(scaling, np.float64)]
        value, _, _ = minimize_relaxation(euler_relaxation(A, self.lo, h), candidates=candidates)
        value = math.sqrt(max(value, 0.0))
        cheap = 1 + 2 * h * delta_upper + (h * spectral_norm(A)) ** 2
        return min(value, math.sqrt(cheap)) if cheap >= 0 else value

    def _vertex_norms(self, h):
        """(W, 2^m) bounds of ||I + h B_k(s)||_2 at every vertex s."""
        return spectral_norms(np.eye(self.n) + h[:, None, None, None] * self.vertices)

    def euler_part(self, h):
        """Bound (1) of max_s ||I + h B_k(s)||_2 for each k; h (W,) or scalar."""
        h = np.broadcast_to(np.asarray(h, np.float64), self.field_norm.shape)
        if self.structure.offset is None:
            return np.where(h <= self.worst_case, 1.0, 1.0 + h * self.field_norm)
        eye = np.eye(self.n)
        if self.vertex:
            return np.max(self._vertex_norms(h), axis=1)
        if self.diagonal:
            return np.array([self._diagonal_euler(k, float(hk)) for k, hk in enumerate(h)])
        return spectral_norms(eye + h[:, None, None] * self.centre) + h * self.radius

    def witness(self, h):
        """(W, m) slope patterns attaining (1) at step size h (vertex enumeration only)."""
        h = np.broadcast_to(np.asarray(h, np.float64), self.field_norm.shape)
        return self.patterns[np.argmax(self._vertex_norms(h), axis=1)]

    def __call__(self, h):
        h = np.broadcast_to(np.asarray(h, np.float64), self.field_norm.shape)
        x = h * self.field_norm
        if not self.positive:
            return 1.0 + sum(c * x ** k for k, c in enumerate(self.coefficients, start=1))
        value = self.euler_part(h)
        for k, c in enumerate(self.coefficients[1:], start=2):
            value = value + c * x ** k
        return value

    def largest(self, h_start):
        """Per slice, the largest h >= 0 whose bound is <= 1 (to 1e-6 relative).

        Each bound is non-decreasing in h with value 1 at h = 0, so its feasible
        set is an interval [0, h*]; a vectorized bisection returns certified
        (feasible) lower ends (inf where no h up to 1e12 fails).
        """
        count = self.field_norm.shape[0]
        lo = np.zeros(count)
        hi = np.full(count, max(h_start, 1e-30))
        growing = np.ones(count, bool)
        while growing.any():
            ok = self(hi) <= 1.0
            growing = ok & (hi < 1e12)
            lo = np.where(ok, hi, lo)
            hi = np.where(growing, 2.0 * hi, hi)
        unbounded = lo >= 1e12
        for _ in range(200):
            mid = np.where(lo > 0.0, 0.5 * (lo + hi), 1e-3 * hi)
            ok = self(mid) <= 1.0
            lo = np.where(ok, mid, lo)
            hi = np.where(ok, hi, mid)
            done = ((lo > 0.0) & (hi - lo <= 1e-6 * hi)) | (hi < 1e-300) | unbounded
            if done.all():
                break
        return np.where(unbounded, math.inf, lo)


def _scheme_arrays(structure):
    arrays = butcher_arrays(structure.scheme)
    if arrays is None:
        raise ValueError(
            f"solver {structure.scheme!r} is adaptive or has no explicit Butcher tableau: "
            "only the fixed-step explicit Runge-Kutta schemes (euler, midpoint, rk4, ...) "
            "have a certificate of the computed map.")
    return arrays


def step_bounds(structure, step_size=None, method="auto"):
    """Certified bounds (1)-(2) of every step of the block a structure describes.

    Args:
        structure: ``JacobianStructure`` with a fixed-step ``scheme``.
        step_size: h (default: the structure's).
        method: "auto" (vertex enumeration up to ``MAX_EXACT_UNITS`` slopes),
            "exact" (always enumerate) or "upper" (never enumerate).

    Returns:
        ``StepBounds``.
    """
    bound = StepBound(structure, method)
    h = structure.step_size if step_size is None else float(step_size)
    exact = bound.vertex and bound.stages == 1
    witness = bound.witness(h) if bound.vertex else None
    return StepBounds(np.asarray(bound(h), np.float64), "exact" if exact else "upper",
                      bound.how, witness)


def largest_steps(structure, h_start=None, method="auto"):
    """Per weight slice, the largest h >= 0 whose step bound is <= 1 (``StepBound.largest``)."""
    h_start = structure.step_size if h_start is None else h_start
    return StepBound(structure, method).largest(h_start)
