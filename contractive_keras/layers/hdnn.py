"""HDNN: the Hamiltonian deep neural network baseline (shared/DESIGN.md, "CH-NODE")."""

import keras
import numpy as np

from contractive_keras.bounds.jacobian_structure import JacobianStructure
from contractive_keras.layers import dispatch
from contractive_keras.layers.kb_field import KbFieldOptions
from contractive_keras.layers.per_step_ode import PerStepODE
from contractive_keras.layers.structure_matrix import check_skew
from contractive_keras.layers.structure_matrix import structure_matrix as make_structure_matrix


@keras.saving.register_keras_serializable(package="contractive_keras")
class HDNN(KbFieldOptions, PerStepODE):
    """Hamiltonian DNN (H_1-DNN) on the last axis: xi' = J K_k^T sigma(K_k xi + b_k).

    The same skeleton as ``CHNODE`` without the dissipation: the flow of the
    continuous ODE is marginally stable (non-vanishing gradients), with no
    contraction guarantee.  ``contractive_keras.certify.layer_certificate``
    still gives a certified Lipschitz bound of the discrete block.

    Args:
        solver: a method name or a ``solvers.SolverSpec`` (default: 4 Euler
            steps of h = 0.5); as for ``CHNODE``.
        activation, activation_slope_bound: as for ``CHNODE``.
        structure_matrix: J; None (canonical [[0, I], [-I, 0]], even n) or a
            skew-symmetric (n, n) matrix.
        units: rows m of K (default n).
        time_varying, return_trajectory: as for ``CHNODE``.
        kernel_initializer, bias_initializer, kernel_regularizer,
            bias_regularizer, kernel_constraint, bias_constraint: for the
            stacked (W, m, n) K and (W, m) b, W = N or 1.

    Input shape:
        (batch, ..., n).

    Output shape:
        Same, or (batch, N + 1, ..., n) with ``return_trajectory=True``.

    Example:

    >>> import numpy as np
    >>> from contractive_keras.solvers import SolverSpec
    >>> layer = HDNN(SolverSpec("euler", steps=2, step_size=0.25), units=6)
    >>> tuple(layer(np.zeros((3, 4), "float32")).shape)
    (3, 4)
    """

    legacy_names = {**KbFieldOptions.legacy_names, "J": "structure_matrix"}

    def __init__(self, solver=None, *, structure_matrix=None, units=None, **kwargs):
        super().__init__(solver, **kwargs)   # the K, b and activation options: KbFieldOptions
        self.structure_matrix = None if structure_matrix is None else check_skew(
            structure_matrix)
        self.units = None if units is None else int(units)

    def build_field(self, n):
        self.J_matrix = make_structure_matrix(self.structure_matrix, n)
        m = self.units or n
        self.K = self.add_step_weight("K", (m, n), self.kernel_initializer,
                                      self.kernel_regularizer, self.kernel_constraint)
        self.b = self.add_step_weight("b", (m,), self.bias_initializer, self.bias_regularizer,
                                      self.bias_constraint)

    def field_closure(self):
        dtype = self.compute_dtype
        J = keras.ops.convert_to_tensor(self.J_matrix, dtype)
        sigma = self.activation_fn

        def matrices(K, b):
            # Column form on the state Xi (n, rows): f = (J K^T) sigma(K Xi + b).
            K = keras.ops.cast(K, dtype)
            return (K, keras.ops.expand_dims(keras.ops.cast(b, dtype), -1),
                    dispatch.matmul(J, K, transpose_b=True))

        if self.gradient == "backprop":
            stacked = matrices(keras.ops.convert_to_tensor(self.K),
                               keras.ops.convert_to_tensor(self.b))

            def weights(step):
                return [self.select(w, step) for w in stacked]
        else:
            # "checkpoint" / "adjoint" differentiate only variables read inside fn.
            def weights(step):
                return matrices(self.select(self.K, step), self.select(self.b, step))

        def field(t, y, step):
            K, b, W_out = weights(step)
            return dispatch.matmul(W_out, sigma(dispatch.matmul(K, y) + b))

        return field

    def jacobian_structure(self):
        """``JacobianStructure``: the Jacobian is (J K^T) diag(s) K, s in [0, S]^m."""
        K = dispatch.to_numpy(self.K, np.float64)
        n = self.state_size
        Kt = np.transpose(K, (0, 2, 1))
        return JacobianStructure(
            offset=np.zeros((K.shape[0], n, n)), left=self.J_matrix @ Kt, right=Kt,
            slopes=(0.0, self.slope_bound), steps=self.steps, step_size=self.step_size,
            t1=self.t1, scheme=self.solver if self.fixed_step else None)

    def get_config(self):
        config = super().get_config()
        config.update({
            "structure_matrix": None if self.structure_matrix is None
            else self.structure_matrix.tolist(),
            "units": self.units,
            **self.field_options_config(),
        })
        return config
