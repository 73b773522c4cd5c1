"""StabilizedNODE: u' = sigma(A u + b) with a certified Lipschitz bound (shared/DESIGN.md).

The layer integrates the autonomous ODE

    u'(t) = sigma(A u(t) + b),   t in [0, t1],                           (1)

with sigma' in [a, 1] (0 < a <= 1, ``min_slope``), A the variable ``kernel``
and b the variable ``bias``.  Two solutions differ by
(u - v)' = D(t) A (u - v), D(t) the diagonal of secant slopes of sigma, so
the flow is Lipschitz with constant exp(delta t1), delta = max over diagonal
D in [a, 1]^d of mu_2(D A) (``contractive_keras.stability.delta``).
"""

import math

import keras
import numpy as np

from contractive_keras.bounds import validation
from contractive_keras.bounds.jacobian_structure import JacobianStructure
from contractive_keras.constraints.delta_bar_projection import DeltaBarProjection
from contractive_keras.layers import activations
from contractive_keras.layers import dispatch
from contractive_keras.layers.ode_block import ODEBlock


@keras.saving.register_keras_serializable(package="contractive_keras")
class StabilizedNODE(ODEBlock):
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
    the flow only; ``contractive_keras.certify.layer_certificate(layer)``
    reports a certified bound of their computed map (larger).  Adaptive
    solvers ("dopri5", "bdf") approximate the flow to their tolerance; no
    certificate of their output is claimed.  The layer describes itself
    (``jacobian_structure``); ``contractive_keras.certify.summary(layer)``
    gives the numbers for logging.

    Args:
        solver: None (10 Euler steps to t1 = 1), a method name completed by
            those defaults, or a ``solvers.SolverSpec(method, steps=N,
            t1=T or step_size=h, gradient=..., rtol=..., atol=...)``.
            Methods: "euler", "midpoint", "rk4", "dopri5" (this package's
            XLA-compilable ``solvers.Dopri5``), "tfp_dopri5", "bdf" (tfp's), or an
            instance: ``Euler()``, ``Midpoint()``, ``RK4()`` (taken as their
            names), another explicit Runge-Kutta scheme, a
            ``tfp.math.ode.Solver`` (keeps its own tolerances: the spec's
            ``rtol`` and ``atol`` do not apply) or
            ``contractive_keras.solvers.Dopri5``.  ``get_config`` stores the
            spec, its method as a name, or DormandPrince, BDF and Dopri5 as
            ``{"class_name", "config"}``
            (``contractive_keras.solvers.serialize``); it refuses other
            instances.
        min_slope: lower slope bound a of the activation, in (0, 1] (slope
            of the leaky ReLU on the negative side; default 0.1).  Configs
            saved before this name call it ``alpha``; ``from_config`` reads it.
        delta_bar: None (plain NODE) or the target bound on delta (finite).
        activation: "leaky_relu" (``keras.activations.leaky_relu`` with
            negative_slope = min_slope), "smooth_leaky_relu"
            (a x + (1 - a)(softplus(x) - log 2)), "linear", or a callable
            with ``activation_slopes=(lo, hi)``, min_slope <= lo <= hi <= 1
            (checked on a grid); registry: ``layers.activations``.
        activation_slopes: the declared slope range of a callable activation.
        kernel_initializer, bias_initializer, kernel_regularizer,
            bias_regularizer: for A (d, d) and b (d,).
        projection_options: extra keyword arguments of ``DeltaBarProjection``
            (e.g. ``refresh_every``).

    Input shape:
        (batch, ..., d).

    Output shape:
        Same as the input: u(t1).

    Example:

    >>> import numpy as np
    >>> from contractive_keras.solvers import SolverSpec
    >>> layer = StabilizedNODE(SolverSpec("euler", steps=4, t1=1.0), min_slope=0.1,
    ...                        delta_bar=0.0)
    >>> tuple(layer(np.zeros((2, 8), "float32")).shape)
    (2, 8)
    """

    solver_defaults = dict(method="euler", steps=10, t1=1.0)
    allow_custom_schemes = True
    legacy_names = {"alpha": "min_slope"}

    def __init__(self, solver=None, *, min_slope=None, delta_bar=None,
                 activation="leaky_relu", activation_slopes=None,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, projection_options=None,
                 **kwargs):
        super().__init__(solver, **kwargs)
        self.min_slope = validation.check_alpha(0.1 if min_slope is None else min_slope,
                                                "min_slope")
        if delta_bar is not None:
            delta_bar = validation.check_delta_bar(delta_bar)
            if not math.isfinite(delta_bar):
                raise ValueError(f"delta_bar must be finite or None, got {delta_bar!r}.")
        self.delta_bar = delta_bar
        self.activation = activation
        self.activation_slopes = None if activation_slopes is None else tuple(
            float(v) for v in activation_slopes)
        self._activation = self._resolve_activation(activation, self.activation_slopes)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)
        self.projection_options = dict(projection_options or {})
        self.kernel_constraint = None
        if delta_bar is not None:
            euler = isinstance(self.solver, str) and self.solver == "euler"
            self.kernel_constraint = DeltaBarProjection(
                self.min_slope, delta_bar, step_size=self.step_size if euler else None,
                **self.projection_options)

    @property
    def steps(self):
        """Number of fixed steps (None for adaptive solvers)."""
        return self.solver_spec.steps if self.fixed_step else None

    @property
    def step_size(self):
        """h = t1 / steps for fixed-step solvers, else None."""
        return self.solver_spec.step_size if self.fixed_step else None

    def _resolve_activation(self, activation, slopes):
        a = self.min_slope
        if isinstance(activation, str) and activation in ("leaky_relu", "smooth_leaky_relu"):
            if slopes is not None:
                raise ValueError(f"activation_slopes applies to callables; {activation!r} is known.")
            return activations.get(activation, negative_slope=a)
        if isinstance(activation, str):
            if activation not in activations.SLOPE_INTERVALS:
                raise ValueError(
                    f"activation {activation!r} is not known to have slopes in [min_slope, 1] = "
                    f"[{a}, 1]; use leaky_relu, smooth_leaky_relu, linear or a callable with "
                    f"activation_slopes=(lo, hi), min_slope <= lo <= hi <= 1.")
            sloped = activations.get(activation, slopes)
        else:
            if not callable(activation) or slopes is None:
                raise ValueError("a custom activation must be a callable given together with "
                                 "activation_slopes=(lo, hi), min_slope <= lo <= hi <= 1.")
            sloped = activations.get(activation, slopes)
        lo, hi = sloped.slopes
        if not (a - 1e-12 <= lo <= hi <= 1.0 + 1e-12):
            raise ValueError(
                f"activation {sloped.name!r}: slopes [{lo}, {hi}] must lie in [min_slope, 1] = "
                f"[{a}, 1] (the certificate needs sigma' in [min_slope, 1]; relu and tanh "
                "have slope 0 somewhere).")
        if not isinstance(activation, str):
            sloped = activations.get(activation, slopes, check=True)
        return sloped

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
        u0 = keras.ops.cast(inputs, dtype)
        A = keras.ops.cast(keras.ops.convert_to_tensor(self.kernel), dtype)
        b = keras.ops.cast(keras.ops.convert_to_tensor(self.bias), dtype)
        sigma = self._activation.fn

        def field(t, u):
            # Row form of sigma(A u + b): sigma(u A^T + b).
            return sigma(dispatch.matmul(u, A, transpose_b=True) + b)

        return self.solver_spec.odeint(field, u0)

    def jacobian_structure(self):
        """``JacobianStructure`` of the field: D A with D in [min_slope, 1]^d.

        With a ``DeltaBarProjection``, its current metric T (a valid
        candidate for the relaxation bounds) comes along.
        """
        constraint = self.kernel_constraint
        return JacobianStructure.of_kernel(
            dispatch.to_numpy(self.kernel, np.float64), self.min_slope, t1=self.t1,
            scheme=self.solver if self.fixed_step else None, steps=self.steps,
            scaling=None if constraint is None else constraint.scaling(),
            scaling_covers_euler=constraint is not None and constraint.covers_euler(),
            delta_bar=self.delta_bar)

    def load_own_variables(self, store):
        super().load_own_variables(store)
        if self.kernel_constraint is not None:
            self.kernel_constraint.reset()      # its metric was tuned for other weights

    def get_config(self):
        config = super().get_config()
        config.update({
            "min_slope": self.min_slope,
            "delta_bar": self.delta_bar,
            "activation": self.activation if isinstance(self.activation, str)
            else keras.saving.serialize_keras_object(self.activation),
            "activation_slopes": self.activation_slopes,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "bias_initializer": keras.initializers.serialize(self.bias_initializer),
            "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer),
            "bias_regularizer": keras.regularizers.serialize(self.bias_regularizer),
            "projection_options": self.projection_options,
        })
        return config

    @classmethod
    def from_config(cls, config):
        config = cls.upgrade_config(config)
        if isinstance(config.get("activation"), dict):
            config["activation"] = keras.saving.deserialize_keras_object(config["activation"])
        if config.get("activation_slopes") is not None:
            config["activation_slopes"] = tuple(config["activation_slopes"])
        return cls(**config)
