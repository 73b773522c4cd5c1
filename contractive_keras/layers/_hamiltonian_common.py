"""Shared pieces of the per-step ODE layers (CHNODE, HDNN, ResNetODE).

* activations with a known slope bound S (0 <= sigma' <= S), which Theorem 1
  and the discrete certificates need (shared/DESIGN.md, "CH-NODE");
* the structure matrix J (canonical [[0, I], [-I, 0]] or a given skew one);
* ``StepwiseIdentity``, an initializer for stacked per-step matrices;
* ``PerStepODE``, the Keras skeleton: time grid (``steps``, ``step_size`` or
  ``t1``), solver, per-step (time-varying) or shared weights, trajectory
  output, integration through ``contractive_keras.solvers.odeint``.
"""

import math

import keras
import numpy as np
import tensorflow as tf

from contractive_keras.solvers.serialization import layer_solver
from contractive_keras.solvers.serialization import serialize as serialize_solver

FIXED_STEP_SOLVERS = ("euler", "midpoint", "rk4")
ADAPTIVE_SOLVERS = ("dopri5", "bdf")

# Activations whose derivative is known to lie in [0, S] everywhere (Clarke
# derivative for the piecewise linear ones).  Non-monotone activations (gelu,
# silu/swish, mish) have negative slopes somewhere and are refused.
ACTIVATION_SLOPE_BOUNDS = {
    "tanh": 1.0,
    "sigmoid": 0.25,
    "softsign": 1.0,
    "softplus": 1.0,
    "relu": 1.0,
    "relu6": 1.0,
    "leaky_relu": 1.0,
    "elu": 1.0,
    "hard_sigmoid": 1.0 / 6.0,
    "hard_tanh": 1.0,
    "linear": 1.0,
}


def resolve_activation(activation, slope_bound=None):
    """Returns ``(callable, S)`` for an activation with slopes in [0, S].

    Args:
        activation: a name from ``ACTIVATION_SLOPE_BOUNDS`` or any callable /
            Keras activation; a callable needs ``slope_bound``.
        slope_bound: S, required when the activation is not a known name; for
            a known name it may only tighten nothing: it must equal the
            known bound or be omitted.

    Raises:
        ValueError: unknown activation without ``slope_bound``, or a
            non-positive ``slope_bound``.
    """
    if isinstance(activation, str):
        name = activation
        if name not in ACTIVATION_SLOPE_BOUNDS and slope_bound is None:
            raise ValueError(
                f"activation={activation!r} has no known slope bound; allowed "
                f"names: {sorted(ACTIVATION_SLOPE_BOUNDS)}, or pass a callable "
                "together with activation_slope_bound=S such that "
                "0 <= sigma'(x) <= S for all x.")
        fn = keras.activations.get(name)
        known = ACTIVATION_SLOPE_BOUNDS.get(name)
        if slope_bound is None:
            return fn, known
        if known is not None and float(slope_bound) < known:
            raise ValueError(
                f"activation_slope_bound={slope_bound} is below the true "
                f"slope bound {known} of {name!r}.")
    else:
        if not callable(activation) or slope_bound is None:
            raise ValueError(
                f"activation={activation!r}: a custom activation must be a "
                "callable with activation_slope_bound=S given (0 <= sigma' <= S); "
                f"known names: {sorted(ACTIVATION_SLOPE_BOUNDS)}.")
        fn = activation
    slope_bound = float(slope_bound)
    if not (slope_bound > 0.0 and math.isfinite(slope_bound)):
        raise ValueError(
            f"activation_slope_bound must be a finite number > 0, got {slope_bound}.")
    return fn, slope_bound


def structure_matrix(J, n):
    """Returns the skew-symmetric J (float64 numpy) for state size ``n``.

    ``J=None`` is the canonical [[0, I], [-I, 0]], which needs an even ``n``.

    Raises:
        ValueError: odd ``n`` with the canonical J, wrong shape, or a J that
            is not skew-symmetric.
    """
    if J is None:
        if n % 2:
            raise ValueError(
                f"the canonical J = [[0, I], [-I, 0]] needs an even state size; got "
                f"n = {n}. Use an even last dimension or pass a skew-symmetric "
                "J of shape (n, n).")
        half = n // 2
        eye = np.eye(half)
        zero = np.zeros((half, half))
        return np.block([[zero, eye], [-eye, zero]])
    J = np.asarray(J, dtype=np.float64)
    if J.shape != (n, n):
        raise ValueError(f"J must have shape ({n}, {n}), got {J.shape}.")
    if not np.all(np.isfinite(J)):
        raise ValueError("J must be finite.")
    if not np.array_equal(J, -J.T):
        raise ValueError(
            "J must be exactly skew-symmetric (J == -J.T); the largest entry of "
            f"J + J.T is {np.max(np.abs(J + J.T)):.3g}.")
    return J


def check_skew(J):
    """Validates a user-given J before the state size is known."""
    if J is None:
        return None
    J = np.asarray(J, dtype=np.float64)
    if J.ndim != 2 or J.shape[0] != J.shape[1]:
        raise ValueError(f"J must be a square matrix, got shape {J.shape}.")
    return structure_matrix(J, J.shape[0])


