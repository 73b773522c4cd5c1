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
"""

import tensorflow as tf


def rms_norm(structure):
    """Root mean square over every element of a nested structure."""
    leaves = tf.nest.flatten(structure)
    total = tf.add_n([tf.reduce_sum(tf.square(leaf)) for leaf in leaves])
    count = tf.add_n([tf.cast(tf.size(leaf), total.dtype) for leaf in leaves])
    return tf.sqrt(total / count)


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
        return tf.nest.map_structure(
            lambda a, b: self.atol + self.rtol * tf.maximum(tf.abs(a),
                                                            tf.abs(b)),
            y0, y1)

    def error_ratio(self, y0, y1, error):
        """The RMS error relative to the tolerance (accept when <= 1)."""
        scale = self._scale(y0, y1)
        return rms_norm(tf.nest.map_structure(tf.divide, error, scale))

    def next_step_size(self, h, ratio, accepted):
        """The step after a step of size ``h`` with error ``ratio``."""
        h = tf.convert_to_tensor(h)
        ratio = tf.cast(ratio, h.dtype)
        lower = tf.where(accepted, tf.ones_like(h),
                         tf.cast(self.min_factor, h.dtype))
        optimal = self.safety * tf.math.divide_no_nan(
            tf.ones_like(ratio), ratio ** (1.0 / self.order))
        factor = tf.where(ratio > 0, optimal, self.max_factor)
        return h * tf.clip_by_value(factor, lower, self.max_factor)

    def initial_step_size(self, fn, t0, y0, f0):
        """Hairer's starting step; evaluates ``fn`` once more."""
        dtype = t0.dtype
        scale = self._scale(y0, y0)
        d0 = tf.cast(rms_norm(tf.nest.map_structure(tf.divide, y0, scale)),
                     dtype)
        d1 = tf.cast(rms_norm(tf.nest.map_structure(tf.divide, f0, scale)),
                     dtype)
        tiny = tf.constant(1e-5, dtype)
        h0 = tf.where((d0 < tiny) | (d1 < tiny), tf.constant(1e-6, dtype),
                      0.01 * d0 / tf.maximum(d1, tiny))
        y1 = tf.nest.map_structure(lambda y, f: y + tf.cast(h0, y.dtype) * f,
                                   y0, f0)
        f1 = fn(t0 + h0, y1)
        d2 = tf.cast(rms_norm(tf.nest.map_structure(
            lambda a, b, s: (a - b) / s, f1, f0, scale)), dtype) / h0
        largest = tf.maximum(d1, d2)
        h1 = tf.where(
            largest <= 1e-15, tf.maximum(tf.constant(1e-6, dtype), h0 * 1e-3),
            (0.01 / tf.maximum(largest, 1e-15)) ** (1.0 / self.order))
        return tf.minimum(100.0 * h0, h1)
