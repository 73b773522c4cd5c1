"""training.steps: the evaluation step counts the same with and without XLA."""

import keras
import numpy as np
import tensorflow as tf

from contractive_keras.layers import CHNODE
from contractive_keras.training.steps import make_eval_step


def _classifier():
    inputs = keras.Input((6, 6, 1))
    x = keras.layers.Conv2D(2, 3, padding="same")(inputs)
    x = CHNODE(steps=2, step_size=0.1, discrete_check="ignore")(x)
    return keras.Model(inputs, keras.layers.Dense(4)(keras.layers.Flatten()(x)))


def test_the_xla_eval_step_counts_what_the_graph_one_does():
    keras.utils.set_random_seed(4)
    model = _classifier()
    strategy = tf.distribute.get_strategy()
    images = np.random.rand(50, 6, 6, 1).astype("float32")
    predicted = model(images, training=False).numpy().argmax(1).astype("int32")
    labels = np.where(np.arange(50) % 3 == 0, (predicted + 1) % 4, predicted)  # 17 wrong
    counts = [make_eval_step(model, strategy, jit_compile=jit)(images, labels) for jit in (False, True)]
    for correct, count in counts:
        assert (float(correct), float(count)) == (33.0, 50.0)