@keras.saving.register_keras_serializable(package="contractive_keras")
class StepwiseIdentity(keras.initializers.Initializer):
    """``gain * I`` in every slice of a stacked (steps, p, n) weight.

    Example:

    >>> init = StepwiseIdentity(0.02)
    >>> init((2, 4, 4)).shape
    TensorShape([2, 4, 4])
    """

    def __init__(self, gain=1.0):
        self.gain = float(gain)

    def __call__(self, shape, dtype=None):
        dtype = dtype or "float32"
        *lead, p, n = shape
        eye = self.gain * tf.eye(p, n, dtype=dtype)
        return tf.broadcast_to(eye, list(shape))

    def get_config(self):
        return {"gain": self.gain}


def _serialize(obj):
    return keras.saving.serialize_keras_object(obj)


class PerStepODE(keras.layers.Layer):
    """Skeleton of an ODE layer on the last axis with per-step weights.

    Subclasses create their weights in ``build_field(n)`` and provide
    ``field_closure()``, returning ``fn(t, y, step)`` for a state ``y`` of
    shape (n, rows): the vectors of the last axis are the *columns*, so each
    per-vector product is one (n x n) @ (n x rows) matrix product with a long
    second dimension (measured fastest on CPU, with and without XLA; see
    benchmarks/README.md).  This class reshapes inputs, integrates with
    ``contractive_keras.solvers.odeint`` and formats the output.

    Args:
        steps: number of solver steps N (and of weight pieces when
            ``time_varying``).
        step_size: h; the horizon is T = N h.  Give at most one of
            ``step_size`` and ``t1``; with neither, h = 0.5 (reference).
        t1: final time T (then h = T / N).
        solver: "euler" (default), "midpoint", "rk4" (fixed step), or
            "dopri5", "bdf" (adaptive, only with ``time_varying=False``);
            or a solver instance: ``Euler()``, ``Midpoint()``, ``RK4()``
            (stored as their names), a ``tfp.math.ode.Solver`` (e.g.
            ``DormandPrince(rtol=1e-5)``; it keeps its own tolerances, so
            ``rtol``/``atol`` do not apply) or
            ``contractive_keras.solvers.Dopri5`` (XLA-compilable; it uses
            ``rtol``/``atol``), adaptive ones only with
            ``time_varying=False``.  ``get_config`` stores names, and
            DormandPrince, BDF and Dopri5 as ``{"class_name", "config"}``
            (``contractive_keras.solvers.serialize``); other instances are
            refused there.
        time_varying: per-step weights K_k, b_k (... ) if True, else shared.
        return_trajectory: output the states at t_0..t_N, shape
            (batch, N + 1, ..., n), instead of xi(T).
        gradient: "backprop" | "adjoint" | "checkpoint" (see solvers).
        rtol, atol: tolerances of the adaptive solvers.
    """

    def __init__(self, steps=4, step_size=None, t1=None, solver="euler",
                 time_varying=True, return_trajectory=False,
                 gradient="backprop", rtol=1e-6, atol=1e-6, **kwargs):
        super().__init__(**kwargs)
        if isinstance(steps, bool) or int(steps) != steps or steps < 1:
            raise ValueError(f"steps must be an integer >= 1, got {steps!r}.")
        if step_size is not None and t1 is not None:
            raise ValueError(
                f"give step_size or t1, not both (got step_size={step_size}, t1={t1}).")
        if step_size is None and t1 is None:
            step_size = 0.5
        if step_size is not None:
            step_size = float(step_size)
            if not step_size > 0.0:
                raise ValueError(f"step_size must be > 0, got {step_size}.")
        else:
            t1 = float(t1)
            if not t1 > 0.0:
                raise ValueError(f"t1 must be > 0, got {t1}.")
        solver, fixed_step = layer_solver(solver)
        if not fixed_step and time_varying:
            raise ValueError(
                f"solver={solver!r} is adaptive: per-step weights need a fixed-step "
                f"solver {FIXED_STEP_SOLVERS}; pass time_varying=False.")
        self.steps = int(steps)
        self._step_size_arg = step_size
        self._t1_arg = t1
        self.solver = solver
        self.fixed_step = fixed_step
        self.time_varying = bool(time_varying)
        self.return_trajectory = bool(return_trajectory)
        self.gradient = gradient
        self.rtol = float(rtol)
        self.atol = float(atol)
        self.input_spec = keras.layers.InputSpec(min_ndim=2)

    # -- time grid ---------------------------------------------------------
    @property
    def step_size(self):
        """h, the (fixed) step size of the scheme."""
        if self._step_size_arg is not None:
            return self._step_size_arg
        return self._t1_arg / self.steps

    @property
    def t1(self):
        """T = N h, the final time."""
        if self._t1_arg is not None:
            return self._t1_arg
        return self._step_size_arg * self.steps

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
        return tf.transpose(rows)

    def from_state(self, state):
        """The solver state (n, rows) -> (rows, n)."""
        return tf.transpose(state)

    def integrate(self, rows, times=None):
        """Integrates rows (P, n) to t1, or to ``times`` (stacked first)."""
        from contractive_keras.solvers import odeint

        fn = self.field_closure()
        kwargs = dict(method=self.solver, gradient=self.gradient)
        if self.fixed_step:
            kwargs.update(steps=self.steps, with_step_index=True)
        else:
            kwargs.update(rtol=self.rtol, atol=self.atol)
            field = fn
            fn = lambda t, y: field(t, y, 0)  # noqa: E731  (shared weights)
        # Times as tensors of the state dtype (a Python float would go
        # through float32 inside the solver).
        t1 = tf.constant(self.t1, rows.dtype)
        state = self.to_state(rows)
        if times is None:
            return self.from_state(odeint(fn, state, t1, **kwargs))
        traj = odeint(fn, state, t1, times=tf.constant(times, rows.dtype), **kwargs)
        return tf.transpose(traj, [0, 2, 1])

    def call(self, inputs):
        x = tf.convert_to_tensor(inputs, dtype=self.compute_dtype)
        shape = tf.shape(x)
        rows = tf.reshape(x, [-1, self.state_size])
        if not self.return_trajectory:
            return tf.reshape(self.integrate(rows), shape)
        times = [k * self.step_size for k in range(self.steps + 1)]
        times[-1] = self.t1
        traj = self.integrate(rows, times)
        traj = tf.reshape(traj, tf.concat([[self.steps + 1], shape], 0))
        perm = [1, 0] + list(range(2, len(inputs.shape) + 1))
        return tf.transpose(traj, perm)

    def compute_output_shape(self, input_shape):
        input_shape = tuple(input_shape)
        if self.return_trajectory:
            return (input_shape[0], self.steps + 1) + input_shape[1:]
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({
            "steps": self.steps,
            "step_size": self._step_size_arg,
            "t1": self._t1_arg,
            "solver": serialize_solver(self.solver),
            "time_varying": self.time_varying,
            "return_trajectory": self.return_trajectory,
            "gradient": self.gradient,
            "rtol": self.rtol,
            "atol": self.atol,
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
        """The slice of a stacked weight used at solver step ``step``."""
        if not self.time_varying:
            return stacked[0]
        static = tf.get_static_value(step)
        if static is not None:          # unrolled loop: a slice, dense gradient
            return stacked[int(static)]
        return tf.gather(stacked, step)

    def jacobian_parts(self):
        """Affine structure of the field's Jacobian in the activation slopes.

        Returns numpy float64 arrays ``(A0, U, V, S)`` with shapes (W, n, n),
        (W, n, m), (W, n, m) and the slope bound S, such that at any state of
        step k the Jacobian of the vector field is
        ``A0[k] + U[k] @ diag(s) @ V[k].T`` for some s in [0, S]^m
        (W = weight_steps).  Used by ``contractive_keras.certify``.
        """
        raise NotImplementedError(
            f"{type(self).__name__} does not expose its Jacobian structure.")

    def discrete_certificate(self):
        """Certified Lipschitz bound of the discrete block (see ``certify``)."""
        from contractive_keras import certify

        return certify.discrete_certificate(self)


def serialize(obj):
    """keras.saving.serialize_keras_object, None-safe."""
    return None if obj is None else _serialize(obj)


class KbFieldOptions:
    """The options CHNODE, HDNN and ResNetODE share for their field.

    An activation with a known slope bound S (``resolve_activation``) and
    the initializers and regularizers of the stacked per-step K and b.
    Mix in before ``PerStepODE``; call ``set_field_options`` in
    ``__init__`` and merge ``field_options_config()`` into ``get_config``.
    """

    def set_field_options(self, activation, activation_slope_bound, K_initializer,
                          b_initializer, K_regularizer, b_regularizer):
        self.activation_fn, self.slope_bound = resolve_activation(
            activation, activation_slope_bound)
        self.activation = activation
        self.activation_slope_bound = activation_slope_bound
        self.K_initializer = keras.initializers.get(K_initializer)
        self.b_initializer = keras.initializers.get(b_initializer)
        self.K_regularizer = keras.regularizers.get(K_regularizer)
        self.b_regularizer = keras.regularizers.get(b_regularizer)

    def field_options_config(self):
        return {
            "activation": self.activation if isinstance(self.activation, str)
            else _serialize(self.activation),
            "activation_slope_bound": self.activation_slope_bound,
            "K_initializer": serialize(self.K_initializer),
            "b_initializer": serialize(self.b_initializer),
            "K_regularizer": serialize(self.K_regularizer),
            "b_regularizer": serialize(self.b_regularizer),
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if isinstance(config.get("activation"), dict):
            config["activation"] = keras.saving.deserialize_keras_object(config["activation"])
        layer = cls(**config)
        # Keras builds a deserialized layer before it loads the saved weights:
        # checks of the initial weights would be about weights nobody uses.
        layer.from_saved_config = True
        return layer

