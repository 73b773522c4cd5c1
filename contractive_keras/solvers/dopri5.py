"""Dormand-Prince 5(4): an embedded explicit Runge-Kutta pair, 7 stages."""

from contractive_keras.solvers.runge_kutta import ButcherTableau
from contractive_keras.solvers.runge_kutta import EmbeddedRungeKutta

_B = (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0.0)
_B_EMBEDDED = (5179 / 57600, 0.0, 7571 / 16695, 393 / 640, -92097 / 339200,
               187 / 2100, 1 / 40)


class Dopri5(EmbeddedRungeKutta):
    """Dormand & Prince (1980) RK5(4)7FM, this package's own implementation.

    Order 5 (the solution is propagated with the 5th-order weights, the
    4th-order embedded weights give the error estimate), 7 stages with
    first-same-as-last: 6 new evaluations per attempted step. Adaptive:
    use it through ``solve(..., method=Dopri5(), rtol=..., atol=...)``,
    which controls the step with
    :class:`~contractive_keras.solvers.step_size_control.IController`.
    The name "dopri5" selects it (``Dopri5()``); unlike tfp's loop
    ("tfp_dopri5"), it compiles with XLA, has a gradient under XLA (the
    default "backprop": recorded steps recomputed one at a time,
    :mod:`~contractive_keras.solvers.adaptive_backprop`) and reports
    accepted and rejected steps.

    Butcher tableau (Hairer, Norsett & Wanner, *Solving ODEs I*, table
    II.5.2)::

        0    |
        1/5  | 1/5
        3/10 | 3/40        9/40
        4/5  | 44/45       -56/15      32/9
        8/9  | 19372/6561  -25360/2187 64448/6561 -212/729
        1    | 9017/3168   -355/33     46732/5247 49/176  -5103/18656
        1    | 35/384      0           500/1113   125/192 -2187/6784  11/84
        -----+---------------------------------------------------------------
        b    | 35/384      0           500/1113   125/192 -2187/6784  11/84  0
        b*   | 5179/57600  0           7571/16695 393/640 -92097/339200
             |                                            187/2100    1/40

    Args:
        max_steps: the most steps (accepted or rejected) per output
            interval; a static bound, needed by XLA. If it is exhausted the
            state is set to NaN. The gradient under XLA preallocates one
            state per step for ``max_steps`` steps per output interval.
        safety, min_factor, max_factor: step-size controller settings (see
            :class:`~contractive_keras.solvers.step_size_control.IController`).

    Example:

    >>> import tensorflow as tf
    >>> from contractive_keras import solvers
    >>> y1 = solvers.odeint(lambda t, y: -y, tf.constant(1.0, tf.float64), 1.0,
    ...                     method=Dopri5(), rtol=1e-8, atol=1e-8)
    >>> round(float(y1), 7)
    0.3678794
    """

    tableau = ButcherTableau(
        a=((1 / 5,),
           (3 / 40, 9 / 40),
           (44 / 45, -56 / 15, 32 / 9),
           (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
           (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
           _B[:6]),
        b=_B,
        c=(0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0),
        b_error=tuple(b - e for b, e in zip(_B, _B_EMBEDDED)),
    )
    order = 5
    name = "dopri5_tf"

    def __init__(self, max_steps=1000, safety=0.9, min_factor=0.2,
                 max_factor=10.0):
        if isinstance(max_steps, bool) or not isinstance(max_steps, int) or (
                max_steps < 1):
            raise ValueError(
                f"max_steps must be a positive int, got {max_steps!r}.")
        self.max_steps = max_steps
        self.safety = safety
        self.min_factor = min_factor
        self.max_factor = max_factor

    def __repr__(self):
        return f"Dopri5(max_steps={self.max_steps})"
