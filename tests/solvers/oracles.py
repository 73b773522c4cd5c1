"""Problems with known solutions shared by the solver tests (no TensorFlow
import at module level: the backends-marked tests use it too)."""

import numpy as np
import scipy.linalg

# A damped rotation: y' = A y, y(t) = expm(A t) y0.
LINEAR_MATRIX = np.array([[-0.5, 2.0, 0.0],
                          [-2.0, -0.5, 0.3],
                          [0.0, -0.3, -1.0]])
LINEAR_Y0 = np.array([[1.0, -0.5, 0.25], [0.3, 0.2, -1.0]])


def linear_field(dtype="float64"):
    """fn(t, y) = y A^T for a batch of row vectors y (TensorFlow)."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    matrix = tf.constant(LINEAR_MATRIX.T, dtype)
    return lambda t, y: tf.matmul(y, matrix)


def linear_exact(t, y0=LINEAR_Y0):
    """Exact solution of the linear problem at time t (t0 = 0)."""
    return y0 @ scipy.linalg.expm(LINEAR_MATRIX * t).T


def rk_stability_polynomial(order):
    """R(z) of the explicit RK schemes with s = p stages (p <= 4)."""
    factorials = [1.0, 1.0, 2.0, 6.0, 24.0]
    return lambda z: sum(z ** j / factorials[j] for j in range(order + 1))


def observed_orders(errors, refinement=2.0):
    """log(e_i / e_{i+1}) / log(refinement) for a refinement study."""
    errors = np.asarray(errors)
    return np.log(errors[:-1] / errors[1:]) / np.log(refinement)
