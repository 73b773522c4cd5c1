"""CHNODE: the contractive Hamiltonian neural ODE layer (shared/DESIGN.md, "CH-NODE")."""

import keras
import numpy as np

from contractive_keras.bounds import theorem1 as bounds
from contractive_keras.bounds.jacobian_structure import JacobianStructure
from contractive_keras.constraints.gamma_projection import GammaProjection
from contractive_keras.layers import dispatch
from contractive_keras.layers.initializers import StepwiseIdentity
from contractive_keras.layers.kb_field import KbFieldOptions
from contractive_keras.layers.kb_field import serialize
from contractive_keras.layers.per_step_ode import PerStepODE
from contractive_keras.layers.structure_matrix import check_skew
from contractive_keras.layers.structure_matrix import structure_matrix as make_structure_matrix

DISCRETE_CHECKS = ("warn", "raise", "ignore")


@keras.saving.register_keras_serializable(package="contractive_keras")
class CHNODE(KbFieldOptions, PerStepODE):
    """Contractive Hamiltonian neural ODE on the last axis.

    Integrates, for every vector xi in R^n along the last axis (so (batch, n)
    vectors, or (batch, h, w, n) feature maps like a 1x1 convolution),

        xi' = (J - gamma I) ( K_k^T sigma(K_k xi + b_k) + (L_k^T L_k + kappa I) xi ),

    with piecewise-constant weights (K_k, b_k, L_k on step k, or shared), from
    t = 0 to T = N h with a fixed-step scheme (default forward Euler).  K is
    the ``kernel``, b the ``bias``, L the ``dissipation`` (L^T L + kappa I
    is the dissipation term) and J the skew-symmetric ``structure_matrix``.

    Guarantees (DESIGN, Theorems 1-2), kept exactly in the layer's dtype:

    * ``gamma="auto"``: gamma is recomputed inside ``call`` from the current
      weights as the smallest value allowed by Theorem 1,
      gamma = sqrt((alpha^2 + eps) lambda_max(J J^T) / (1 - alpha^2 - eps)),
      computed in float64 and rounded up (no gradient flows through gamma,
      as in the reference, which recomputes it after every step).  So it is
      consistent after any optimizer step, ``set_weights``, a ``.keras`` load
      or inside an exported SavedModel.
    * ``gamma=<float>``: gamma is fixed and K is projected after every
      optimizer step (``constraints.GammaProjection``: per-step singular
      values clipped, the Frobenius-nearest point) onto the set where that
      gamma satisfies Theorem 1.  Needs a fixed L
      (``dissipation_trainable=False``).
    * In both modes ``call`` rescales any K_k outside that set (a cap on
      alpha in "auto" mode keeps gamma finite); after the
      projection this is a multiplication by exactly 1.  The cap of "auto"
      mode is 1 - alpha^2 >= min(2 eps, (1 + eps) / 2).

    The continuous guarantee (||d xi(T) / d xi(0)||_2 <= 1) does NOT carry
    over to the discrete scheme for every h.  The layer describes its
    Jacobian (``jacobian_structure``); ``certify.layer_certificate`` bounds
    the map it computes, and ``certify.check_discretization`` warns (per
    ``discrete_check``: by default) or raises when that map is not certified
    non-expansive. ``models.build``, train.py, ``certify.summary`` and
    ``callbacks.BSMLogger`` run that check; the layer never certifies itself.

    Args:
        solver: None (4 forward-Euler steps of h = 0.5, the reference), a
            method name ("euler", "midpoint", "rk4"; adaptive "dopri5",
            "tfp_dopri5", "bdf" need ``time_varying=False``) completed by
            those defaults, or a ``solvers.SolverSpec(method, steps=N,
            step_size=h or t1=T, gradient=..., rtol=..., atol=...)``; see
            ``PerStepODE``.
        activation: a name with a known slope bound (tanh: S = 1, sigmoid:
            1/4, relu, softplus, ...) or a callable with
            ``activation_slope_bound``.
        activation_slope_bound: S with 0 <= sigma' <= S (custom activations).
        units: rows m of K (default n).
        kappa: kappa > 0 of the dissipation term.
        gamma: "auto" or a float > 0 held fixed.
        eps: epsilon of Theorems 1-2, 0 < eps < 1 - alpha^2.
        structure_matrix: J; None (canonical [[0, I], [-I, 0]], even n) or a
            skew-symmetric (n, n) matrix.
        time_varying: per-step K_k, b_k, L_k (reference) or shared ones.
        return_trajectory: output (batch, N + 1, ..., n), the states at t_k.
        kernel_initializer, bias_initializer, dissipation_initializer:
            initializers of the stacked (W, m, n) K, (W, m) b and (W, p, n)
            L, W = N or 1 (L default: ``StepwiseIdentity(0.02)``).
        kernel_regularizer, bias_regularizer, dissipation_regularizer:
            regularizers of them (e.g.
            ``contractive_keras.regularizers.PiecewiseSmoothness``).
        kernel_constraint: a constraint of K; only with a trainable L (a
            fixed L gives K the ``GammaProjection`` of Theorem 1).
        bias_constraint: a constraint of b.
        dissipation_trainable: False fixes L at its initial value
            (reference: 0.02 I).
        dissipation_units: rows p of L (default n).
        discrete_check: what ``certify.check_discretization`` does when the
            computed map is not certified non-expansive: "warn", "raise" or
            "ignore".
        kernel_size: None (K acts on each vector of the last axis, the
            reference) or an odd int / pair: K is then a stride-1 "same"
            convolution over feature maps (batch, H, W, n) that mixes
            neighbouring pixels, K^T its adjoint; Theorem 1's c2 uses its
            operator norm on the H x W grid (circulant bound), and the
            certificate of the computed map uses Theorem 1's worst-case
            Euler step, which depends only on c1, c2, gamma and J.
        **kwargs: Keras layer arguments (name, dtype, ...).

    Configs saved with the old names load: loose ``steps``, ``step_size``,
    ``t1``, ``gradient``, ``rtol``, ``atol`` (into the ``SolverSpec``),
    ``K_*``/``b_*`` (``kernel_*``/``bias_*``), ``L_initializer``,
    ``L_regularizer``, ``L_trainable``, ``L_units`` (``dissipation_*``) and
    ``J`` (``structure_matrix``).

    Input shape:
        (batch, ..., n), n even with the canonical J; (batch, H, W, n) with
        ``kernel_size``.

    Output shape:
        Same as the input, or (batch, N + 1, ..., n) with
        ``return_trajectory=True``.

    Example:

    >>> import numpy as np
    >>> from contractive_keras.solvers import SolverSpec
    >>> layer = CHNODE(SolverSpec("euler", steps=4, step_size=0.1), gamma=2.0,
    ...                discrete_check="ignore")
    >>> tuple(layer(np.zeros((2, 4), "float32")).shape)
    (2, 4)
    """

    legacy_names = {
        **KbFieldOptions.legacy_names, "J": "structure_matrix",
        "L_initializer": "dissipation_initializer", "L_regularizer": "dissipation_regularizer",
        "L_trainable": "dissipation_trainable", "L_units": "dissipation_units",
    }

    def __init__(self, solver=None, *, units=None, kappa=1e-6, gamma="auto", eps=1e-6,
                 structure_matrix=None, dissipation_initializer=None, dissipation_regularizer=None,
                 dissipation_trainable=False, dissipation_units=None, discrete_check="warn",
                 kernel_size=None, **kwargs):
        super().__init__(solver, **kwargs)   # the K, b and activation options: KbFieldOptions
        kappa = float(kappa)
        if not kappa > 0.0:
            raise ValueError(f"kappa must be > 0 (Theorem 1 needs c1 > 0), got {kappa}.")
        eps = float(eps)
        if not 0.0 < eps < 1.0:
            raise ValueError(f"eps must lie in (0, 1 - alpha^2) subset (0, 1), got {eps}.")
        if isinstance(gamma, str):
            if gamma != "auto":
                raise ValueError(f"gamma must be 'auto' or a float > 0, got {gamma!r}.")
        else:
            gamma = float(gamma)
            if not gamma > 0.0:
                raise ValueError(f"gamma must be 'auto' or a float > 0, got {gamma}.")
            if bool(dissipation_trainable):
                raise ValueError(
                    "a fixed gamma needs a fixed L (dissipation_trainable=False): the "
                    "projection that keeps Theorem 1 acts on K given L; use "
                    "gamma='auto' to train L.")
        if self.kernel_constraint is not None and not bool(dissipation_trainable):
            raise ValueError(
                f"kernel_constraint={self.kernel_constraint!r} needs dissipation_trainable=True: "
                "with a fixed L, K carries the GammaProjection that keeps Theorem 1.")
        if discrete_check not in DISCRETE_CHECKS:
            raise ValueError(
                f"discrete_check={discrete_check!r}; allowed: {DISCRETE_CHECKS}.")
        self.kappa = kappa
        self.eps = eps
        self.gamma = gamma
        self.structure_matrix = None if structure_matrix is None else check_skew(
            structure_matrix)
        self.units = None if units is None else int(units)
        self.dissipation_units = None if dissipation_units is None else int(dissipation_units)
        self.dissipation_initializer = keras.initializers.get(
            dissipation_initializer if dissipation_initializer is not None
            else StepwiseIdentity(0.02))
        self.dissipation_regularizer = keras.regularizers.get(dissipation_regularizer)
        self.dissipation_trainable = bool(dissipation_trainable)
        self.discrete_check = discrete_check
        if kernel_size is not None:
            size = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
            size = tuple(int(v) for v in size)
            if len(size) != 2 or min(size) < 1 or not all(v % 2 for v in size):
                raise ValueError(f"kernel_size must be an odd int or a pair of odd ints "
                                 f"(a 'same' convolution), got {kernel_size!r}.")
            kernel_size = size
        self.kernel_size = kernel_size
        self.spatial_shape = None

    # -- weights -------------------------------------------------------------
    def build(self, input_shape):
        if self.kernel_size is not None:
            if len(input_shape) != 4 or None in tuple(input_shape)[1:]:
                raise ValueError(
                    f"kernel_size={self.kernel_size}: a convolutional CHNODE takes feature "
                    f"maps (batch, H, W, n) with known H, W, n; got {tuple(input_shape)}.")
            self.spatial_shape = (int(input_shape[1]), int(input_shape[2]))
        super().build(input_shape)

    def build_field(self, n):
        J = make_structure_matrix(self.structure_matrix, n)
        self.J_matrix = J
        self.j2 = float(np.max(np.linalg.eigvalsh(J @ J.T)))
        fixed = None if self.gamma == "auto" else self.gamma
        g = bounds.ratio_threshold(self.eps, self.j2, fixed)
        if not g < 1.0:
            lowest = np.sqrt(self.eps * self.j2 / (1.0 - self.eps))
            raise ValueError(
                f"gamma={self.gamma} is unreachable: Theorem 1 needs gamma > "
                f"sqrt(eps lambda_max(J J^T) / (1 - eps)) = {lowest:.6g} even "
                "with alpha = 0; raise gamma or lower eps.")
        self.max_ratio = bounds.max_ratio(g)
        m = self.units or n
        p = self.dissipation_units or n
        self.L = self.add_step_weight(
            "L", (p, n), self.dissipation_initializer, self.dissipation_regularizer,
            trainable=self.dissipation_trainable)
        constraint = self.kernel_constraint
        if not self.dissipation_trainable:
            constraint = GammaProjection(
                kappa=self.kappa, eps=self.eps, slope_bound=self.slope_bound,
                gamma=fixed, j2=self.j2, L=dispatch.to_numpy(self.L).tolist(),
                spatial_shape=self.spatial_shape)
        K_shape = (m, n) if self.kernel_size is None else self.kernel_size + (n, m)
        self.K = self.add_step_weight(
            "K", K_shape, self.kernel_initializer, self.kernel_regularizer,
            constraint=constraint)
        self.b = self.add_step_weight(
            "b", (m,), self.bias_initializer, self.bias_regularizer, self.bias_constraint)
        if fixed is not None:
            self.K.assign(constraint(self.K))
            return
        K, L = dispatch.concrete_numpy(self.K), dispatch.concrete_numpy(self.L)
        if K is not None and L is not None:     # not inside a traced graph
            c1, c2 = bounds.c1_c2_numpy(K, L, self.kappa, self.slope_bound, self.spatial_shape)
            gap = float(bounds.one_minus_alpha_sq(c1, c2))
            if not gap > self.eps:
                raise ValueError(
                    f"eps={self.eps} must lie in (0, 1 - alpha^2) = (0, {gap:.6g}) "
                    "for the initial weights (alpha from c1, c2 of Theorem 1); "
                    "lower eps or initialize K smaller.")

    # -- Theorem 1 in the graph --------------------------------------------
    def _scale_and_gamma(self):
        """Constants of ``call`` (no gradient): per-step K factors and gamma."""
        Ks = keras.ops.stop_gradient(keras.ops.convert_to_tensor(self.K))
        Ls = keras.ops.stop_gradient(keras.ops.convert_to_tensor(self.L))
        dtype = self.compute_dtype
        factor, (c1, c2) = bounds.K_scale_to_cap(
            Ks, Ls, self.kappa, self.slope_bound, self.max_ratio,
            keras.backend.standardize_dtype(Ks.dtype), self.spatial_shape)
        if self.gamma == "auto":
            gamma64 = bounds.theorem1_gamma(c1, c2, self.eps, self.j2)
            gamma = keras.ops.stop_gradient(bounds.round_up(gamma64, dtype))
        else:
            gamma = keras.ops.convert_to_tensor(self.gamma, dtype)
        return keras.ops.stop_gradient(factor), gamma

    def effective_weights(self):
        """(K, b, L, gamma) used by ``call``: K inside the Theorem 1 set, gamma."""
        factor, gamma = self._scale_and_gamma()
        dtype = self.compute_dtype
        K = keras.ops.convert_to_tensor(self.K) * factor
        b, L = (keras.ops.convert_to_tensor(w) for w in (self.b, self.L))
        return (keras.ops.cast(K, dtype), keras.ops.cast(b, dtype), keras.ops.cast(L, dtype),
                gamma)

    def _field_operators(self):
        """(K factors, A = J - gamma I, kappa I) in the compute dtype, for ``call``."""
        factor, gamma = self._scale_and_gamma()
        dtype = self.compute_dtype
        n = self.state_size
        A = (keras.ops.convert_to_tensor(self.J_matrix, dtype)
             - gamma * keras.ops.eye(n, dtype=dtype))
        return factor, A, self.kappa * keras.ops.eye(n, dtype=dtype)

    def field_closure(self):
        if self.kernel_size is not None:
            return self._conv_field_closure()
        factor, A, kappa_eye = self._field_operators()
        dtype = self.compute_dtype
        sigma = self.activation_fn

        def matrices(K, b, L):
            # Column form on the state Xi (n, rows):
            #   f = (A K^T) sigma(K Xi + b) + (A M) Xi,  M = L^T L + kappa I.
            K = keras.ops.cast(K, dtype)
            L = keras.ops.cast(L, dtype)
            M = dispatch.matmul(L, L, transpose_a=True) + kappa_eye
            return (K, keras.ops.expand_dims(keras.ops.cast(b, dtype), -1),
                    dispatch.matmul(A, K, transpose_b=True), dispatch.matmul(A, M))

        def apply(K, b, W_act, W_lin, y):
            return (dispatch.matmul(W_act, sigma(dispatch.matmul(K, y) + b))
                    + dispatch.matmul(W_lin, y))

        if self.gradient == "backprop":
            stacked = matrices(keras.ops.convert_to_tensor(self.K) * factor, self.b, self.L)

            def field(t, y, step):
                return apply(*(self.select(w, step) for w in stacked), y)
        else:
            # "checkpoint" / "adjoint" differentiate only variables read inside fn.
            def field(t, y, step):
                K = self.select(self.K, step) * self.select(factor, step)
                return apply(*matrices(K, self.select(self.b, step), self.select(self.L, step)), y)

        return field

    def _conv_field_closure(self):
        """The field on feature maps Xi (batch, H, W, n): K a 'same' convolution.

        f = A (K^T sigma(K Xi + b) + M Xi), A = J - gamma I and M = L^T L + kappa I
        acting on the channels of every pixel, K^T the adjoint convolution.
        """
        factor, A, kappa_eye = self._field_operators()
        dtype = self.compute_dtype
        sigma = self.activation_fn

        def field(t, y, step):
            K = keras.ops.cast(self.select(self.K, step) * self.select(factor, step), dtype)
            b = keras.ops.cast(self.select(self.b, step), dtype)
            L = keras.ops.cast(self.select(self.L, step), dtype)
            M = dispatch.matmul(L, L, transpose_a=True) + kappa_eye
            z = sigma(keras.ops.conv(y, K, strides=1, padding="same") + b)
            # K^T, the adjoint of the stride-1 "same" convolution.
            back = keras.ops.conv_transpose(z, K, strides=1, padding="same")
            # Per pixel: A (back + M y); M is symmetric.
            return keras.ops.einsum("...i,ji->...j",
                                    back + keras.ops.einsum("...i,ji->...j", y, M), A)

        return field

    def call(self, inputs):
        if self.kernel_size is None:
            return super().call(inputs)
        x = keras.ops.convert_to_tensor(inputs, dtype=self.compute_dtype)
        field = self.field_closure()
        if not self.return_trajectory:
            return self.solver_spec.odeint(field, x, with_step_index=True)
        return self.batch_major(self.solver_spec.odeint(field, x, times=self.solver_spec.times,
                                                        with_step_index=True))

    # -- certificates --------------------------------------------------------
    def theorem1_constants(self):
        """Floats of Theorems 1-2 for the current weights (a dict).

        c1, c2, alpha, one_minus_alpha_sq, beta, gamma (the value ``call``
        uses), gamma_min (Theorem 1's bound), eps, kappa, j2 =
        lambda_max(J J^T), slope_bound and rho, the contraction rate of
        Theorem 2, rho = eps beta (gamma^2 + j2) / gamma (plus max_ratio with
        a fixed gamma): ``bounds.theorem1.constants`` of the weights.
        """
        K, _, L, gamma = self.effective_weights()
        return self._constants(K, L, gamma).as_dict()

    def _constants(self, K, L, gamma):
        return bounds.constants(K, L, self.kappa, self.slope_bound, self.eps, self.j2, gamma,
                                max_ratio=None if self.gamma == "auto" else self.max_ratio,
                                spatial=self.spatial_shape)

    def jacobian_structure(self):
        """``JacobianStructure`` of the field with the weights ``call`` uses.

        xi' = A (K^T sigma(K xi + b) + M xi), A = J - gamma I, M = L^T L + kappa I,
        so the Jacobian is A M + (A K^T) diag(s) K, s in [0, S]^m, with
        Theorem 1's constants attached.
        """
        K, _, L, gamma = self.effective_weights()
        constants = self._constants(K, L, gamma)
        scheme = self.solver if self.fixed_step else None
        if self.kernel_size is not None:
            # The Jacobian of a whole feature map is too large to enumerate:
            # certificates use Theorem 1's constants (c2 from the circulant norm).
            return JacobianStructure(
                offset=None, left=None, right=None, slopes=(0.0, self.slope_bound),
                steps=self.steps, step_size=self.step_size, t1=self.t1, scheme=scheme,
                theorem1=constants)
        K = dispatch.to_numpy(K, np.float64)
        L = dispatch.to_numpy(L, np.float64)
        n = self.state_size
        A = self.J_matrix - float(gamma) * np.eye(n)
        M = np.einsum("kpi,kpj->kij", L, L) + self.kappa * np.eye(n)
        Kt = np.transpose(K, (0, 2, 1))
        return JacobianStructure(
            offset=A @ M, left=A @ Kt, right=Kt, slopes=(0.0, self.slope_bound),
            steps=self.steps, step_size=self.step_size, t1=self.t1,
            scheme=scheme, theorem1=constants)

    def get_config(self):
        config = super().get_config()
        config.update({
            **self.field_options_config(),
            "kappa": self.kappa,
            "gamma": self.gamma,
            "eps": self.eps,
            "structure_matrix": None if self.structure_matrix is None
            else self.structure_matrix.tolist(),
            "units": self.units,
            "dissipation_initializer": serialize(self.dissipation_initializer),
            "dissipation_regularizer": serialize(self.dissipation_regularizer),
            "dissipation_trainable": self.dissipation_trainable,
            "dissipation_units": self.dissipation_units,
            "discrete_check": self.discrete_check,
            "kernel_size": None if self.kernel_size is None else list(self.kernel_size),
        })
        return config
