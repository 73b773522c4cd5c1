"""StabilizedNODE: u' = sigma(A u + b) with a certified Lipschitz bound (shared/DESIGN.md).

The layer integrates the autonomous ODE

    u'(t) = sigma(A u(t) + b),   t in [0, t1],                           (1)

with sigma' in [alpha, 1] (0 < alpha <= 1), A the variable ``kernel`` and b
the variable ``bias``.  Two solutions differ by (u - v)' = D(t) A (u - v),
D(t) the diagonal of secant slopes of sigma, so the flow is Lipschitz with
constant exp(delta t1), delta = max over diagonal D in [alpha, 1]^d of
mu_2(D A) (``contractive_keras.stability.delta``).
"""

import math

import keras
import numpy as np
import tensorflow as tf

from contractive_keras import solvers
from contractive_keras._blas import single_threaded_blas

# Activations with slopes in [alpha, 1] that the layer knows by name.
KNOWN_ACTIVATIONS = ("leaky_relu", "smooth_leaky_relu", "linear")


def leaky_relu(x, alpha):
    """max(x, alpha x): slopes alpha (x < 0) and 1 (x > 0)."""
    return tf.maximum(x, alpha * x)


def smooth_leaky_relu(x, alpha):
    """alpha x + (1 - alpha)(softplus(x) - log 2): slope alpha + (1 - alpha) sigmoid(x) in (alpha, 1), sigma(0) = 0."""
    return alpha * x + (1.0 - alpha) * (tf.nn.softplus(x) - math.log(2.0))


def _check_slopes(fn, alpha, declared, name):
    """Secant slopes of fn on a grid must lie in the declared range, itself in [alpha, 1]."""
    lo, hi = (float(v) for v in declared)
    if not (alpha - 1e-12 <= lo <= hi <= 1.0 + 1e-12):
        raise ValueError(
            f"activation {name!r}: declared slopes [{lo}, {hi}] must lie in [alpha, 1] = "
            f"[{alpha}, 1] (the certificate needs sigma' in [alpha, 1]).")
    grid = np.concatenate([-np.logspace(3, -4, 200), [0.0], np.logspace(-4, 3, 200)])
    values = np.asarray(fn(tf.constant(grid, tf.float64)), np.float64)
    slopes = np.diff(values) / np.diff(grid)
    tol = 1e-6
    if np.any(slopes < lo - tol) or np.any(slopes > hi + tol) or not np.all(np.isfinite(slopes)):
        raise ValueError(
            f"activation {name!r} has secant slopes in [{slopes.min():.4g}, {slopes.max():.4g}] "
            f"on [-1e3, 1e3], outside the declared [{lo}, {hi}].")


