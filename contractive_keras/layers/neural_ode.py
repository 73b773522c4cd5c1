"""NeuralODE: any Keras layer or model as the vector field of an ODE layer."""

import keras
import tensorflow as tf

from contractive_keras.layers.ode_block import ODEBlock


@keras.saving.register_keras_serializable(package="contractive_keras")
class NeuralODE(ODEBlock):
    """Neural ODE xi' = f(xi) (or f([xi, t])) with a Keras layer / model as f.

    Integrates from t = 0 to ``t1`` with ``contractive_keras.solvers.odeint``.
    No stability guarantee (the vanilla NODE of the reference toy).

    Args:
        vector_field: a Keras layer or model mapping a state of shape
            (batch, ...) to the same shape.
        t1: final time T (default 1).
        steps: fixed-step solvers: number of steps (default 10).
        solver: "euler", "midpoint", "rk4" (default) or "dopri5" (this
            package's XLA-compilable ``solvers.Dopri5``), "tfp_dopri5",
            "bdf" (tfp's), or
            an instance: ``Euler()``, ``Midpoint()``, ``RK4()``, a
            ``tfp.math.ode.Solver`` (keeps its own tolerances) or
            ``contractive_keras.solvers.Dopri5``; ``get_config`` stores
            names and DormandPrince / BDF / Dopri5 configs
            (``contractive_keras.solvers.serialize``).
        time_input: if True, f receives the state with t appended as an extra
            last feature (state of shape (batch, d) only).
        return_trajectory: output the states at the ``steps + 1`` grid times,
            shape (batch, steps + 1, ...).
        gradient, rtol, atol: passed to ``odeint``.

    Input shape:
        (batch, ...) as accepted by ``vector_field``.

    Output shape:
        Same, or (batch, steps + 1, ...) with ``return_trajectory=True``.

    Example:

    >>> import keras, numpy as np
    >>> layer = NeuralODE(keras.layers.Dense(3, activation="tanh"), steps=4)
    >>> layer(np.zeros((2, 3), "float32")).shape
    TensorShape([2, 3])
    """

    solver_defaults = dict(method="rk4", steps=10, t1=1.0)

    def __init__(self, vector_field, t1=None, steps=None, solver=None,
                 time_input=False, return_trajectory=False, gradient=None,
                 rtol=None, atol=None, **kwargs):
        super().__init__(solver, steps=steps, t1=t1, gradient=gradient, rtol=rtol, atol=atol,
                         **kwargs)
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
            t_col = tf.fill(tf.concat([tf.shape(y)[:-1], [1]], 0), tf.cast(t, y.dtype))
            return self.vector_field(tf.concat([y, t_col], -1))
        return self.vector_field(y)

    def call(self, inputs):
        y0 = tf.convert_to_tensor(inputs, self.compute_dtype)
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
