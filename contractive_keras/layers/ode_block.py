"""ODEBlock: the base of every ODE layer (one ``SolverSpec``, the description method)."""

import keras
import tensorflow as tf

from contractive_keras.solvers.spec import SolverSpec

# Keys of the loose integration arguments (also how configs written before
# ``SolverSpec`` store them).
SOLVER_ARGUMENTS = ("steps", "step_size", "t1", "gradient", "rtol", "atol")


class ODEBlock(keras.layers.Layer):
    """A Keras layer that integrates an ODE with one ``solvers.SolverSpec``.

    Subclasses set ``solver_defaults`` (the method and time grid used when the
    caller gives none) and describe their vector field to the certificates
    through ``jacobian_structure()``; they never certify themselves
    (``contractive_keras.certify`` does).

    Args:
        solver: a ``SolverSpec``, or a method (name or solver instance, see
            ``SolverSpec``) completed by the arguments below and the layer's
            defaults.  Names: "euler", "midpoint", "rk4" (fixed step, this
            package's loop); "dopri5" is this package's Dormand-Prince pair
            (``solvers.Dopri5``: XLA-compilable, with a gradient under XLA;
            configs saved with "dopri5" load with it); "tfp_dopri5" and
            "bdf" are tfp's ``DormandPrince`` and ``BDF`` (not
            XLA-compilable), as are ``tfp.math.ode.Solver`` instances.
        steps, step_size, t1, gradient, rtol, atol: the integration settings
            (see ``SolverSpec``); given with a ``SolverSpec``, they replace
            its values.
        **kwargs: Keras layer arguments (name, dtype, ...).
    """

    solver_defaults = dict(method="euler", steps=4, step_size=0.5)
    allow_custom_schemes = False

    def __init__(self, solver=None, *, steps=None, step_size=None, t1=None, gradient=None,
                 rtol=None, atol=None, **kwargs):
        super().__init__(**kwargs)
        self.solver_spec = SolverSpec.from_arguments(
            solver, steps, step_size, t1, gradient, rtol, atol,
            defaults=self.solver_defaults, allow_custom_schemes=self.allow_custom_schemes)

    # -- the integration settings, read from the spec --------------------------
    @property
    def solver(self):
        """The method: a lower-case name or a solver instance."""
        return self.solver_spec.method

    @property
    def fixed_step(self):
        return self.solver_spec.fixed_step

    @property
    def steps(self):
        return self.solver_spec.steps

    @property
    def step_size(self):
        """h, the step of the fixed-step scheme."""
        return self.solver_spec.step_size

    @property
    def t1(self):
        """T, the final time."""
        return self.solver_spec.t1

    @property
    def gradient(self):
        return self.solver_spec.gradient

    @property
    def rtol(self):
        return self.solver_spec.rtol

    @property
    def atol(self):
        return self.solver_spec.atol

    # -- outputs -------------------------------------------------------------
    return_trajectory = False

    def compute_output_shape(self, input_shape):
        """The input shape, or (batch, N + 1, ...) for a trajectory output."""
        input_shape = tuple(input_shape)
        if self.return_trajectory:
            return (input_shape[0], self.steps + 1) + input_shape[1:]
        return input_shape

    @staticmethod
    def batch_major(trajectory):
        """(N + 1, batch, ...) states at the grid times -> (batch, N + 1, ...)."""
        rank = len(trajectory.shape)
        return tf.transpose(trajectory, [1, 0] + list(range(2, rank)))

    # -- description ---------------------------------------------------------
    def jacobian_structure(self):
        """The field's Jacobian structure (``bounds.JacobianStructure``) for certificates.

        At any state of step k the Jacobian of the vector field is
        offset[k] + left[k] diag(s) right[k]^T with the activation slopes s in
        an interval; with the scheme, step size and steps, this is all a
        certificate of the layer needs.
        """
        raise NotImplementedError(
            f"{type(self).__name__} does not describe its Jacobian structure.")

    def get_config(self):
        config = super().get_config()
        config["solver"] = self.solver_spec.get_config()
        return config
