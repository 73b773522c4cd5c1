"""The one place where the layers' code differs by Keras backend.

The layers are written with ``keras.ops`` and run under TensorFlow, JAX and
PyTorch.  A few small operations are done differently per backend: on
TensorFlow to keep its graphs (and so its numbers and speed) what they were
before the layers became backend-neutral, elsewhere because Keras (3.15)
computes ``keras.ops.matmul``, ``maximum`` and ``minimum`` of float64
tensors in float32 on every backend but TensorFlow (its type promotion maps
64-bit results to 32 bits), which would silently make a float64 layer a
float32 one.  TensorFlow, JAX and PyTorch are imported only on their backend:

* :func:`matmul` with ``transpose_a`` / ``transpose_b``: TensorFlow's
  ``tf.linalg.matmul`` flags (no transposed copy; the products the zoo's
  reference logits were recorded with); elsewhere ``jax.numpy.matmul`` /
  ``torch.matmul`` of a swapped view (XLA and PyTorch fuse the transpose),
  which keep the dtype.
* :func:`maximum`, :func:`minimum`: ``keras.ops`` except for 64-bit
  tensors off TensorFlow, where a ``where`` selects the same element.
* :func:`select_step`, the per-step weight slice: a static slice when the
  step index is known while tracing (a Python int, a ``tf.constant`` of the
  unrolled loop: a dense gradient), else ``tf.gather`` on TensorFlow and
  ``keras.ops.take`` elsewhere (which accepts an int32 backend scalar, a
  traced one inside ``fori_loop`` included).
* :func:`to_numpy` and :func:`concrete_numpy`: a variable's value as NumPy when it is concrete
  (eager TensorFlow, an untraced JAX array, any PyTorch tensor), else None
  (inside a ``tf.function`` graph or a JAX trace), for checks done once at
  build time.
"""

import keras
import numpy as np

from contractive_keras import backend


def matmul(a, b, transpose_a=False, transpose_b=False):
    """a @ b, either operand's last two axes swapped first (batched as ``keras.ops.matmul``)."""
    name = backend.name()
    if name == "tensorflow":
        import tensorflow as tf  # pylint: disable=import-outside-toplevel
        return tf.linalg.matmul(a, b, transpose_a=transpose_a, transpose_b=transpose_b)
    a, b = keras.ops.convert_to_tensor(a), keras.ops.convert_to_tensor(b)
    if transpose_a:
        a = keras.ops.swapaxes(a, -1, -2)
    if transpose_b:
        b = keras.ops.swapaxes(b, -1, -2)
    if name == "jax":
        import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
        return jnp.matmul(a, b)
    if name == "torch":
        import torch  # pylint: disable=import-outside-toplevel
        return torch.matmul(a, b)
    return keras.ops.matmul(a, b)


def _wide_off_tensorflow(x):
    return (not backend.is_tensorflow()
            and keras.backend.standardize_dtype(x.dtype) in ("float64", "int64"))


def maximum(x, y):
    """Elementwise max(x, y) in the dtype of tensor ``x`` (``y`` may be a tensor of it)."""
    x = keras.ops.convert_to_tensor(x)
    if _wide_off_tensorflow(x):
        return keras.ops.where(x >= y, x, y)
    return keras.ops.maximum(x, y)


def minimum(x, y):
    """Elementwise min(x, y) in the dtype of tensor ``x``."""
    x = keras.ops.convert_to_tensor(x)
    if _wide_off_tensorflow(x):
        return keras.ops.where(x <= y, x, y)
    return keras.ops.minimum(x, y)


def static_index(step):
    """``step`` as a Python int when it is known while tracing, else None."""
    if isinstance(step, (int, np.integer)):
        return int(step)
    if backend.is_tensorflow():
        import tensorflow as tf  # pylint: disable=import-outside-toplevel
        value = tf.get_static_value(step)
        return None if value is None else int(value)
    return None


def select_step(stacked, step):
    """``stacked[step]``: the slice of a stacked (steps, ...) weight used at solver step ``step``.

    ``step`` is a Python int or an int32 scalar of the backend (traced inside
    a loop or not).
    """
    index = static_index(step)
    if index is not None:           # unrolled loop: a slice, dense gradient
        return stacked[index]
    if backend.is_tensorflow():
        import tensorflow as tf  # pylint: disable=import-outside-toplevel
        return tf.gather(stacked, step)
    return keras.ops.take(stacked, step, axis=0)


def to_numpy(value, dtype=None):
    """``backend.to_numpy`` that reads a Keras variable as a tensor first.

    (NumPy 2 warns when it converts a TensorFlow variable itself, and the
    warning is an error where a caller turns warnings into errors.)
    """
    if isinstance(value, keras.Variable):
        value = keras.ops.copy(value)
    return backend.to_numpy(value, dtype)


def concrete_numpy(value, dtype=None):
    """``value`` (a Keras variable or a tensor) as NumPy if it is concrete here, else None."""
    tensor = value.value if isinstance(value, keras.Variable) else value
    name = backend.name()
    if name == "tensorflow":
        import tensorflow as tf  # pylint: disable=import-outside-toplevel
        if not tf.executing_eagerly():
            return None
    elif name == "jax":
        import jax  # pylint: disable=import-outside-toplevel
        if isinstance(tensor, jax.core.Tracer):
            return None
    return to_numpy(value, dtype)
