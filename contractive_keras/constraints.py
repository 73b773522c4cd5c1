"""Keras constraints that restore the layers' guarantees after every step.

Keras applies ``variable.constraint`` right after each optimizer update
(``optimizer.apply_gradients``), under ``model.fit``, custom training loops and
``tf.distribute`` strategies alike, so the guarantees of the layers live here:

* CH-NODE: the gamma / spectral constraints that keep Theorem 1 true
  (shared/DESIGN.md, "CH-NODE");
* the layers around an ODE block: ``SpectralNormClip`` (dense kernels) and
  ``ConvNormClip`` (convolutions), so a whole network has a certified
  Lipschitz bound;
* stabilized NODE: ``DeltaBarProjection``, the minimal Frobenius perturbation
  that brings delta = max_D mu_2(D A) down to delta_bar
  (shared/DESIGN.md, "Stabilized NODE").

Every class is registered with
``keras.saving.register_keras_serializable(package="contractive_keras")``.
"""

import keras

# --- CH-NODE constraints -----------------------------------------------------
# gamma="auto" needs no gamma variable: CHNODE.call recomputes gamma from the
# current K, L, kappa (Theorem 1, float64, rounded up), so it is consistent
# after every optimizer step, set_weights, .keras loads and inside exported
# SavedModels.  GammaProjection keeps K in the Theorem 1 set of a fixed gamma
# (or, for "auto", caps alpha so that gamma stays finite).


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
class ConvNormClip(keras.constraints.Constraint):
    """Bounds the l2 operator norm of a 2-D convolution by ``max_norm``.

    For a kernel K of shape (kh, kw, cin, cout), any stride >= 1 and zero
    padding: conv(x) = P(x) K_mat with K_mat = K as a (kh kw cin, cout)
    matrix and P(x) the patches of x (im2col), in which each input value
    appears at most kh kw times, so ||P(x)||_F <= sqrt(kh kw) ||x||_2 and

        ||conv(x) - conv(y)||_2 <= sqrt(kh kw) ||K_mat||_2 ||x - y||_2.

    The constraint clips the singular values of K_mat at
    max_norm / sqrt(kh kw) (the Frobenius-nearest such kernel), so the
    convolution is max_norm-Lipschitz.  ``certify.lipschitz_bound`` then
    measures the exact (circulant) norm, which is at most this.

    Example:

    >>> import numpy as np
    >>> k = ConvNormClip(1.0)(np.ones((3, 3, 1, 4), "float32"))
    >>> bool(3 * np.linalg.norm(k.numpy().reshape(9, 4), 2) <= 1.0)
    True
    """

    def __init__(self, max_norm):
        self.max_norm = float(max_norm)
        if not self.max_norm > 0:
            raise ValueError(f"max_norm must be > 0, got {max_norm}.")

    def __call__(self, w):
        import tensorflow as tf

        value = tf.convert_to_tensor(w)
        if value.shape.rank != 4:
            raise ValueError(f"ConvNormClip takes a (kh, kw, cin, cout) Conv2D kernel, "
                             f"got shape {value.shape}.")
        kh, kw, cin, cout = value.shape
        matrix = tf.reshape(value, (kh * kw * cin, cout))
        clipped = _clip_singular_values(matrix, self.max_norm / (kh * kw) ** 0.5)
        return tf.reshape(clipped, tf.shape(value))

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
        if min(self.squared_budget) < 0.0:
            raise ValueError(
                f"gamma={gamma} is unreachable with this L and kappa={kappa}: even "
                f"K = 0 violates Theorem 1 (budget for S ||K_k||^2 = "
                f"{min(self.squared_budget):.3g} < 0); raise gamma or kappa, lower "
                "eps, or use a better conditioned L.")
        self.max_norms = [float(np.sqrt(max(x, 0.0))) for x in self.squared_budget]

    def __call__(self, w):
        return _clip_singular_values(w, self.max_norms)

    def get_config(self):
        return {"kappa": self.kappa, "eps": self.eps, "slope_bound": self.slope_bound,
                "gamma": self.gamma, "j2": self.j2, "L": self.L}


# --- Stabilized-NODE constraints ---------------------------------------------


