"""Helpers of the backend tests: NumPy views of tensors, seeded inputs and
weights drawn by NumPy, and a forward pass compiled once under JAX."""

import keras
import numpy as np

from contractive_keras import backend


def numpy_of(value):
    """A tensor or Keras variable of any backend as a float64 NumPy array."""
    return keras.ops.convert_to_numpy(keras.ops.convert_to_tensor(value)).astype(np.float64)


def inputs(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def normal(seed, stddev=0.3):
    """A seeded N(0, stddev^2) initializer drawn by NumPy: the same weights on
    every backend, and no random-number kernels for JAX to compile per shape."""
    def initializer(shape, dtype=None):
        value = np.random.default_rng(seed).normal(0.0, stddev, size=shape)
        return keras.ops.convert_to_tensor(value, dtype or "float32")
    return initializer


def forward(layer, x):
    """layer(x) as NumPy.  Under JAX through ``jax.jit`` of ``stateless_call``
    (as ``model.predict`` and ``fit`` run it): one XLA compilation instead of
    one per operation and shape in eager mode (the zoo and .keras tests run
    eagerly)."""
    if backend.name() != "jax":
        return keras.ops.convert_to_numpy(layer(x))
    import jax
    if not layer.built:
        layer.build(x.shape)
    trainable = [v.value for v in layer.trainable_variables]
    fixed = [v.value for v in layer.non_trainable_variables]
    call = jax.jit(lambda trainable, fixed, x: layer.stateless_call(trainable, fixed, x)[0])
    return keras.ops.convert_to_numpy(call(trainable, fixed, x))
