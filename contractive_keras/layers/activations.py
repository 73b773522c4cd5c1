"""Activations with a known slope interval, for both ODE families.

The certificates need the range [lo, hi] of the activation's derivative
(Clarke derivative at kinks): the CH-NODE family needs 0 <= sigma' <= S
(shared/DESIGN.md, Theorem 1), the stabilized NODE a <= sigma' <= 1 with
a > 0.  ``SLOPE_INTERVALS`` is the one registry of named activations;
leaky ReLU is parameterised by its negative slope.  Non-monotone activations
(gelu, silu/swish, mish) have negative slopes somewhere and are refused.
Leaky ReLU is computed as max(x, a x) (``leaky_relu``), which keeps the slope
a exact in every dtype.  Every function here is written with ``keras.ops``
and runs on the TensorFlow, JAX and PyTorch backends.

Example:

>>> activation = get("leaky_relu", negative_slope=0.1)
>>> activation.slopes
(0.1, 1.0)
"""

import dataclasses
import functools
import math

import keras
import numpy as np

from contractive_keras import backend
from contractive_keras.layers import dispatch

#: name -> (lo, hi): sigma' in [lo, hi] everywhere (Clarke derivative).
#: "leaky_relu" and "smooth_leaky_relu" take their lower slope as a parameter.
SLOPE_INTERVALS = {
    "tanh": (0.0, 1.0),
    "sigmoid": (0.0, 0.25),
    "softsign": (0.0, 1.0),
    "softplus": (0.0, 1.0),
    "relu": (0.0, 1.0),
    "relu6": (0.0, 1.0),
    "elu": (0.0, 1.0),
    "hard_sigmoid": (0.0, 1.0 / 6.0),
    "hard_tanh": (0.0, 1.0),
    "linear": (1.0, 1.0),
    "leaky_relu": None,
    "smooth_leaky_relu": None,
}
#: keras.activations.leaky_relu's default negative slope.
KERAS_LEAKY_RELU_SLOPE = 0.2


def leaky_relu(x, negative_slope):
    """max(x, a x) for 0 <= a <= 1: slopes a (x < 0) and 1 (x > 0), exact in every dtype.

    Not ``keras.activations.leaky_relu``: its TensorFlow kernel keeps the slope
    as a float32 attribute, so in float64 the slope is rounded (0.7 becomes
    0.69999998...), below the lower bound a certificate would use.  The max
    is ``dispatch.maximum`` (float64 stays float64 on every backend).
    """
    return dispatch.maximum(x, negative_slope * x)


def smooth_leaky_relu(x, negative_slope):
    """a x + (1 - a)(softplus(x) - log 2): slope a + (1 - a) sigmoid(x) in (a, 1), value 0 at 0."""
    return negative_slope * x + (1.0 - negative_slope) * (keras.ops.softplus(x) - math.log(2.0))


@dataclasses.dataclass(frozen=True)
class SlopedActivation:
    """An activation function together with the interval of its slopes.

    Attributes:
        name: the registry name, or the callable's name.
        fn: the function.
        slopes: (lo, hi) with lo <= sigma'(x) <= hi for all x.
    """

    name: str
    fn: object
    slopes: tuple

    def __call__(self, x):
        return self.fn(x)


def _check_declared(fn, slopes, name):
    """Secant slopes of ``fn`` on a grid over [-1e3, 1e3] must lie in ``slopes``.

    ``fn`` is called on a backend tensor, in float64 where the backend keeps
    it (JAX without ``jax_enable_x64`` computes in float32: the secants are
    then taken over the float32 grid points and allowed float32 rounding,
    about 2 eps32 |x| / |dx| <= 2e-6 on this grid, so the tolerance is 1e-5).
    """
    lo, hi = slopes
    grid = np.concatenate([-np.logspace(3, -4, 200), [0.0], np.logspace(-4, 3, 200)])
    dtype = backend.wide_float()
    grid = grid.astype(dtype).astype(np.float64)
    values = backend.to_numpy(fn(keras.ops.convert_to_tensor(grid, dtype)), np.float64)
    secants = np.diff(values) / np.diff(grid)
    tol = 1e-6 if dtype == "float64" else 1e-5
    if not np.all(np.isfinite(secants)) or np.any(secants < lo - tol) or np.any(secants > hi + tol):
        raise ValueError(
            f"activation {name!r} has secant slopes in [{secants.min():.4g}, {secants.max():.4g}] "
            f"on [-1e3, 1e3], outside the declared [{lo}, {hi}].")


def get(activation, slopes=None, negative_slope=None, check=False):
    """A ``SlopedActivation`` from a registry name or a callable.

    Args:
        activation: a name of ``SLOPE_INTERVALS`` or a callable.
        slopes: (lo, hi) for a callable (required), or None.
        negative_slope: the lower slope of "leaky_relu" / "smooth_leaky_relu"
            (default for "leaky_relu": Keras' 0.2).
        check: verify a callable's declared slopes on a grid.

    Raises:
        ValueError: an unknown name, a callable without slopes, slopes given
            for a named activation, an invalid interval.
    """
    if isinstance(activation, str):
        if activation not in SLOPE_INTERVALS:
            raise ValueError(
                f"activation={activation!r} has no known slope interval; known names: "
                f"{sorted(SLOPE_INTERVALS)}, or pass a callable with its slope interval.")
        if slopes is not None:
            raise ValueError(f"slopes apply to callables; {activation!r} is known.")
        if activation in ("leaky_relu", "smooth_leaky_relu"):
            if negative_slope is None:
                if activation == "smooth_leaky_relu":
                    raise ValueError("smooth_leaky_relu needs its negative_slope.")
                negative_slope = KERAS_LEAKY_RELU_SLOPE
            a = float(negative_slope)
            if not 0.0 <= a <= 1.0:
                raise ValueError(f"negative_slope must be in [0, 1], got {negative_slope!r}.")
            base = leaky_relu if activation == "leaky_relu" else smooth_leaky_relu
            return SlopedActivation(activation, functools.partial(base, negative_slope=a),
                                    (a, 1.0))
        return SlopedActivation(activation, keras.activations.get(activation),
                                SLOPE_INTERVALS[activation])
    if not callable(activation) or slopes is None:
        raise ValueError(
            f"activation={activation!r}: a custom activation must be a callable given "
            f"with its slope interval; known names: {sorted(SLOPE_INTERVALS)}.")
    lo, hi = (float(v) for v in slopes)
    if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi and hi > 0.0):
        raise ValueError(f"slopes must satisfy lo <= hi, hi > 0 (finite), got {slopes!r}.")
    name = getattr(activation, "__name__", type(activation).__name__)
    if check:
        _check_declared(activation, (lo, hi), name)
    return SlopedActivation(name, activation, (lo, hi))
