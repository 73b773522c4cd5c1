"""How an ODE layer describes itself to the certificates (no layer imported here)."""

import dataclasses

import numpy as np

from contractive_keras import backend


@dataclasses.dataclass(frozen=True)
class JacobianStructure:
    """The Jacobian of an ODE block's vector field, affine in the activation slopes.

    At any state of step k, the Jacobian of the field is

        B_k(s) = offset[k] + left[k] diag(s) right[k]^T,   s in [lo, hi]^m,   (1)

    (slopes = (lo, hi), the range of the activation's derivative).  CH-NODE:
    offset = (J - gamma I)(L^T L + kappa I), left = (J - gamma I) K^T,
    right = K^T, slopes [0, S].  Stabilized NODE u' = sigma(A u + b):
    offset = 0, left = I, right = A^T, slopes [alpha, 1] (B = D A).

    Attributes:
        offset, left, right: float64 arrays (W, n, n), (W, n, m), (W, n, m);
            W = steps for per-step weights, 1 for shared ones.  All None when
            the Jacobian is too large to write down (a convolutional CH-NODE):
            certificates then use the ``theorem1`` constants alone.
        slopes: (lo, hi).
        steps: number of fixed steps N (None for adaptive solvers).
        step_size: h (None for adaptive solvers).
        t1: final time.
        scheme: the explicit Runge-Kutta scheme (a ``solvers`` object with a
            ``tableau``) the layer computes with, or None (adaptive: only the
            flow can be certified).
        theorem1: ``bounds.theorem1.Theorem1Constants`` (CH-NODE), else None.
        scaling: a candidate positive diagonal T for the relaxation bounds of
            the D A form (e.g. a DeltaBarProjection's warm start), or None;
            ``scaling_covers_euler`` says whether it is the Euler-step metric.
        delta_bar: the stabilized NODE's target bound, or None.
    """

    offset: np.ndarray
    left: np.ndarray
    right: np.ndarray
    slopes: tuple
    steps: int = None
    step_size: float = None
    t1: float = None
    scheme: object = None
    theorem1: object = None
    scaling: np.ndarray = None
    scaling_covers_euler: bool = False
    delta_bar: float = None

    @property
    def diagonal_form(self):
        """True when B(s) = diag(s) right^T (offset 0, left I): the D A form."""
        if self.left is None:
            return False
        n, m = self.left.shape[-2:]
        return (n == m and not np.any(self.offset)
                and np.array_equal(self.left, np.broadcast_to(np.eye(n), self.left.shape)))

    @property
    def stabilized_form(self):
        """The D A form with slopes in [a, 1], 0 < a: where delta and its relaxation apply."""
        lo, hi = self.slopes
        return self.diagonal_form and hi == 1.0 and 0.0 < lo <= 1.0

    def kernel(self, k=0):
        """A = right[k]^T of the D A form."""
        return self.right[k].T

    @classmethod
    def of_kernel(cls, A, min_slope, *, t1=1.0, scheme=None, steps=None, scaling=None,
                  scaling_covers_euler=False, delta_bar=None):
        """The structure of u' = sigma(A u + b), sigma' in [min_slope, 1]: B = D A."""
        A = backend.to_numpy(A, np.float64)   # NumPy, or any backend's tensor
        d = A.shape[0]
        return cls(offset=np.zeros((1, d, d)), left=np.eye(d)[None], right=A.T[None],
                   slopes=(float(min_slope), 1.0), steps=steps,
                   step_size=None if steps is None else t1 / steps, t1=float(t1),
                   scheme=scheme, scaling=scaling, scaling_covers_euler=scaling_covers_euler,
                   delta_bar=delta_bar)

