"""Keras constraints that restore the layers' guarantees after every step.

Keras applies ``variable.constraint`` right after each optimizer update
(``optimizer.apply_gradients``), under ``model.fit``, custom training loops and
``tf.distribute`` strategies alike, so the guarantees of the layers live here:

* CH-NODE: the gamma / spectral constraints that keep Theorem 1 true
  (shared/DESIGN.md, "CH-NODE");
* stabilized NODE: ``DeltaBarProjection``, the minimal Frobenius perturbation
  that brings delta = max_D mu_2(D A) down to delta_bar
  (shared/DESIGN.md, "Stabilized NODE").

Every class is registered with
``keras.saving.register_keras_serializable(package="contractive_keras")``.
"""

import keras

# --- CH-NODE constraints -----------------------------------------------------


def _clip_singular_values(stacked, max_norms):
    """Frobenius projection of each slice W_k onto {||W_k||_2 <= max_norms[k]}.

    The SVD and the reconstruction run in float64; a slice already inside
    its ball is returned unchanged (bit for bit).  The target is shrunk by
    a few units of the variable's dtype so that the rounded result is inside.
    """
    import numpy as np
    import tensorflow as tf

    value = tf.convert_to_tensor(stacked)
    dtype = value.dtype
    w = tf.cast(value, tf.float64)
    if w.shape.rank == 2:
        w = w[None]
    rows = min(w.shape[-2], w.shape[-1])
    margin = 1.0 - 4.0 * float(np.finfo(dtype.as_numpy_dtype).eps) * np.sqrt(rows)
    target = tf.constant(np.asarray(max_norms, np.float64) * margin, tf.float64)
    target = tf.broadcast_to(target, tf.shape(w)[:1])

    # Cheapest test first: ||W||_2 <= ||W||_F.  Then the largest eigenvalue of
    # W^T W (relative error ~1e-15); the SVD runs only for a slice outside.
    def check_spectral():
        gram = tf.matmul(w, w, transpose_a=True)
        norm = tf.sqrt(tf.maximum(tf.reduce_max(tf.linalg.eigvalsh(gram), axis=-1), 0.0))
        inside = norm * (1.0 + 1e-13) <= target

        def project():
            s, u, v = tf.linalg.svd(w)
            clipped = tf.minimum(s, target[:, None])
            projected = tf.matmul(u * clipped[:, None, :], v, adjoint_b=True)
            return tf.where(inside[:, None, None], w, projected)

        return tf.cond(tf.reduce_all(inside), lambda: w, project)

    frobenius = tf.sqrt(tf.reduce_sum(tf.square(w), axis=[-2, -1]))
    out = tf.cond(tf.reduce_all(frobenius * (1.0 + 1e-13) <= target), lambda: w,
                  check_spectral)
    return tf.reshape(tf.cast(out, dtype), tf.shape(value))


@keras.saving.register_keras_serializable(package="contractive_keras")
class SpectralNormClip(keras.constraints.Constraint):
    """Clips the singular values of every slice of a stacked (W, m, n) weight.

    The result is the Frobenius-nearest matrix with ||W_k||_2 <= max_norm_k
    (Eckart-Young / Mirsky), computed slice by slice.

    Args:
        max_norm: a float, or one float per slice.

    Example:

    >>> import numpy as np
    >>> w = SpectralNormClip(1.0)(np.diag([3.0, 0.5]).astype("float32"))
    >>> float(np.linalg.norm(w, 2)) <= 1.0
    True
    """

    def __init__(self, max_norm):
        if isinstance(max_norm, (list, tuple)):
            self.max_norm = [float(x) for x in max_norm]
        else:
            self.max_norm = float(max_norm)
        if min(self.max_norm if isinstance(self.max_norm, list) else [self.max_norm]) < 0:
            raise ValueError(f"max_norm must be >= 0, got {max_norm}.")

    def __call__(self, w):
        return _clip_singular_values(w, self.max_norm)

    def get_config(self):
        return {"max_norm": self.max_norm}


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

    Raises:
        ValueError: a gamma that Theorem 1 cannot reach with these L, kappa, eps.
    """

    def __init__(self, kappa, eps, slope_bound=1.0, gamma=None, j2=1.0, L=None):
        import numpy as np

        from contractive_keras.layers import _hamiltonian_bounds as bounds

        self.kappa = float(kappa)
        self.eps = float(eps)
        self.slope_bound = float(slope_bound)
        self.gamma = None if gamma is None else float(gamma)
        self.j2 = float(j2)
        self.L = None if L is None else np.asarray(L, np.float64).tolist()
        g = bounds.ratio_threshold(self.eps, self.j2, self.gamma)
        if not (self.kappa > 0 and 0 < self.eps < 1 and g < 1.0):
            raise ValueError(
                f"GammaProjection: need kappa > 0, 0 < eps < 1 and gamma > "
                f"sqrt(eps j2 / (1 - eps)); got kappa={kappa}, eps={eps}, gamma={gamma}.")
        q_max = bounds.max_ratio(g)
        if L is None:
            l_min, l_max = np.zeros(1), np.zeros(1)
        else:
            eig = np.linalg.eigvalsh(np.einsum("kpi,kpj->kij", np.asarray(L, np.float64),
                                               np.asarray(L, np.float64)))
            l_min, l_max = np.maximum(eig[:, 0], 0.0), eig[:, -1]
        c1 = self.kappa + float(np.min(l_min))
        self.squared_budget = ((q_max * c1 - self.kappa - l_max) / self.slope_bound).tolist()
        self.max_norms = [float(np.sqrt(max(x, 0.0))) for x in self.squared_budget]

    def __call__(self, w):
        return _clip_singular_values(w, self.max_norms)

    def get_config(self):
        return {"kappa": self.kappa, "eps": self.eps, "slope_bound": self.slope_bound,
                "gamma": self.gamma, "j2": self.j2, "L": self.L}


# --- Stabilized-NODE constraints ---------------------------------------------
