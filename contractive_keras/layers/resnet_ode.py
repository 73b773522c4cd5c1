"""ResNetODE: the residual-network baseline xi' = sigma(K^T xi + b) (shared/DESIGN.md)."""

import keras
import numpy as np

from contractive_keras.bounds.jacobian_structure import JacobianStructure
from contractive_keras.layers import dispatch
from contractive_keras.layers.kb_field import KbFieldOptions
from contractive_keras.layers.per_step_ode import PerStepODE


@keras.saving.register_keras_serializable(package="contractive_keras")
class ResNetODE(KbFieldOptions, PerStepODE):
    """ResNet as an ODE on the last axis: xi' = sigma(K_k^T xi + b_k).

    With forward Euler and h, step k is the residual block
    xi + h sigma(K_k^T xi + b_k), i.e. the reference ResNet.  No stability
    guarantee; ``contractive_keras.certify.layer_certificate`` gives a
    certified Lipschitz bound of the discrete block.

    Args:
        solver: a method name or a ``solvers.SolverSpec`` (default: 4 Euler
            steps of h = 0.5); as for ``CHNODE``.
        activation, activation_slope_bound: as for ``CHNODE``.
        time_varying, return_trajectory: as for ``CHNODE``.
        kernel_initializer, bias_initializer, kernel_regularizer,
            bias_regularizer, kernel_constraint, bias_constraint: for the
            stacked (W, n, n) K and (W, n) b, W = N or 1.

    Input shape:
        (batch, ..., n).

    Output shape:
        Same, or (batch, N + 1, ..., n) with ``return_trajectory=True``.

    Example:

    >>> import numpy as np
    >>> from contractive_keras.solvers import SolverSpec
    >>> layer = ResNetODE(SolverSpec("euler", steps=2, step_size=0.25))
    >>> tuple(layer(np.zeros((3, 5), "float32")).shape)
    (3, 5)
    """

    def build_field(self, n):
        self.K = self.add_step_weight("K", (n, n), self.kernel_initializer,
                                      self.kernel_regularizer, self.kernel_constraint)
        self.b = self.add_step_weight("b", (n,), self.bias_initializer, self.bias_regularizer,
                                      self.bias_constraint)

    def field_closure(self):
        dtype = self.compute_dtype
        sigma = self.activation_fn

        def matrices(K, b):
            # Column form on the state Xi (n, rows): sigma(K^T Xi + b).
            return (keras.ops.swapaxes(keras.ops.cast(K, dtype), -1, -2),
                    keras.ops.expand_dims(keras.ops.cast(b, dtype), -1))

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
            Kt, b = weights(step)
            return sigma(dispatch.matmul(Kt, y) + b)

        return field

    def jacobian_structure(self):
        """``JacobianStructure``: d/dxi sigma(K^T xi + b) = diag(s) K^T, s in [0, S]^n."""
        K = dispatch.to_numpy(self.K, np.float64)
        W, n, _ = K.shape
        return JacobianStructure(
            offset=np.zeros((W, n, n)), left=np.broadcast_to(np.eye(n), (W, n, n)).copy(),
            right=K.copy(), slopes=(0.0, self.slope_bound), steps=self.steps,
            step_size=self.step_size, t1=self.t1,
            scheme=self.solver if self.fixed_step else None)

    def get_config(self):
        config = super().get_config()
        config.update(self.field_options_config())
        return config
