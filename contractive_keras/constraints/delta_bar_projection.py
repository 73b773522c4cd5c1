"""The stabilized NODE's delta_bar projection (shared/DESIGN.md, "Stabilized NODE")."""

import math

import keras
import numpy as np

from contractive_keras import backend
from contractive_keras.bounds import backend_ops
from contractive_keras.bounds import delta_bar_set
from contractive_keras.bounds import validation


@keras.saving.register_keras_serializable(package="contractive_keras")
class DeltaBarProjection(keras.constraints.Constraint):
    """Projects a square kernel A onto a certified set {delta(A) <= delta_bar}.

    shared/DESIGN.md, "Stabilized NODE": delta(A) = max over D = diag in
    [alpha, 1]^d of mu_2(D A) bounds the flow of u' = sigma(A u + b) as
    Lip <= exp(delta t1).  After every optimizer step this replaces A by
    A + Delta so that a *certified upper bound* of delta (the relaxation of
    ``stability.delta(..., method="upper")``; for d = 64 no exact value is
    affordable) is <= delta_bar.  For a positive diagonal T (the warm-started
    state) the certified set is a weighted spectral-norm ball
    ||L (A - B0) W||_2 <= 1 (L, W, B0 diagonal, see ``_stability_tf``), and
    Delta is the exact projection onto it in the metric ||L Delta W||_F: one
    eigendecomposition of a d x d matrix per step, float64, in graph mode,
    XLA-compatible, under any tf.distribute strategy (TensorFlow).  (The Frobenius-minimal
    perturbation is ``stability.min_perturbation``; the benchmarks report the
    ratio of the two norms.)  T is improved at the current kernel every
    ``refresh_every`` calls by descent steps that keep the kernel certified,
    and re-optimised when the kernel is far outside the ball (first step,
    weights loaded or set by hand).  A kernel that a cheap certified bound
    (``delta_bar_set.certified_inside``: a trace-power bound on ||Y||_2,
    matrix products only) already proves inside the warm-started ball is
    kept as it is, without the eigendecomposition; the refresh schedule
    counts only the calls that project.

    With ``step_size=h`` the projection also covers the explicit Euler
    discretisation: the certified set becomes max_D ||I + h D A||_2 <=
    1 + h delta_bar, which bounds the Lipschitz constant of N Euler steps by
    (1 + h delta_bar)^N <= exp(delta_bar t1) and delta by delta_bar.

    Backends: the projection is ``keras.ops`` and gives the same kernel on
    TensorFlow, JAX and PyTorch (float64; float32 with wider margins on JAX
    without x64, see ``bounds.delta_bar_set``).  The warm-start state (log T,
    an initialised flag, a call count) persists on every backend: on
    TensorFlow in ``tf.Variable``s synchronised ON_READ for ``tf.distribute``;
    on PyTorch in non-trainable ``keras.Variable``s.  On JAX a constraint
    cannot assign a variable of its own inside the trainer's jitted,
    stateless step (``optimizer.stateless_apply`` keeps only the model's and
    the optimizer's variables, and any other variable is read as a
    trace-time constant), so there the state lives on the host, read and
    written by ordered ``jax.experimental.io_callback``s inside the step (a
    transfer of d + 2 numbers per step; eager calls run the same function
    under ``jax.jit``).  Sharded multi-device JAX steps (``keras.distribution``)
    are not covered by that: use TensorFlow's strategies or one device.

    Args:
        min_slope: alpha, the slope lower bound of the activation, in (0, 1]
            (configs saved before this name call it ``alpha``).
        delta_bar: target bound on delta (finite).
        step_size: None (certify the ODE flow) or the Euler step h of the
            layer (certify the computed map as well).
        reoptimize_iterations: eigendecompositions spent re-optimising T
            when the kernel is far outside the current ball.
        refresh_every, refresh_iterations: every ``refresh_every`` calls, T
            is improved by ``refresh_iterations`` descent steps (one
            eigendecomposition each) at the new kernel.

    Example:

    >>> import numpy as np
    >>> from contractive_keras import stability
    >>> A = np.random.default_rng(0).normal(size=(6, 6)).astype("float32")
    >>> B = np.asarray(DeltaBarProjection(min_slope=0.1, delta_bar=0.0)(A))
    >>> bool(stability.delta(B, 0.1, "upper").value <= 1e-6)
    True
    """

    def __init__(self, min_slope, delta_bar, step_size=None, reoptimize_iterations=40,
                 refresh_every=25, refresh_iterations=8):
        self.min_slope = validation.check_alpha(min_slope, "min_slope")
        self.delta_bar = validation.check_delta_bar(delta_bar)
        if not math.isfinite(self.delta_bar):
            raise ValueError(f"DeltaBarProjection needs a finite delta_bar, got {delta_bar!r}.")
        self.step_size = None if step_size is None else validation.check_step(step_size)
        if self.step_size is not None:
            # min over A of max_D ||I + h D A||_2 is (1 - alpha) / (1 + alpha).
            floor = (1 - self.min_slope) / (1 + self.min_slope)
            if 1 + self.step_size * self.delta_bar <= floor * (1 + 1e-6):
                raise ValueError(
                    f"No kernel reaches delta_bar = {self.delta_bar} for Euler steps of size "
                    f"{self.step_size} with min_slope alpha = {self.min_slope}: every A has max_D "
                    f"||I + h D A||_2 >= (1 - alpha)/(1 + alpha) = {floor:.6g} > "
                    f"1 + h delta_bar.")
        self.reoptimize_iterations = int(reoptimize_iterations)
        self.refresh_every = int(refresh_every)
        self.refresh_iterations = int(refresh_iterations)
        if self.refresh_every < 1 or self.refresh_iterations < 0 or self.reoptimize_iterations < 0:
            raise ValueError("refresh_every must be >= 1 and the iteration counts >= 0.")
        self._state = None

    def build(self, shape):
        """Creates the warm-start state (on TensorFlow, call under the strategy's scope)."""
        d = int(shape[-1])
        if len(shape) != 2 or int(shape[0]) != d:
            raise ValueError(f"DeltaBarProjection needs a square kernel, got shape {tuple(shape)}.")
        if self._state is not None:
            return
        if backend.is_tensorflow():
            import tensorflow as tf  # pylint: disable=import-outside-toplevel
            options = dict(trainable=False, synchronization=tf.VariableSynchronization.ON_READ,
                           aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
            self._state = (tf.Variable(tf.zeros([d], tf.float64), name="delta_bar_log_scaling",
                                       **options),
                           tf.Variable(False, name="delta_bar_initialized", **options),
                           tf.Variable(tf.zeros([], tf.int64), name="delta_bar_calls", **options))
            return
        if backend.name() == "jax":
            self._state = (_HostValue(np.zeros([d])), _HostValue(False), _HostValue(0))
            return
        self._state = (
            keras.Variable(np.zeros([d]), dtype=backend_ops.wide(), trainable=False,
                           name="delta_bar_log_scaling"),
            keras.Variable(False, dtype="bool", trainable=False, name="delta_bar_initialized"),
            keras.Variable(0, dtype="int32", trainable=False, name="delta_bar_calls"))

    def scaling(self):
        """The current diagonal T of the certificate (NumPy float64), or None."""
        if self._state is None or not bool(_read(self._state[1])):
            return None
        return np.exp(np.asarray(_read(self._state[0]), np.float64))

    def covers_euler(self):
        """Whether the certified set (and ``scaling``) is the Euler-step one."""
        return self.step_size is not None

    def reset(self):
        """Forgets the warm start: the next call re-optimises the metric T.

        Call after assigning the kernel by hand (``set_weights``, loading):
        the stored T was tuned for the old kernel.
        """
        if self._state is not None:
            self._state[1].assign(False)

    def warm_start(self, scaling):
        """Starts the next call from a given positive diagonal T (e.g. a saved one)."""
        if self._state is None:
            raise ValueError("DeltaBarProjection.warm_start: build the constraint first "
                             "(it is built with the layer's kernel).")
        scaling = np.asarray(scaling, np.float64)
        if scaling.shape != tuple(self._state[0].shape) or not np.all(scaling > 0):
            raise ValueError(f"warm_start needs a positive vector of shape "
                             f"{tuple(self._state[0].shape)}, got {scaling!r}.")
        self._state[0].assign(np.log(scaling))
        self._state[1].assign(True)

    def _options(self):
        return dict(reopt_iterations=self.reoptimize_iterations,
                    refresh_iterations=self.refresh_iterations)

    def __call__(self, w):
        value = keras.ops.convert_to_tensor(w)
        shape = tuple(value.shape)
        if len(shape) != 2 or shape[0] != shape[1] or shape[0] is None:
            raise ValueError(f"DeltaBarProjection needs a square kernel, got shape {shape}.")
        dtype = backend_ops.dtype_name(value.dtype)
        geometry = delta_bar_set.Geometry(self.min_slope, self.delta_bar, self.step_size)
        if backend.is_tensorflow():
            return self._call_tensorflow(value, geometry)
        if backend.name() == "jax":
            return self._call_jax(value, geometry, dtype)
        self.build(shape)
        log_t, initialized, calls = self._state
        refresh = keras.ops.equal(calls.value % self.refresh_every, self.refresh_every - 1)
        B, t, projected = self._eager_projection(geometry, dtype)(
            value, keras.ops.exp(log_t.value), initialized.value, refresh)
        log_t.assign(keras.ops.log(t))
        initialized.assign(True)
        calls.assign(calls.value + keras.ops.cast(projected, "int32"))
        return keras.ops.cast(B, dtype)

    def _call_jax(self, value, geometry, dtype):
        """JAX: the state on the host, read and written by ordered ``io_callback``s,
        so that it persists through the trainer's jitted, stateless step."""
        import jax  # pylint: disable=import-outside-toplevel
        from jax.experimental import io_callback  # pylint: disable=import-outside-toplevel
        d = int(value.shape[0])
        self.build(tuple(value.shape))
        state, wide, every, options = self._state, backend_ops.wide(), self.refresh_every, \
            self._options()
        spec = (jax.ShapeDtypeStruct((d,), wide), jax.ShapeDtypeStruct((), "bool"),
                jax.ShapeDtypeStruct((), "int32"))

        def read():
            return (np.asarray(state[0].value, wide), np.asarray(state[1].value, bool),
                    np.asarray(state[2].value, np.int32))

        def write(log_t, projected):
            state[0].assign(np.asarray(log_t, np.float64))
            state[1].assign(True)
            state[2].assign(int(state[2].value) + int(projected))

        def run(w):
            log_t, initialized, calls = io_callback(read, spec, ordered=True)
            B, t, projected = delta_bar_set.projection(
                geometry, w, keras.ops.exp(log_t), dtype, initialized=initialized,
                refresh=(calls % every) == every - 1, **options)
            io_callback(write, None, keras.ops.log(t), projected, ordered=True)
            return keras.ops.cast(B, dtype)

        if backend_ops.is_tracer(value):
            return run(value)
        compiled = self.__dict__.setdefault("_compiled", {})
        if ("jax", dtype) not in compiled:
            compiled[("jax", dtype)] = jax.jit(run)
        return compiled[("jax", dtype)](value)

    def _eager_projection(self, geometry, dtype):
        """``delta_bar_set.projection`` for eager calls, compiled once per dtype on JAX."""
        compiled = self.__dict__.setdefault("_compiled", {})
        if dtype not in compiled:
            options = self._options()

            def run(value, t, initialized, refresh):
                return delta_bar_set.projection(geometry, value, t, dtype,
                                                initialized=initialized, refresh=refresh,
                                                **options)

            compiled[dtype] = backend_ops.compile_eager(run)
        return compiled[dtype]

    def _call_tensorflow(self, value, geometry):
        """The TensorFlow path: the state under ``tf.distribute`` (ON_READ, first replica)."""
        import tensorflow as tf  # pylint: disable=import-outside-toplevel
        shape = value.shape
        if self._state is None and (not tf.distribute.has_strategy()
                                    or tf.distribute.in_cross_replica_context()):
            with tf.init_scope():
                self.build(shape)
        if self._state is None:
            B, _, _ = delta_bar_set.projection(geometry, value, tf.ones([shape[0]], tf.float64),
                                               value.dtype, initialized=False,
                                               refresh=tf.constant(False), **self._options())
            return tf.cast(B, value.dtype)
        log_t, initialized, calls = self._state
        refresh = tf.equal(calls % self.refresh_every, self.refresh_every - 1)
        B, t, projected = delta_bar_set.projection(
            geometry, value, tf.exp(log_t), value.dtype,
            initialized=tf.convert_to_tensor(initialized), refresh=refresh, **self._options())
        # A kernel kept by the cheap test (warm state only) keeps T, which
        # certifies it; the refresh schedule counts the projecting calls.
        log_t.assign(tf.math.log(t))
        initialized.assign(True)
        calls.assign_add(tf.cast(projected, tf.int64))
        return tf.cast(B, value.dtype)

    def get_config(self):
        return {"min_slope": self.min_slope, "delta_bar": self.delta_bar,
                "step_size": self.step_size,
                "reoptimize_iterations": self.reoptimize_iterations,
                "refresh_every": self.refresh_every,
                "refresh_iterations": self.refresh_iterations}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if "alpha" in config:           # the name in configs saved before min_slope
            alpha = config.pop("alpha")
            if config.setdefault("min_slope", alpha) != alpha:
                raise ValueError(f"min_slope={config['min_slope']} and its old name "
                                 f"alpha={alpha} differ.")
        return cls(**config)


class _HostValue:
    """One piece of the JAX state, a NumPy value on the host (``assign`` like a variable)."""

    def __init__(self, value):
        self.value = np.asarray(value)

    @property
    def shape(self):
        return self.value.shape

    def assign(self, value):
        self.value = np.asarray(value)


def _read(piece):
    """A state piece (a variable of any backend or a ``_HostValue``) as NumPy."""
    return piece.value if isinstance(piece, _HostValue) else backend.to_numpy(piece)
