"""Argument checks shared by ``solve`` and ``odeint`` (every Keras backend).

Each check raises a ``ValueError`` that names the offending value and what
is allowed; the vector-field check runs at trace time, so it costs nothing
inside a compiled function.  Values "known at trace time" are those
:func:`~contractive_keras.solvers.dispatch.static_value` can read: Python
and NumPy numbers, eager tensors, TensorFlow graph constants (not JAX
tracers).
"""

import math

import keras
import numpy as np

from contractive_keras.solvers import dispatch


def static_float(value, name):
    """Python float of ``value`` when known at trace time, else None."""
    if isinstance(value, (int, float, np.number)) and not isinstance(
            value, bool):
        return float(value)
    static = dispatch.static_value(value)
    if static is None:
        return None
    static = np.asarray(static)
    if static.shape != ():
        raise ValueError(f"{name} must be a scalar, got shape {static.shape}.")
    return float(static)


def check_positive(value, name):
    static = static_float(value, name)
    if static is not None and not static > 0:
        raise ValueError(f"{name} must be > 0, got {static!r}.")


def dtype_name(value):
    """The standardized dtype name ("float32", ...) of a tensor."""
    return keras.backend.standardize_dtype(value.dtype)


def state_dtype(y0):
    """The one floating dtype name of the leaves of ``y0``."""
    leaves = keras.tree.flatten(y0)
    if not leaves:
        raise ValueError("y0 must contain at least one tensor.")
    dtypes = {dtype_name(leaf) for leaf in leaves}
    if len(dtypes) != 1 or not keras.backend.is_float_dtype(dtype_name(leaves[0])):
        raise ValueError(
            f"All leaves of y0 must share one floating dtype, got "
            f"{sorted(dtypes)}.")
    return dtype_name(leaves[0])


def _shape(value):
    return tuple(None if d is None else int(d) for d in value.shape)


def _compatible(first, second):
    return len(first) == len(second) and all(
        a is None or b is None or a == b for a, b in zip(first, second))


def checked_field(fn, y0):
    """Wraps ``fn`` to check, at trace time, its output against the state."""

    def checked_fn(t, y, *step):
        dy = fn(t, y, *step)
        try:
            keras.tree.assert_same_paths(y, dy)
        except (ValueError, TypeError) as error:
            raise ValueError(
                f"fn(t, y) must return the structure of the state; state "
                f"{keras.tree.map_structure(_shape, y)}, got "
                f"{dy!r}: {error}") from None
        dy = keras.tree.map_structure(keras.ops.convert_to_tensor, dy)
        for index, (leaf, d_leaf) in enumerate(
                zip(keras.tree.flatten(y), keras.tree.flatten(dy))):
            if dtype_name(d_leaf) != dtype_name(leaf):
                raise ValueError(
                    f"fn(t, y) returned dtype {dtype_name(d_leaf)} for state "
                    f"leaf {index} of dtype {dtype_name(leaf)}; they must "
                    f"match (cast in fn, or pass y0 in {dtype_name(d_leaf)}).")
            if not _compatible(_shape(d_leaf), _shape(leaf)):
                raise ValueError(
                    f"fn(t, y) returned shape {_shape(d_leaf)} for state leaf "
                    f"{index} of shape {_shape(leaf)}; they must match.")
        return keras.tree.pack_sequence_as(y, keras.tree.flatten(dy))

    return checked_fn


def as_time(value, dtype):
    """``value`` as a scalar tensor of ``dtype``, without a float32 detour."""
    if isinstance(value, keras.Variable):
        value = value.value
    if isinstance(value, (int, float, np.number, np.ndarray)):
        return keras.ops.convert_to_tensor(np.asarray(value, np.float64), dtype)
    return keras.ops.cast(value, dtype)


def as_times(times, dtype):
    """1-D tensor of output times in ``dtype`` (no float32 detour)."""
    if isinstance(times, (list, tuple, np.ndarray)):
        times = keras.ops.convert_to_tensor(np.asarray(times, dtype=np.float64), dtype)
    else:
        times = as_time(times, dtype)
    if len(times.shape) != 1 or times.shape[0] == 0:
        raise ValueError(
            f"times must be a non-empty 1-D sequence, got shape {_shape(times)}.")
    return times


def fixed_step_count(t0, t1, steps, step_size, method):
    """The number of steps (Python int) from ``steps`` or ``step_size``."""
    if steps is not None and step_size is not None:
        raise ValueError(
            f"Pass steps or step_size, not both (got steps={steps!r}, "
            f"step_size={step_size!r}).")
    if steps is not None:
        if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)):
            raise ValueError(
                f"steps must be a positive Python int, got {steps!r}.")
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}.")
        return int(steps)
    if step_size is None:
        raise ValueError(
            f"The fixed-step method {method!r} needs steps or step_size.")
    size = static_float(step_size, "step_size")
    if size is None:
        raise ValueError("step_size must be known at trace time; pass steps.")
    if not size > 0:
        raise ValueError(f"step_size must be > 0, got {size!r}.")
    start, end = static_float(t0, "t0"), static_float(t1, "t1")
    if start is None or end is None:
        raise ValueError(
            "With step_size, t0 and t1 must be known at trace time; pass "
            "steps instead.")
    return max(1, math.ceil((end - start) / size * (1 - 1e-12)))


def static_times(times, t0, t1):
    values = dispatch.static_value(times)
    if values is None:
        raise ValueError(
            "times must be known at trace time for fixed-step methods "
            "(a list, a NumPy array or a constant tensor).")
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1 or values.size == 0:
        raise ValueError(
            f"times must be a non-empty 1-D sequence, got shape "
            f"{values.shape}.")
    if np.any(np.diff(values) < 0):
        raise ValueError(f"times must be non-decreasing, got {values}.")
    if t0 is None or t1 is None:
        raise ValueError(
            "With times, t0 and t1 must be known at trace time for "
            "fixed-step methods.")
    tolerance = 1e-9 * max(1.0, abs(t1 - t0))
    if values[0] < t0 - tolerance or values[-1] > t1 + tolerance:
        raise ValueError(
            f"times must lie in [t0, t1] = [{t0}, {t1}], got {values}.")
    return [float(v) for v in values]