@keras.saving.register_keras_serializable(package="contractive_keras")
class StabilizedNODE(keras.layers.Layer):
    """Neural ODE u' = sigma(A u + b) on [0, t1], stabilized by delta_bar, equation (1).

    Guarantee.  With ``delta_bar`` set, the kernel carries a
    ``contractive_keras.constraints.DeltaBarProjection`` that keras applies
    after every optimizer step; it keeps a certified upper bound of
    delta = max_D mu_2(D A) at or below delta_bar, so the exact flow of (1)
    is exp(delta_bar t1)-Lipschitz (2-norm).  The map the layer *computes*
    is a discretisation, and an explicit step can expand more than
    exp(h delta).  With ``solver="euler"`` (the default) the projection is
    tightened to cover the discretisation: it certifies
    max_D ||I + h D A||_2 <= 1 + h delta_bar, so the computed map (N Euler
    steps) is (1 + h delta_bar)^N <= exp(delta_bar t1)-Lipschitz, and delta
    <= delta_bar as well.  For "midpoint" / "rk4" the projection certifies
    the flow only; ``contractive_keras.stability.lipschitz_bound(layer)``
    reports a certified bound of their computed map (larger).  Adaptive
    solvers ("dopri5", "bdf") approximate the flow to their tolerance; no
    certificate of their output is claimed.  ``certificate()`` returns the
    numbers for logging.

    Args:
        alpha: lower slope bound of the activation, in (0, 1] (slope of the
            leaky ReLU on the negative side).
        delta_bar: None (plain NODE) or the target bound on delta (finite).
        t1: final time, > 0.
        solver: "euler", "midpoint", "rk4", "dopri5", "bdf", or an
            instance: ``Euler()``, ``Midpoint()``, ``RK4()`` (taken as their
            names), another explicit Runge-Kutta scheme, a
            ``tfp.math.ode.Solver`` (keeps its own tolerances: ``rtol`` and
            ``atol`` do not apply) or ``contractive_keras.solvers.Dopri5``.
            ``get_config`` stores names, and DormandPrince, BDF and Dopri5
            as ``{"class_name", "config"}``
            (``contractive_keras.solvers.serialize``); it refuses other
            instances.
        steps: number of fixed steps (fixed-step solvers), h = t1 / steps.
        activation: "leaky_relu" (max(x, alpha x)), "smooth_leaky_relu"
            (alpha x + (1 - alpha)(softplus(x) - log 2)), "linear", or a
            callable with ``activation_slopes=(lo, hi)``, alpha <= lo <= hi
            <= 1 (checked on a grid).
        activation_slopes: the declared slope range of a callable activation.
        kernel_initializer, bias_initializer, kernel_regularizer,
            bias_regularizer: for A (d, d) and b (d,).
        gradient: "backprop", "checkpoint" or "adjoint" (see ``solvers``).
        rtol, atol: tolerances of adaptive solvers.
        projection_options: extra keyword arguments of ``DeltaBarProjection``
            (e.g. ``refresh_every``).

    Input shape:
        (batch, ..., d).

    Output shape:
        Same as the input: u(t1).

    Example:

    >>> import numpy as np
    >>> layer = StabilizedNODE(alpha=0.1, delta_bar=0.0, steps=4)
    >>> layer(np.zeros((2, 8), "float32")).shape
    TensorShape([2, 8])
    """

    def __init__(self, alpha=0.1, delta_bar=None, t1=1.0, solver="euler", steps=10,
                 activation="leaky_relu", activation_slopes=None,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, gradient="backprop",
                 rtol=1e-6, atol=1e-6, projection_options=None, **kwargs):
        super().__init__(**kwargs)
        from contractive_keras import _stability_bounds as bounds

        self.alpha = bounds.check_alpha(alpha)
        if delta_bar is not None:
            delta_bar = bounds.check_delta_bar(delta_bar)
            if not math.isfinite(delta_bar):
                raise ValueError(f"delta_bar must be finite or None, got {delta_bar!r}.")
        self.delta_bar = delta_bar
        self.t1 = float(t1)
        if not (self.t1 > 0 and math.isfinite(self.t1)):
            raise ValueError(f"t1 must be a positive finite number, got {t1!r}.")
        from contractive_keras.solvers.serialization import layer_solver

        solver, self.fixed_step = layer_solver(solver, allow_custom_schemes=True)
        self.solver = solver
        if self.fixed_step:
            if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
                raise ValueError(f"steps must be a positive int for solver {solver!r}, got {steps!r}.")
            self.steps = int(steps)
        else:
            self.steps = None
        self.activation = activation
        self.activation_slopes = None if activation_slopes is None else tuple(
            float(v) for v in activation_slopes)
        self._activation_fn = self._resolve_activation(activation, self.activation_slopes)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)
        from contractive_keras.solvers.gradients import get_gradient

        get_gradient(gradient)
        self.gradient = gradient
        self.rtol, self.atol = float(rtol), float(atol)
        self.projection_options = dict(projection_options or {})
        self.kernel_constraint = None
        if delta_bar is not None:
            from contractive_keras.constraints import DeltaBarProjection

            euler = isinstance(solver, str) and solver == "euler"
            self.kernel_constraint = DeltaBarProjection(
                self.alpha, delta_bar, step_size=self.step_size if euler else None,
                **self.projection_options)

    @property
    def step_size(self):
        """h = t1 / steps for fixed-step solvers, else None."""
        return self.t1 / self.steps if self.fixed_step else None

    def _resolve_activation(self, activation, slopes):
        alpha = self.alpha
        if isinstance(activation, str) and activation in KNOWN_ACTIVATIONS:
            if slopes is not None:
                raise ValueError(f"activation_slopes applies to callables; {activation!r} is known.")
            if activation == "leaky_relu":
                return lambda x: leaky_relu(x, alpha)
            if activation == "smooth_leaky_relu":
                return lambda x: smooth_leaky_relu(x, alpha)
            return lambda x: x
        if isinstance(activation, str):
            raise ValueError(
                f"activation {activation!r} is not known to have slopes in [alpha, 1] = "
                f"[{alpha}, 1]; use one of {KNOWN_ACTIVATIONS} or a callable with "
                f"activation_slopes=(lo, hi), alpha <= lo <= hi <= 1 (e.g. relu and tanh "
                f"have slope 0 somewhere and break the certificate).")
        if not callable(activation) or slopes is None:
            raise ValueError("a custom activation must be a callable given together with "
                             "activation_slopes=(lo, hi), alpha <= lo <= hi <= 1.")
        _check_slopes(activation, alpha, slopes, getattr(activation, "__name__", activation))
        return activation

    def build(self, input_shape):
        d = input_shape[-1]
        if d is None:
            raise ValueError(f"The last input dimension must be known, got {input_shape}.")
        self.kernel = self.add_weight(
            name="kernel", shape=(d, d), initializer=self.kernel_initializer,
            regularizer=self.kernel_regularizer, constraint=self.kernel_constraint)
        self.bias = self.add_weight(
            name="bias", shape=(d,), initializer=self.bias_initializer,
            regularizer=self.bias_regularizer)
        if self.kernel_constraint is not None:
            self.kernel_constraint.build((d, d))

    def call(self, inputs):
        dtype = self.compute_dtype
        u0 = tf.cast(inputs, dtype)
        A = tf.cast(tf.convert_to_tensor(self.kernel), dtype)
        b = tf.cast(tf.convert_to_tensor(self.bias), dtype)
        sigma = self._activation_fn

        def field(t, u):
            # Row form of sigma(A u + b): sigma(u A^T + b).
            return sigma(tf.matmul(u, A, transpose_b=True) + b)

        # A name (not solvers.get(name)): "dopri5"/"bdf" then use rtol/atol.
        return solvers.odeint(field, u0, self.t1, method=self.solver, steps=self.steps,
                              rtol=self.rtol, atol=self.atol, gradient=self.gradient)

    def compute_output_shape(self, input_shape):
        return input_shape

    @single_threaded_blas
    def certificate(self):
        """Certificate scalars: delta (with kind), Lipschitz bounds (see ``stability.summary``)."""
        from contractive_keras import stability

        return stability.summary(self)

    def reset_certificate_state(self):
        """Forget the projection's warm start (after assigning the kernel by hand)."""
        state = getattr(self.kernel_constraint, "_state", None)
        if state is not None:
            state[1].assign(False)

    def load_own_variables(self, store):
        super().load_own_variables(store)
        self.reset_certificate_state()

    def get_config(self):
        solver = solvers.serialize(self.solver)
        config = super().get_config()
        config.update({
            "alpha": self.alpha,
            "delta_bar": self.delta_bar,
            "t1": self.t1,
            "solver": solver,
            "steps": self.steps if self.fixed_step else None,
            "activation": self.activation if isinstance(self.activation, str)
            else keras.saving.serialize_keras_object(self.activation),
            "activation_slopes": self.activation_slopes,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "bias_initializer": keras.initializers.serialize(self.bias_initializer),
            "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer),
            "bias_regularizer": keras.regularizers.serialize(self.bias_regularizer),
            "gradient": self.gradient,
            "rtol": self.rtol,
            "atol": self.atol,
            "projection_options": self.projection_options,
        })
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if isinstance(config.get("activation"), dict):
            config["activation"] = keras.saving.deserialize_keras_object(config["activation"])
        if config.get("activation_slopes") is not None:
            config["activation_slopes"] = tuple(config["activation_slopes"])
        return cls(**config)
