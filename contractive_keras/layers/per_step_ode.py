"""PerStepODE: the skeleton of the ODE layers with per-step weights on the last axis."""

import keras

from contractive_keras import solvers
from contractive_keras.layers import dispatch
from contractive_keras.layers.ode_block import ODEBlock


class PerStepODE(ODEBlock):
    """Skeleton of an ODE layer on the last axis with per-step weights.

    Subclasses create their weights in ``build_field(n)`` and provide
    ``field_closure()``, returning ``fn(t, y, step)`` for a state ``y`` of
    shape (n, rows): the vectors of the last axis are the *columns*, so each
    per-vector product is one (n x n) @ (n x rows) matrix product with a long
    second dimension (measured fastest on CPU, with and without XLA; see
    benchmarks/README.md).  This class reshapes inputs, integrates with
    ``contractive_keras.solvers.odeint`` and formats the output.

    Args:
        solver: a method name completed by the layer's defaults (4 steps of
            h = 0.5 unless the subclass says otherwise) or a
            ``solvers.SolverSpec(method, steps=N, step_size=h or t1=T,
            gradient=..., rtol=..., atol=...)`` (see ``ODEBlock``).  N is
            also the number of weight pieces when ``time_varying``; adaptive
            methods ("dopri5", "tfp_dopri5", "bdf", a ``tfp.math.ode.Solver``
            or ``solvers.Dopri5`` instance) need ``time_varying=False``.
            ``get_config`` stores the spec, its method as a name or, for
            DormandPrince, BDF and Dopri5, as ``{"class_name", "config"}``
            (``contractive_keras.solvers.serialize``).
        time_varying: per-step weights K_k, b_k (... ) if True, else shared.
        return_trajectory: output the states at t_0..t_N, shape
            (batch, N + 1, ..., n), instead of xi(T).
        **kwargs: Keras layer arguments (name, dtype, ...).
    """

    def __init__(self, solver=None, *, time_varying=True, return_trajectory=False, **kwargs):
        super().__init__(solver, **kwargs)
        if not self.fixed_step and time_varying:
            raise ValueError(
                f"solver={self.solver!r} is adaptive: per-step weights need a fixed-step "
                f"solver {tuple(solvers.FIXED_STEP_METHODS)}; pass time_varying=False.")
        self.time_varying = bool(time_varying)
        self.return_trajectory = bool(return_trajectory)
        self.input_spec = keras.layers.InputSpec(min_ndim=2)

    @property
    def weight_steps(self):
        """Number of stacked weight slices: N if time-varying, else 1."""
        return self.steps if self.time_varying else 1

    # -- Keras contract ----------------------------------------------------
    def build(self, input_shape):
        n = input_shape[-1]
        if n is None:
            raise ValueError("the last (state) dimension must be known.")
        self.state_size = int(n)
        self.input_spec = keras.layers.InputSpec(min_ndim=2, axes={-1: n})
        self.build_field(self.state_size)
        self.built = True
        self.after_build()

    def build_field(self, n):  # pragma: no cover - abstract
        raise NotImplementedError

    def after_build(self):
        """Hook run once weights exist (eager checks)."""

    def field_closure(self):  # pragma: no cover - abstract
        raise NotImplementedError

    def to_state(self, rows):
        """(rows, n) -> the solver state (n, rows)."""
        return keras.ops.transpose(rows)

    def from_state(self, state):
        """The solver state (n, rows) -> (rows, n)."""
        return keras.ops.transpose(state)

    def integrate(self, rows, times=None):
        """Integrates rows (P, n) to t1, or to ``times`` (stacked first)."""
        state = self.to_state(rows)
        traj = self.solver_spec.odeint(self.field_closure(), state, times=times,
                                       with_step_index=True)
        if times is None:
            return self.from_state(traj)
        return keras.ops.transpose(traj, (0, 2, 1))

    def call(self, inputs):
        x = keras.ops.convert_to_tensor(inputs, dtype=self.compute_dtype)
        shape = tuple(keras.ops.shape(x))
        rows = keras.ops.reshape(x, (-1, self.state_size))
        if not self.return_trajectory:
            return keras.ops.reshape(self.integrate(rows), shape)
        traj = self.integrate(rows, self.solver_spec.times)
        traj = keras.ops.reshape(traj, (self.steps + 1,) + shape)
        return self.batch_major(traj)

    def get_config(self):
        config = super().get_config()
        config.update({
            "time_varying": self.time_varying,
            "return_trajectory": self.return_trajectory,
        })
        return config

    # -- helpers for subclasses ------------------------------------------
    def add_step_weight(self, name, shape, initializer, regularizer=None,
                        constraint=None, trainable=True):
        """Adds a stacked per-step weight of shape (weight_steps, *shape)."""
        return self.add_weight(
            name=name, shape=(self.weight_steps,) + tuple(shape),
            initializer=initializer, regularizer=regularizer,
            constraint=constraint, trainable=trainable)

    def select(self, stacked, step):
        """The slice of a stacked weight used at solver step ``step``.

        ``step`` is a Python int or an int32 scalar tensor of the backend.
        """
        if not self.time_varying:
            return stacked[0]
        return dispatch.select_step(stacked, step)

