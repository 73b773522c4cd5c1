"""Argument checks shared by ``solve`` and ``odeint``.

Each check raises a ``ValueError`` that names the offending value and what
is allowed; the vector-field check runs at trace time, so it costs nothing
inside a compiled function.
"""

import math

import numpy as np
import tensorflow as tf


def static_float(value, name):
    """Python float of ``value`` when known at trace time, else None."""
    if isinstance(value, (int, float, np.number)) and not isinstance(
            value, bool):
        return float(value)
    static = tf.get_static_value(value)
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


def state_dtype(y0):
    leaves = tf.nest.flatten(y0)
    if not leaves:
        raise ValueError("y0 must contain at least one tensor.")
    dtypes = {leaf.dtype for leaf in leaves}
    if len(dtypes) != 1 or not leaves[0].dtype.is_floating:
        raise ValueError(
            f"All leaves of y0 must share one floating dtype, got "
            f"{sorted(d.name for d in dtypes)}.")
    return leaves[0].dtype


def checked_field(fn, y0):
    """Wraps ``fn`` to check, at trace time, its output against the state."""

    def checked_fn(t, y, *step):
        dy = fn(t, y, *step)
        try:
            tf.nest.assert_same_structure(y, dy, check_types=False)
        except (ValueError, TypeError) as error:
            raise ValueError(
                f"fn(t, y) must return the structure of the state; state "
                f"{tf.nest.map_structure(lambda x: x.shape, y)}, got "
                f"{dy!r}: {error}") from None
        dy = tf.nest.map_structure(tf.convert_to_tensor, dy)
        for index, (leaf, d_leaf) in enumerate(
                zip(tf.nest.flatten(y), tf.nest.flatten(dy))):
            if d_leaf.dtype != leaf.dtype:
                raise ValueError(
                    f"fn(t, y) returned dtype {d_leaf.dtype.name} for state "
                    f"leaf {index} of dtype {leaf.dtype.name}; they must "
                    f"match (cast in fn, or pass y0 in {d_leaf.dtype.name}).")
            if not d_leaf.shape.is_compatible_with(leaf.shape):
                raise ValueError(
                    f"fn(t, y) returned shape {d_leaf.shape} for state leaf "
                    f"{index} of shape {leaf.shape}; they must match.")
        return tf.nest.pack_sequence_as(y, tf.nest.flatten(dy))

    return checked_fn


def as_time(value, dtype):
    """``value`` as a scalar tensor of ``dtype``, without a float32 detour."""
    if isinstance(value, (tf.Tensor, tf.Variable)):
        return tf.cast(value, dtype)
    return tf.constant(value, dtype)


def as_times(times, dtype):
    """1-D tensor of output times in ``dtype`` (no float32 detour)."""
    if isinstance(times, (tf.Tensor, tf.Variable)):
        times = tf.cast(times, dtype)
    else:
        times = tf.constant(np.asarray(times, dtype=np.float64), dtype)
    if times.shape.rank != 1 or times.shape[0] == 0:
        raise ValueError(
            f"times must be a non-empty 1-D sequence, got shape {times.shape}.")
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
    values = tf.get_static_value(times) if isinstance(
        times, (tf.Tensor, tf.Variable)) else times
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
