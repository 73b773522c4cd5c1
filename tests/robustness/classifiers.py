"""Small trained MNIST classifiers and test images shared by the evaluation and zoo tests."""

import functools

import keras
import numpy as np

from contractive_keras import data

MEAN, STD = data.NORMALIZATION["mnist"]


@functools.lru_cache(maxsize=None)
def tiny_mnist_model(hidden=0, epochs=4, n_train=4000):
    """A small classifier of [0, 1] MNIST pixels with normalisation inside.

    ``hidden=0``: softmax regression (loss convex in the input); else one ReLU
    layer. Cached: trained once per test process (seeded, deterministic).
    """
    keras.utils.set_random_seed(0)
    inputs = keras.Input((28, 28, 1))
    h = keras.layers.Normalization(mean=MEAN, variance=STD**2)(inputs)
    h = keras.layers.Flatten()(h)
    if hidden:
        h = keras.layers.Dense(hidden, activation="relu")(h)
    outputs = keras.layers.Dense(10)(h)
    model = keras.Model(inputs, outputs)
    model.compile(keras.optimizers.Adam(1e-3),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = data.load_numpy("mnist", "train")
    model.fit(x[:n_train, ..., None] / 255.0, y[:n_train], epochs=epochs, batch_size=100, verbose=0)
    return model


def mnist_test(n=200):
    """The first ``n`` MNIST test images as float32 pixels in [0, 1], shape (n, 28, 28, 1), and labels."""
    x, y = data.load_numpy("mnist", "test")
    return (x[:n, ..., None] / 255.0).astype(np.float32), y[:n].astype(np.int32)
