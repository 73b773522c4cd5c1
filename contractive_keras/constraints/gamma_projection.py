"""The CH-NODE's Theorem 1 projection (shared/DESIGN.md, "CH-NODE").

gamma="auto" needs no gamma variable: ``CHNODE.call`` recomputes gamma from
the current K, L, kappa (Theorem 1, float64, rounded up).  ``GammaProjection``
keeps K in the Theorem 1 set of a fixed gamma (or, for "auto", caps alpha so
that gamma stays finite) after every optimizer step.
"""

import keras
import numpy as np

from contractive_keras.bounds import theorem1
from contractive_keras.bounds.operator_norms import clip_singular_values
from contractive_keras.bounds.operator_norms import scale_conv_to_norms


@keras.saving.register_keras_serializable(package="contractive_keras")
class GammaProjection(keras.constraints.Constraint):
    """Projects the stacked CH-NODE K onto the set where Theorem 1 holds.

    With c1 = kappa + min_k lambda_min(L_k^T L_k) and a fixed L, Theorem 1
    (shared/DESIGN.md) holds for ``gamma`` iff c2 / c1 <= q_max, i.e. iff
    every step obeys S ||K_k||_2^2 <= q_max c1 - kappa - ||L_k||_2^2.  The
    projection clips the singular values of each K_k to that radius
    (``SpectralNormClip``): the Frobenius-nearest K satisfying Theorem 1.

    With ``gamma=None`` ("auto" gamma, recomputed from the weights) the same
    projection caps 1 - alpha^2 >= min(2 eps, (1 + eps) / 2) so that the auto
    gamma stays finite.

    Args:
        kappa: kappa > 0.
        eps: eps of Theorem 1.
        slope_bound: S, the activation's slope bound.
        gamma: the fixed gamma, or None for the "auto" cap.
        j2: lambda_max(J J^T) (1 for the canonical J).
        L: the fixed stacked L, shape (W, p, n) (nested lists), or None for L = 0.
        spatial_shape: for convolutional K (W, kh, kw, n, m), the (H, W) grid:
            each K_k is then scaled so that its circulant-bound operator norm
            fits the budget (``bounds.operator_norms.scale_conv_to_norms``).

    Raises:
        ValueError: a gamma that Theorem 1 cannot reach with these L, kappa, eps.
    """

    def __init__(self, kappa, eps, slope_bound=1.0, gamma=None, j2=1.0, L=None,
                 spatial_shape=None):
        self.spatial_shape = None if spatial_shape is None else [int(v) for v in spatial_shape]
        self.kappa = float(kappa)
        self.eps = float(eps)
        self.slope_bound = float(slope_bound)
        self.gamma = None if gamma is None else float(gamma)
        self.j2 = float(j2)
        self.L = None if L is None else np.asarray(L, np.float64).tolist()
        g = theorem1.ratio_threshold(self.eps, self.j2, self.gamma)
        if not (self.kappa > 0 and 0 < self.eps < 1 and g < 1.0):
            raise ValueError(
                f"GammaProjection: need kappa > 0, 0 < eps < 1 and gamma > "
                f"sqrt(eps j2 / (1 - eps)); got kappa={kappa}, eps={eps}, gamma={gamma}.")
        q_max = theorem1.max_ratio(g)
        if L is None:
            l_min, l_max = np.zeros(1), np.zeros(1)
        else:
            eig = np.linalg.eigvalsh(np.einsum("kpi,kpj->kij", np.asarray(L, np.float64),
                                               np.asarray(L, np.float64)))
            l_min, l_max = np.maximum(eig[:, 0], 0.0), eig[:, -1]
        c1 = self.kappa + float(np.min(l_min))
        self.squared_budget = ((q_max * c1 - self.kappa - l_max) / self.slope_bound).tolist()
        if min(self.squared_budget) < 0.0:
            raise ValueError(
                f"gamma={gamma} is unreachable with this L and kappa={kappa}: even "
                f"K = 0 violates Theorem 1 (budget for S ||K_k||^2 = "
                f"{min(self.squared_budget):.3g} < 0); raise gamma or kappa, lower "
                "eps, or use a better conditioned L.")
        self.max_norms = [float(np.sqrt(max(x, 0.0))) for x in self.squared_budget]

    def __call__(self, w):
        if self.spatial_shape is None:
            return clip_singular_values(w, self.max_norms)
        return scale_conv_to_norms(w, self.max_norms, self.spatial_shape)

    def get_config(self):
        config = {"kappa": self.kappa, "eps": self.eps, "slope_bound": self.slope_bound,
                  "gamma": self.gamma, "j2": self.j2, "L": self.L}
        if self.spatial_shape is not None:
            config["spatial_shape"] = self.spatial_shape
        return config
