"""Gradients by the Keras backend's own autodiff, for backend-neutral tests.

The one place where the tests of certify and losses differentiate: JAX's
``jax.grad``, torch's ``backward`` or TensorFlow's ``GradientTape``.
TensorFlow is imported only when Keras runs on it.
"""

import keras
import numpy as np


def gradients(fn, *arrays):
    """d fn(*arrays) / d arrays[i] for every i, as NumPy arrays (fn returns a scalar)."""
    name = keras.backend.backend()
    if name == "jax":
        import jax  # pylint: disable=import-outside-toplevel

        values = [keras.ops.convert_to_tensor(a) for a in arrays]
        grads = jax.grad(fn, argnums=tuple(range(len(values))))(*values)
        return [np.asarray(g) for g in grads]
    if name == "torch":
        values = [keras.ops.convert_to_tensor(a).detach().requires_grad_(True) for a in arrays]
        fn(*values).backward()
        return [v.grad.detach().cpu().numpy() for v in values]
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    values = [tf.convert_to_tensor(a) for a in arrays]
    with tf.GradientTape() as tape:
        tape.watch(values)
        value = fn(*values)
    return [g.numpy() for g in tape.gradient(value, values)]


def variable_gradient(fn, variable):
    """d fn() / d variable for a function of no argument that reads a ``keras.Variable``."""
    name = keras.backend.backend()
    if name == "jax":
        import jax  # pylint: disable=import-outside-toplevel

        def at(value):
            with keras.StatelessScope(state_mapping=[(variable, value)]):
                return fn()

        return np.asarray(jax.grad(at)(variable.value))
    if name == "torch":
        value = variable.value
        value.grad = None
        fn().backward()
        grad = value.grad.detach().cpu().numpy()
        value.grad = None
        return grad
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    with tf.GradientTape() as tape:
        value = fn()
    return tape.gradient(value, variable).numpy()