@keras.saving.register_keras_serializable(package="contractive_keras")
class DeltaBarProjection(keras.constraints.Constraint):
    """Projects a square kernel A onto a certified set {delta(A) <= delta_bar}.

    shared/DESIGN.md, "Stabilized NODE": delta(A) = max over D = diag in
    [alpha, 1]^d of mu_2(D A) bounds the flow of u' = sigma(A u + b) as
    Lip <= exp(delta t1).  After every optimizer step this replaces A by
    A + Delta so that a *certified upper bound* of delta (the relaxation of
    ``stability.delta(..., method="upper")``; for d = 64 no exact value is
    affordable) is <= delta_bar.  For a positive diagonal T (the warm-started
    state) the certified set is a weighted spectral-norm ball
    ||L (A - B0) W||_2 <= 1 (L, W, B0 diagonal, see ``_stability_tf``), and
    Delta is the exact projection onto it in the metric ||L Delta W||_F: one
    eigendecomposition of a d x d matrix per step, float64, in graph mode,
    XLA-compatible, under any tf.distribute strategy.  (The Frobenius-minimal
    perturbation is ``stability.min_perturbation``; the benchmarks report the
    ratio of the two norms.)  T is improved at the current kernel every
    ``refresh_every`` calls by descent steps that keep the kernel certified,
    and re-optimised when the kernel is far outside the ball (first step,
    weights loaded or set by hand).

    With ``step_size=h`` the projection also covers the explicit Euler
    discretisation: the certified set becomes max_D ||I + h D A||_2 <=
    1 + h delta_bar, which bounds the Lipschitz constant of N Euler steps by
    (1 + h delta_bar)^N <= exp(delta_bar t1) and delta by delta_bar.

    Args:
        alpha: slope lower bound of the activation, in (0, 1].
        delta_bar: target bound on delta (finite).
        step_size: None (certify the ODE flow) or the Euler step h of the
            layer (certify the computed map as well).
        reoptimize_iterations: eigendecompositions spent re-optimising T
            when the kernel is far outside the current ball.
        refresh_every, refresh_iterations: every ``refresh_every`` calls, T
            is improved by ``refresh_iterations`` descent steps (one
            eigendecomposition each) at the new kernel.

    Example:

    >>> import numpy as np
    >>> from contractive_keras import stability
    >>> A = np.random.default_rng(0).normal(size=(6, 6)).astype("float32")
    >>> B = np.asarray(DeltaBarProjection(alpha=0.1, delta_bar=0.0)(A))
    >>> bool(stability.delta(B, 0.1, "upper").value <= 1e-6)
    True
    """

    def __init__(self, alpha, delta_bar, step_size=None, reoptimize_iterations=40,
                 refresh_every=25, refresh_iterations=8):
        import math

        from contractive_keras import _stability_bounds as bounds

        self.alpha = bounds.check_alpha(alpha)
        self.delta_bar = bounds.check_delta_bar(delta_bar)
        if not math.isfinite(self.delta_bar):
            raise ValueError(f"DeltaBarProjection needs a finite delta_bar, got {delta_bar!r}.")
        self.step_size = None if step_size is None else bounds.check_step(step_size)
        if self.step_size is not None:
            # min over A of max_D ||I + h D A||_2 is (1 - alpha) / (1 + alpha).
            floor = (1 - self.alpha) / (1 + self.alpha)
            if 1 + self.step_size * self.delta_bar <= floor * (1 + 1e-6):
                raise ValueError(
                    f"No kernel reaches delta_bar = {self.delta_bar} for Euler steps of size "
                    f"{self.step_size} with alpha = {self.alpha}: every A has max_D "
                    f"||I + h D A||_2 >= (1 - alpha)/(1 + alpha) = {floor:.6g} > "
                    f"1 + h delta_bar.")
        self.reoptimize_iterations = int(reoptimize_iterations)
        self.refresh_every = int(refresh_every)
        self.refresh_iterations = int(refresh_iterations)
        if self.refresh_every < 1 or self.refresh_iterations < 0 or self.reoptimize_iterations < 0:
            raise ValueError("refresh_every must be >= 1 and the iteration counts >= 0.")
        self._state = None

    def build(self, shape):
        """Creates the warm-start state (call under the strategy's scope)."""
        import tensorflow as tf

        d = int(shape[-1])
        if len(shape) != 2 or int(shape[0]) != d:
            raise ValueError(f"DeltaBarProjection needs a square kernel, got shape {tuple(shape)}.")
        if self._state is None:
            options = dict(trainable=False, synchronization=tf.VariableSynchronization.ON_READ,
                           aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
            self._state = (tf.Variable(tf.zeros([d], tf.float64), name="delta_bar_log_scaling",
                                       **options),
                           tf.Variable(False, name="delta_bar_initialized", **options),
                           tf.Variable(tf.zeros([], tf.int64), name="delta_bar_calls", **options))

    def scaling(self):
        """The current diagonal T of the certificate (NumPy), or None."""
        if self._state is None or not bool(self._state[1].numpy()):
            return None
        import numpy as np

        return np.exp(self._state[0].numpy())

    def __call__(self, w):
        import tensorflow as tf

        from contractive_keras import _stability_tf

        value = tf.convert_to_tensor(w)
        shape = value.shape
        if shape.rank != 2 or shape[0] != shape[1] or shape[0] is None:
            raise ValueError(f"DeltaBarProjection needs a square kernel, got shape {shape}.")
        if self._state is None and (not tf.distribute.has_strategy()
                                    or tf.distribute.in_cross_replica_context()):
            with tf.init_scope():
                self.build(shape)
        geometry = _stability_tf.Geometry(self.alpha, self.delta_bar, self.step_size)
        options = dict(reopt_iterations=self.reoptimize_iterations,
                       refresh_iterations=self.refresh_iterations)
        if self._state is None:
            B, _ = _stability_tf.projection(geometry, value, tf.ones([shape[0]], tf.float64),
                                            value.dtype, initialized=False,
                                            refresh=tf.constant(False), **options)
            return tf.cast(B, value.dtype)
        log_t, initialized, calls = self._state
        refresh = tf.equal(calls % self.refresh_every, self.refresh_every - 1)
        B, t = _stability_tf.projection(geometry, value, tf.exp(log_t), value.dtype,
                                        initialized=tf.convert_to_tensor(initialized),
                                        refresh=refresh, **options)
        log_t.assign(tf.math.log(t))
        initialized.assign(True)
        calls.assign_add(1)
        return tf.cast(B, value.dtype)

    def get_config(self):
        return {"alpha": self.alpha, "delta_bar": self.delta_bar, "step_size": self.step_size,
                "reoptimize_iterations": self.reoptimize_iterations,
                "refresh_every": self.refresh_every,
                "refresh_iterations": self.refresh_iterations}
