"""The few array operations of bounds/ that differ per Keras backend (the one dispatch).

Everything else in bounds/ that runs inside a graph is written with
``keras.ops`` and runs under TensorFlow, JAX and PyTorch.  Here sit:

* ``wide()``: the dtype the guarantees compute in, "float64" wherever the
  backend keeps it in graphs (TensorFlow, PyTorch, JAX with
  ``jax_enable_x64``), else "float32"; the package never turns x64 on;
* ``eigvalsh``: TensorFlow's eigenvalue-only kernel (faster than ``eigh``,
  and the former TensorFlow code path), ``keras.ops.eigh`` elsewhere;
* ``next_up``: the next float toward +inf in the tensor's own dtype
  (``keras.ops.nextafter`` computes in float64 on TensorFlow and PyTorch
  and so cannot step a float32 by one ulp);
* ``eig_slack`` / ``unit``: the relative rounding allowances the
  certified in-graph bounds use in each dtype (their justification below);
* ``matmul`` / ``maximum`` / ``minimum``: ``keras.ops``'s, except that on
  JAX and PyTorch they call the backend's own function, since Keras's dtype
  promotion turns float64 into float32 there;
* ``is_tracer`` / ``compile_eager``: whether a value is traced by
  ``jax.jit``, and ``jax.jit`` for eager calls of loop-heavy functions.

TensorFlow is imported only on the TensorFlow backend, lazily.
"""

import keras
import numpy as np

from contractive_keras import backend

# Relative slack of a float64 eigenvalue of a Gram matrix of a few hundred rows
# at most (LAPACK's symmetric eigensolver is backward stable, errors ~ n 2^-52 ||A||).
F64_SLACK = 1e-13


def wide():
    """"float64" where the backend keeps float64 in graphs, else "float32"."""
    return backend.wide_float()


def dtype_name(dtype):
    """A dtype of any backend (or NumPy, or a string) as Keras's string name."""
    if hasattr(dtype, "as_numpy_dtype"):          # tf.DType
        dtype = dtype.as_numpy_dtype
    return keras.backend.standardize_dtype(dtype)


def unit(dtype):
    """Machine epsilon (2 u) of a floating dtype of any backend."""
    return float(np.finfo(np.dtype(dtype_name(dtype))).eps)


def as_wide(value):
    """A tensor, variable or array as a backend tensor in the ``wide()`` dtype."""
    return keras.ops.cast(keras.ops.convert_to_tensor(value), wide())


def eig_slack(dtype, rows, cols):
    """Relative allowance on lambda_max(X^T X) of an (rows, cols) X, computed in ``dtype``.

    float64: ``F64_SLACK`` (the package's float64 allowance, unchanged).
    float32 (JAX without x64): forming G = X^T X errs by at most
    gamma_rows |X|^T |X| entrywise, of spectral norm <= rows * min(rows, cols)
    u ||X||_2^2 (||X||_F^2 <= rank ||X||_2^2); a backward-stable symmetric
    eigensolver adds p(cols) u ||G||, p(n) <= 8 n taken; Weyl's inequality
    sums them.  The allowance is that sum, with 10 % and 16 u to spare for
    the few operations around it.
    """
    if dtype_name(dtype) == "float64":
        return F64_SLACK
    u = unit(dtype) / 2
    return 1.1 * u * (rows * min(rows, cols) + 8 * cols + 16)


def arith_slack(dtype):
    """Relative allowance for a short chain (< 16) of roundings in ``dtype``.

    float64 keeps the package's ``F64_SLACK`` (far above 16 u); other
    dtypes get 16 u.
    """
    if dtype_name(dtype) == "float64":
        return F64_SLACK
    return 16 * unit(dtype) / 2


def eigvalsh(matrix):
    """Ascending eigenvalues of symmetric matrices (..., n, n)."""
    if backend.is_tensorflow():
        import tensorflow as tf  # pylint: disable=import-outside-toplevel
        return tf.linalg.eigvalsh(matrix)
    return keras.ops.eigh(matrix)[0]


