"""Explicit midpoint method (RK2): order 2, two stages."""

from contractive_keras.solvers.runge_kutta import ButcherTableau
from contractive_keras.solvers.runge_kutta import ExplicitRungeKutta


class Midpoint(ExplicitRungeKutta):
    """Explicit midpoint rule, ``y_next = y + h f(t + h/2, y + h/2 f(t, y))``.

    Order 2, two evaluations of the vector field per step, fixed step size,
    no error estimate. Butcher tableau::

        0   |
        1/2 | 1/2
        ----+---------
            | 0    1

    Example:

    >>> import tensorflow as tf
    >>> float(Midpoint().step(lambda t, y: -y, 0.0, tf.constant(1.0), 0.5))
    0.625
    """

    tableau = ButcherTableau(a=((0.5,),), b=(0.0, 1.0), c=(0.0, 0.5))
    order = 2
    name = "midpoint"
