"""NeuralODE: any Keras layer or model as the vector field of an ODE layer."""

import keras

from contractive_keras.layers.ode_block import ODEBlock


@keras.saving.register_keras_serializable(package="contractive_keras")
class NeuralODE(ODEBlock):
    """Neural ODE xi' = f(xi) (or f([xi, t])) with a Keras layer / model as f.

    Integrates from t = 0 to ``t1`` with ``contractive_keras.solvers.odeint``.
    No stability guarantee (the vanilla NODE of the reference toy).

    Args:
        solver: None (10 "rk4" steps to t1 = 1), a method name completed by
            those defaults ("euler", "midpoint", "rk4", or adaptive "dopri5"
            (this package's XLA-compilable ``solvers.Dopri5``), "tfp_dopri5",
            "bdf" (tfp's)), or a ``solvers.SolverSpec(method, steps=N,
            t1=T or step_size=h, gradient=..., rtol=..., atol=...)``; see
            ``ODEBlock``.
        vector_field: (required, keyword) a Keras layer or model mapping a
            state of shape (batch, ...) to the same shape.
        time_input: if True, f receives the state with t appended as an extra
            last feature (state of shape (batch, d) only).
        return_trajectory: output the states at the ``steps + 1`` grid times,
            shape (batch, steps + 1, ...).
        **kwargs: Keras layer arguments (name, dtype, ...).

    Input shape:
        (batch, ...) as accepted by ``vector_field``.

    Output shape:
        Same, or (batch, steps + 1, ...) with ``return_trajectory=True``.

    Example:

    >>> import keras, numpy as np
    >>> from contractive_keras.solvers import SolverSpec
    >>> layer = NeuralODE(SolverSpec("rk4", steps=4, t1=1.0),
    ...                   vector_field=keras.layers.Dense(3, activation="tanh"))
    >>> tuple(layer(np.zeros((2, 3), "float32")).shape)
    (2, 3)
    """

    solver_defaults = dict(method="rk4", steps=10, t1=1.0)

    def __init__(self, solver=None, *, vector_field=None, time_input=False,
                 return_trajectory=False, **kwargs):
        if isinstance(solver, keras.layers.Layer):
            raise TypeError(
                "NeuralODE: pass the field as vector_field=...; the only positional "
                "argument is solver (a method name or SolverSpec(method, steps=..., ...)).")
        super().__init__(solver, **kwargs)
        if vector_field is None:
            raise TypeError("NeuralODE needs vector_field=, a Keras layer or model.")
        if isinstance(vector_field, dict):
            vector_field = keras.saving.deserialize_keras_object(vector_field)
        if not isinstance(vector_field, keras.layers.Layer):
            raise ValueError(
                f"vector_field must be a Keras layer or model, got {type(vector_field).__name__}.")
        self.vector_field = vector_field
        self.time_input = bool(time_input)
        self.return_trajectory = bool(return_trajectory)

    def build(self, input_shape):
        shape = tuple(input_shape)
        if self.time_input:
            shape = shape[:-1] + (shape[-1] + 1,)
        if not self.vector_field.built:
            self.vector_field.build(shape)
        out = self.vector_field.compute_output_shape(shape)
        if tuple(out)[1:] != tuple(input_shape)[1:]:
            raise ValueError(
                f"vector_field maps {shape} to {out}; it must return the state "
                f"shape {tuple(input_shape)}.")
        self.built = True

    def _field(self, t, y):
        if self.time_input:
            t_col = keras.ops.ones_like(y[..., :1]) * keras.ops.cast(t, y.dtype)
            return self.vector_field(keras.ops.concatenate([y, t_col], axis=-1))
        return self.vector_field(y)

    def call(self, inputs):
        y0 = keras.ops.convert_to_tensor(inputs, self.compute_dtype)
        if not self.return_trajectory:
            return self.solver_spec.odeint(self._field, y0)
        traj = self.solver_spec.odeint(self._field, y0, times=self.solver_spec.times)
        return self.batch_major(traj)

    def get_config(self):
        config = super().get_config()
        config.update({
            "vector_field": keras.saving.serialize_keras_object(self.vector_field),
            "time_input": self.time_input,
            "return_trajectory": self.return_trajectory,
        })
        return config
