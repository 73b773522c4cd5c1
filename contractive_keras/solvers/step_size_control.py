"""Step-size control for embedded Runge-Kutta pairs.

The error of a step is measured as in Hairer, Norsett & Wanner, *Solving
ODEs I*, eq. II.4.11 (the convention of scipy, torchdiffeq and diffrax):

    ratio = sqrt(mean_i (err_i / (atol + rtol * max(|y0_i|, |y1_i|)))^2),

the mean running over every element of every leaf of the state. A step is
accepted when ratio <= 1, and the next step is (integral controller, eq.
II.4.13)

    h_next = h * clip(safety * ratio^(-1/q), min_factor, max_factor),

with q = order of the propagated solution, min_factor replaced by 1 after
an accepted step (never shrink after success). The first step follows the
algorithm of section II.4 ("Starting step size"), at the cost of one
evaluation of the vector field.

Written with ``keras.ops``: the same controller drives the TensorFlow loop
(:mod:`~contractive_keras.solvers.adaptive_loop`) and the JAX / PyTorch
one (:mod:`~contractive_keras.solvers.embedded_loop`).  Constants become
tensors of the time's dtype directly (no float32 detour).
"""

import keras
import numpy as np

ops = keras.ops


def _const(value, dtype):
    """``value`` as a tensor of ``dtype``, from its float64 value."""
    return ops.convert_to_tensor(np.asarray(value, np.float64), dtype)


def _dtype(value):
    return keras.backend.standardize_dtype(value.dtype)


def rms_norm(structure):
    """Root mean square over every element of a nested structure."""
    leaves = keras.tree.flatten(structure)
    total = ops.sum(ops.square(leaves[0]))
    count = ops.cast(ops.size(leaves[0]), _dtype(total))
    for leaf in leaves[1:]:
        total = total + ops.sum(ops.square(leaf))
        count = count + ops.cast(ops.size(leaf), _dtype(total))
    return ops.sqrt(total / count)


class IController:
    """Integral step-size controller with Hairer's starting step.

    Args:
        rtol, atol: relative and absolute tolerances (> 0).
        order: the order q of the propagated solution (5 for Dopri5).
        safety: factor < 1 on the optimal step.
        min_factor, max_factor: bounds on the change of step per attempt.

    Example:

    >>> controller = IController(rtol=1e-6, atol=1e-6, order=5)
    >>> float(controller.next_step_size(0.1, 0.5, accepted=True)) > 0.1
    True
    """

    def __init__(self, rtol, atol, order, safety=0.9, min_factor=0.2,
                 max_factor=10.0):
        self.rtol = rtol
        self.atol = atol
        self.order = order
        self.safety = safety
        self.min_factor = min_factor
        self.max_factor = max_factor

    def _scale(self, y0, y1):
        def leaf(a, b):
            dtype = _dtype(a)
            return _const(self.atol, dtype) + _const(self.rtol, dtype) * ops.maximum(
                ops.abs(a), ops.abs(b))
        return keras.tree.map_structure(leaf, y0, y1)

    def error_ratio(self, y0, y1, error):
        """The RMS error relative to the tolerance (accept when <= 1)."""
        scale = self._scale(y0, y1)
        return rms_norm(keras.tree.map_structure(lambda e, s: e / s, error, scale))

    def next_step_size(self, h, ratio, accepted):
        """The step after a step of size ``h`` with error ``ratio``."""
        h = ops.convert_to_tensor(h)
        dtype = _dtype(h)
        ratio = ops.cast(ratio, dtype)
        lower = ops.where(accepted, ops.ones_like(h), _const(self.min_factor, dtype))
        optimal = _const(self.safety, dtype) * ops.divide_no_nan(
            ops.ones_like(ratio), ratio ** (1.0 / self.order))
        largest = _const(self.max_factor, dtype)
        factor = ops.where(ratio > 0, optimal, largest)
        return h * ops.minimum(ops.maximum(factor, lower), largest)

    def initial_step_size(self, fn, t0, y0, f0):
        """Hairer's starting step; evaluates ``fn`` once more."""
        dtype = _dtype(t0)
        scale = self._scale(y0, y0)
        d0 = ops.cast(rms_norm(keras.tree.map_structure(lambda y, s: y / s, y0, scale)),
                      dtype)
        d1 = ops.cast(rms_norm(keras.tree.map_structure(lambda f, s: f / s, f0, scale)),
                      dtype)
        tiny = _const(1e-5, dtype)
        h0 = ops.where(ops.logical_or(d0 < tiny, d1 < tiny), _const(1e-6, dtype),
                       _const(0.01, dtype) * d0 / ops.maximum(d1, tiny))
        y1 = keras.tree.map_structure(lambda y, f: y + ops.cast(h0, _dtype(y)) * f,
                                      y0, f0)
        f1 = fn(t0 + h0, y1)
        d2 = ops.cast(rms_norm(keras.tree.map_structure(
            lambda a, b, s: (a - b) / s, f1, f0, scale)), dtype) / h0
        largest = ops.maximum(d1, d2)
        floor = _const(1e-15, dtype)
        h1 = ops.where(
            largest <= floor, ops.maximum(_const(1e-6, dtype), h0 * _const(1e-3, dtype)),
            (_const(0.01, dtype) / ops.maximum(largest, floor)) ** (1.0 / self.order))
        return ops.minimum(_const(100.0, dtype) * h0, h1)