def next_up(x):
    """The next representable value toward +inf, elementwise, in x's own dtype."""
    name = backend.name()
    if name == "tensorflow":
        import tensorflow as tf  # pylint: disable=import-outside-toplevel
        return tf.math.nextafter(x, tf.constant(np.inf, x.dtype))
    if name == "jax":
        import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
        return jnp.nextafter(x, jnp.asarray(np.inf, x.dtype))
    if name == "torch":
        import torch  # pylint: disable=import-outside-toplevel
        return torch.nextafter(x, torch.full_like(x, np.inf))
    return np.nextafter(x, np.asarray(np.inf, x.dtype))


def is_tracer(value):
    """Whether ``value`` is a JAX tracer (inside ``jax.jit`` / a stateless train step)."""
    if backend.name() != "jax":
        return False
    import jax  # pylint: disable=import-outside-toplevel
    return isinstance(value, jax.core.Tracer)


# Keras 3's dtype promotion (``keras.src.backend.common.dtypes.result_type``)
# maps float64 to float32 on every backend but TensorFlow, so ``keras.ops``
# ``matmul``, ``maximum`` and ``minimum`` silently return float32 for float64
# inputs on PyTorch and JAX; these three call the backend's own function there.
def _native(name):
    if name == "jax":
        import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
        return jnp
    import torch  # pylint: disable=import-outside-toplevel
    return torch


def _torch_pair(torch, x, y):
    ref = x if torch.is_tensor(x) else y
    x = x if torch.is_tensor(x) else torch.as_tensor(x, dtype=ref.dtype, device=ref.device)
    y = y if torch.is_tensor(y) else torch.as_tensor(y, dtype=ref.dtype, device=ref.device)
    return x, y


def matmul(a, b, transpose_a=False, transpose_b=False):
    """``keras.ops.matmul`` that keeps float64 (see above), of a^T / b^T if asked.

    On TensorFlow the transposes are ``tf.matmul``'s own flags (the kernel,
    and so the rounding, that the TensorFlow code always used: the zoo's
    logits stay bit for bit); elsewhere the operand is transposed first.
    """
    name = backend.name()
    if name == "tensorflow" and (transpose_a or transpose_b):
        import tensorflow as tf  # pylint: disable=import-outside-toplevel
        return tf.matmul(a, b, transpose_a=transpose_a, transpose_b=transpose_b)
    a = keras.ops.transpose(a) if transpose_a else a
    b = keras.ops.transpose(b) if transpose_b else b
    if name not in ("jax", "torch"):
        return keras.ops.matmul(a, b)
    a, b = keras.ops.convert_to_tensor(a), keras.ops.convert_to_tensor(b)
    return _native(name).matmul(a, b)


def _elementwise(op, x, y):
    """``keras.ops.<op>(x, y)``, or the backend's own ``<op>`` on JAX and torch (keeps float64)."""
    name = backend.name()
    if name == "jax":
        return getattr(_native(name), op)(x, y)
    if name == "torch":
        torch = _native(name)
        return getattr(torch, op)(*_torch_pair(torch, x, y))
    return getattr(keras.ops, op)(x, y)


def maximum(x, y):
    """``keras.ops.maximum`` that keeps float64 (see above); y may be a Python float."""
    return _elementwise("maximum", x, y)


def minimum(x, y):
    """``keras.ops.minimum`` that keeps float64 (see above); y may be a Python float."""
    return _elementwise("minimum", x, y)


def compile_eager(fn):
    """``jax.jit(fn)`` on JAX (an eager call of a loop-heavy function would
    dispatch op by op), ``fn`` itself elsewhere."""
    if backend.name() != "jax":
        return fn
    import jax  # pylint: disable=import-outside-toplevel
    return jax.jit(fn)
