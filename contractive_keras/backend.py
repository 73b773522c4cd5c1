"""The Keras backend the package runs on, and what needs TensorFlow.

The layers, constraints, regularizers, losses and fixed-step solvers are
written with ``keras.ops`` and run under ``KERAS_BACKEND=tensorflow``,
``jax`` and ``torch``; the certificates act on weights as NumPy float64
arrays whatever built them.  A few parts are TensorFlow code by nature
(tfp's adaptive solvers, the SavedModel export, ``tf.distribute``): they
call :func:`require_tensorflow`, which refuses in one line naming the
backend in use and the alternative.  TensorFlow itself is imported only
by those parts, so the package imports on a machine without it.

Example:

>>> from contractive_keras import backend
>>> backend.name() in ("tensorflow", "jax", "torch", "numpy")
True
"""

import keras
import numpy as np

BACKENDS = ("tensorflow", "jax", "torch")


def name():
    """The Keras backend of this process ("tensorflow", "jax", "torch", ...)."""
    return keras.backend.backend()


def is_tensorflow():
    """Whether Keras runs on TensorFlow (where every part of the package works)."""
    return name() == "tensorflow"


def require_tensorflow(feature, alternative=None):
    """Raises a one-line NotImplementedError unless Keras runs on TensorFlow.

    Args:
        feature: what was asked for, e.g. "the 'tfp_dopri5' solver".
        alternative: what to use instead on this backend, or None.

    Raises:
        NotImplementedError: on any backend but TensorFlow.
    """
    if is_tensorflow():
        return
    instead = f"use {alternative} on this backend, or " if alternative else ""
    raise NotImplementedError(
        f"{feature} needs Keras's TensorFlow backend; this process uses the {name()!r} "
        f"backend: {instead}set KERAS_BACKEND=tensorflow.")


def float64_in_graph():
    """Whether backend tensors may be float64 here.

    JAX keeps float64 only with ``jax_enable_x64``; without it, computations
    that the guarantees want in float64 run in float32 and round outwards
    (see the callers).
    """
    if name() != "jax":
        return True
    import jax  # pylint: disable=import-outside-toplevel
    return bool(jax.config.jax_enable_x64)


def wide_float():
    """"float64" where the backend keeps it in graphs, else "float32"."""
    return "float64" if float64_in_graph() else "float32"


def to_numpy(value, dtype=None):
    """A backend tensor, Keras variable, NumPy array or nested list as a NumPy array.

    Args:
        value: any of those (a ``keras.Variable`` is read).
        dtype: optional NumPy dtype of the result (e.g. ``np.float64`` for
            the certificates).
    """
    if isinstance(value, keras.Variable):
        value = keras.ops.copy(value)   # a tensor: NumPy 2 warns on np.array(variable)
    if hasattr(value, "detach") and name() == "torch":
        value = value.detach().cpu().numpy()   # Keras's np.array(tensor) warns under NumPy 2
    elif not isinstance(value, (np.ndarray, np.generic, list, tuple, float, int)):
        value = keras.ops.convert_to_numpy(value)
    return np.asarray(value, dtype=dtype)
