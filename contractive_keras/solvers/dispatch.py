"""The one place where the solvers' code differs by Keras backend.

Everything else in ``solvers/`` is written with ``keras.ops`` and
``keras.tree`` and runs under ``KERAS_BACKEND=tensorflow``, ``jax`` and
``torch``.  What the backends do differently sits here, behind five
functions:

* :func:`static_value` -- a value known before the computation runs
  (Python numbers, NumPy, eager tensors, TensorFlow graph constants), or
  None (a traced value);
* :func:`could_record` -- whether a gradient may be taken of what is being
  computed (TensorFlow: a tape records; PyTorch: grad mode; JAX: always
  assumed, as a trace cannot tell);
* :func:`in_xla_context` -- whether the code is being compiled by XLA
  (TensorFlow's ``jit_compile``; JAX always compiles its loops);
* :func:`loop` -- a loop of ``count`` iterations with a gradient:
  ``tf.while_loop`` with ``maximum_iterations`` (TensorFlow: compiles with
  XLA, differentiable), ``keras.ops.fori_loop`` elsewhere (JAX: a
  ``lax.scan`` under static bounds, reverse-differentiable; PyTorch: a
  Python loop that autograd records);
* :func:`recompute` -- run a function so that its intermediates are
  recomputed in the backward pass instead of kept: ``tf.recompute_grad``,
  ``jax.checkpoint``, ``torch.utils.checkpoint.checkpoint`` (non-reentrant,
  so that closed-over parameters get their gradients).

The adaptive loop of ``Dopri5`` is a module per backend, chosen in
``interface._solve_embedded``: :mod:`~contractive_keras.solvers.adaptive_loop`
(TensorFlow), :mod:`~contractive_keras.solvers.embedded_loop` (PyTorch, in
``keras.ops``) and :mod:`~contractive_keras.solvers.embedded_jax` (JAX: the
same loop inside a ``custom_vjp``).  TensorFlow-only parts (tfp's solvers, the
adjoint, ``write_summaries``) refuse through ``backend.require_tensorflow``.

TensorFlow, JAX and PyTorch are each imported only inside the branch of
their backend, so this module imports where TensorFlow is not installed.
"""

import sys

import keras
import numpy as np

from contractive_keras import backend


def _tensorflow_tensor(value):
    tf = sys.modules.get("tensorflow")
    return tf is not None and isinstance(value, (tf.Tensor, tf.Variable))


def static_value(value):
    """``value`` as a NumPy value when known at trace time, else None.

    Python numbers and NumPy arrays are returned as NumPy values; an eager
    tensor (TensorFlow eager, a concrete JAX array, a PyTorch tensor) is
    read; a TensorFlow graph tensor is read when it is constant-foldable; a
    JAX tracer and a ``keras.Variable`` (it may change) give None.
    """
    if isinstance(value, keras.Variable):
        return None
    if isinstance(value, (bool, int, float, np.number, np.ndarray, list, tuple)):
        return np.asarray(value)
    if _tensorflow_tensor(value):
        import tensorflow as tf  # pylint: disable=import-outside-toplevel
        static = tf.get_static_value(value)
        return None if static is None else np.asarray(static)
    jax = sys.modules.get("jax")
    if jax is not None and isinstance(value, jax.core.Tracer):
        return None
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    try:
        return np.asarray(keras.ops.convert_to_numpy(value))
    except Exception:  # pylint: disable=broad-except
        return None


def could_record():
    """Whether a gradient may be taken of what is computed now."""
    name = backend.name()
    if name == "tensorflow":
        from tensorflow.python.eager import record  # pylint: disable=import-outside-toplevel,g-direct-tensorflow-import
        return record.could_possibly_record()
    if name == "torch":
        import torch  # pylint: disable=import-outside-toplevel
        return torch.is_grad_enabled()
    return True


def in_xla_context():
    """Whether the code being traced is compiled by XLA (JAX: always)."""
    name = backend.name()
    if name == "tensorflow":
        import tensorflow as tf  # pylint: disable=import-outside-toplevel
        from tensorflow.python.ops import control_flow_util  # pylint: disable=import-outside-toplevel,g-direct-tensorflow-import
        return control_flow_util.GraphOrParentsInXlaContext(
            tf.compat.v1.get_default_graph())
    return name == "jax"


def loop(body, first, direction, count, state, block=1):
    """``count`` iterations of ``state = body(k, state)``, k = first, first + direction, ...

    Args:
        body: ``body(k, state)`` with ``k`` an int32 scalar tensor
            (TensorFlow, JAX) or a Python int (PyTorch).
        first: Python int, the first index.
        direction: +1 or -1.
        count: Python int >= 1.
        state: nested structure of tensors.
        block: iterations per loop trip (TensorFlow only; the remainder runs
            after the loop).

    Returns:
        The final state.
    """
    if backend.is_tensorflow():
        import tensorflow as tf  # pylint: disable=import-outside-toplevel
        blocks, remainder = divmod(count, block)

        def blocked(k, state):
            for j in range(block):
                state = body(k + direction * j, state)
            return k + direction * block, state

        k, state = tf.while_loop(
            lambda k, state: True, blocked, (tf.constant(first, tf.int32), state),
            maximum_iterations=blocks)
        for j in range(remainder):
            state = body(k + direction * j, state)
        return state

    def indexed(i, state):
        return body(first + direction * i, state)

    return keras.ops.fori_loop(0, count, indexed, state)


def recompute(run, *args):
    """``run(*args)`` (a list of tensors), its intermediates recomputed for the gradient."""
    name = backend.name()
    if name == "tensorflow":
        import tensorflow as tf  # pylint: disable=import-outside-toplevel
        return tf.recompute_grad(run)(*args)
    if name == "jax":
        import jax  # pylint: disable=import-outside-toplevel
        return jax.checkpoint(run)(*args)
    if name == "torch":
        import torch  # pylint: disable=import-outside-toplevel
        from torch.utils import checkpoint  # pylint: disable=import-outside-toplevel
        if not torch.is_grad_enabled():
            return run(*args)
        return checkpoint.checkpoint(run, *args, use_reentrant=False)
    backend.require_tensorflow("gradient='checkpoint'", "gradient='backprop'")
    return run(*args)
