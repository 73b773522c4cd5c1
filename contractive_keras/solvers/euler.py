"""Forward Euler: order 1, one stage."""

from contractive_keras.solvers.runge_kutta import ButcherTableau
from contractive_keras.solvers.runge_kutta import ExplicitRungeKutta


class Euler(ExplicitRungeKutta):
    """Forward (explicit) Euler method, ``y_next = y + h f(t, y)``.

    Order 1, one evaluation of the vector field per step, fixed step size,
    no error estimate. Butcher tableau::

        0 |
        --+--
          | 1

    Example:

    >>> import tensorflow as tf
    >>> float(Euler().step(lambda t, y: -y, 0.0, tf.constant(1.0), 0.5))
    0.5
    """

    tableau = ButcherTableau(a=(), b=(1.0,), c=(0.0,))
    order = 1
    name = "euler"
