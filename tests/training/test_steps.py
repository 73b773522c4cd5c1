"""training.steps: the evaluation step counts the same with and without XLA; the
training step keeps the ODE block inside its constraint."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from contractive_keras.solvers import SolverSpec
from contractive_keras.layers import CHNODE
from contractive_keras.training.steps import make_eval_step, make_train_step


def _classifier():
    inputs = keras.Input((6, 6, 1))
    x = keras.layers.Conv2D(2, 3, padding="same")(inputs)
    x = CHNODE(SolverSpec("euler", steps=2, step_size=0.1), discrete_check="ignore")(x)
    return keras.Model(inputs, keras.layers.Dense(4)(keras.layers.Flatten()(x)))


def test_the_xla_eval_step_counts_what_the_graph_one_does():
    keras.utils.set_random_seed(4)
    model = _classifier()
    strategy = tf.distribute.get_strategy()
    images = np.random.default_rng(4).uniform(size=(50, 6, 6, 1)).astype("float32")
    predicted = model(images, training=False).numpy().argmax(1).astype("int32")
    labels = np.where(np.arange(50) % 3 == 0, (predicted + 1) % 4, predicted)  # 17 wrong
    counts = [make_eval_step(model, strategy, jit_compile=jit)(images, labels) for jit in (False, True)]
    for correct, count in counts:
        assert (float(correct), float(count)) == (33.0, 50.0)


def _separable_batches(count, batch_size=20, seed=0):
    """Batches of 28x28 images whose class k is a bright square at the k-th
    cell of a 4x4 grid, as the models' pixel inputs in [0, 1]."""
    rng = np.random.default_rng(seed)
    for _ in range(count):
        labels = rng.integers(0, 10, batch_size).astype("int32")
        images = rng.uniform(0.0, 0.1, (batch_size, 28, 28, 1)).astype("float32")
        for i, k in enumerate(labels):
            row, col = divmod(int(k), 4)
            images[i, 7 * row:7 * row + 7, 7 * col:7 * col + 7] = 0.5
        yield images, labels


def _train_step_of(model_name, **values):
    from contractive_keras.training import make_config
    from contractive_keras.training.builders import build_loss, build_model, build_optimizer

    config = make_config(model_name, learning_rate=0.05, batch_size=20, **values)
    model = build_model(config)
    optimizer = build_optimizer(config, steps_per_epoch=10)
    step = make_train_step(model, optimizer, tf.distribute.get_strategy(), config.batch_size,
                           loss_fn=build_loss(config, model))
    return model, step


def test_every_training_step_keeps_the_stable_node_certified_non_expansive():
    """The train step applies the kernel's delta_bar = 0 projection after each
    update, so the block's certified Lipschitz bound stays <= 1 after every
    step, while the steps do move the kernel."""
    from contractive_keras import certify

    model, step = _train_step_of("stable_node")
    layer = model.get_layer("stabilized_node")
    before = layer.kernel.numpy()
    bounds = []
    for images, labels in _separable_batches(3):
        data_loss, _, _ = step(tf.constant(images), tf.constant(labels))
        assert np.isfinite(float(data_loss))
        bounds.append(certify.layer_certificate(layer).value)
    assert max(bounds) <= 1.0 + 1e-6, bounds
    assert np.max(np.abs(layer.kernel.numpy() - before)) > 1e-3


def test_every_training_step_keeps_the_lift_and_readout_within_their_norm_bounds():
    """With lift_max_norm / readout_max_norm the conv lift's l2 operator norm
    on the 28x28 grid and the read-out's spectral norm are at most the bounds
    after every step (an unconstrained step at this learning rate leaves them)."""
    from contractive_keras.bounds.operator_norms import conv_operator_norm

    model, step = _train_step_of("resnet", depth=2, lift_max_norm=0.5, readout_max_norm=0.2)
    lift, readout = model.get_layer("lift"), model.get_layer("logits")
    for images, labels in _separable_batches(4):
        data_loss, _, _ = step(tf.constant(images), tf.constant(labels))
        assert np.isfinite(float(data_loss))
        assert conv_operator_norm(lift.kernel.numpy(), (28, 28)) <= 0.5 * (1 + 1e-5)
        assert np.linalg.norm(readout.kernel.numpy().astype(np.float64), 2) <= 0.2 * (1 + 1e-5)
