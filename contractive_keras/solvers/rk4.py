"""Classic fourth-order Runge-Kutta method: order 4, four stages."""

from contractive_keras.solvers.runge_kutta import ButcherTableau
from contractive_keras.solvers.runge_kutta import ExplicitRungeKutta


class RK4(ExplicitRungeKutta):
    """The classic Runge-Kutta method (Kutta, 1901).

    Order 4, four evaluations of the vector field per step, fixed step
    size, no error estimate. Butcher tableau::

        0   |
        1/2 | 1/2
        1/2 | 0    1/2
        1   | 0    0    1
        ----+--------------------
            | 1/6  1/3  1/3  1/6

    Example:

    >>> import tensorflow as tf
    >>> round(float(RK4().step(lambda t, y: -y, 0.0, tf.constant(1.0), 0.5)), 6)
    0.606771
    """

    tableau = ButcherTableau(
        a=((0.5,), (0.0, 0.5), (0.0, 0.0, 1.0)),
        b=(1.0 / 6.0, 1.0 / 3.0, 1.0 / 3.0, 1.0 / 6.0),
        c=(0.0, 0.5, 0.5, 1.0),
    )
    order = 4
    name = "rk4"
