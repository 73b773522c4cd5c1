"""Small certifiable classifiers shared by the certify tests."""

import keras

from contractive_keras.layers import CHNODE
from contractive_keras.solvers import SolverSpec


def tiny_classifier(**kwargs):
    """Rescaling -> conv -> CHNODE (3 Euler steps of 0.05) -> flatten -> dense read-out, on 5 x 5 images."""
    inputs = keras.Input((5, 5, 1))
    x = keras.layers.Rescaling(2.0, offset=-0.5)(inputs)
    x = keras.layers.Conv2D(4, 3, padding="same")(x)
    x = CHNODE(SolverSpec("euler", steps=3, step_size=0.05), kappa=0.1, discrete_check="ignore",
               **kwargs)(x)
    x = keras.layers.Flatten()(x)
    return keras.Model(inputs, keras.layers.Dense(3)(x))
