"""One distributed training step and one evaluation step, as ``tf.function``s.

The training step (shared/DESIGN.md, "Distribution") runs on every replica
through ``strategy.run``: the per-example cross-entropy averaged over the
*global* batch (``tf.nn.compute_average_loss``), plus the model's
regularization losses (weight decay, smoothness penalty) divided by the
number of replicas (``tf.nn.scale_regularization_loss``), so the gradients
summed over replicas are those of

    loss = (1 / B) sum_i CE(logits_i, y_i) + sum(model.losses),   B the global batch.

The Keras optimizer then applies the gradients and every variable's
``constraint`` (the gamma / delta_bar / norm guarantees) on every replica.
"""

import keras
import tensorflow as tf


def _sum_over_replicas(strategy, value):
    return strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None)


def make_train_step(model, optimizer, strategy, global_batch_size, jit_compile=False,
                    loss_fn=None):
    """``train_step(images, labels) -> (data_loss, reg_loss, correct)``.

    ``loss_fn(labels, logits)`` gives per-example losses (default: the
    softmax cross-entropy; ``training.build_loss`` for the certified ones).
    ``data_loss`` is the mean data loss over the global batch,
    ``reg_loss`` the regularization loss and ``correct`` the number of
    correctly classified images of the batch, all summed over replicas.
    ``jit_compile`` compiles the forward and backward pass with XLA.
    """
    if loss_fn is None:
        loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction=None)
    scaled = isinstance(optimizer, keras.optimizers.LossScaleOptimizer)

    def gradients(images, labels):
        with tf.GradientTape() as tape:
            logits = tf.cast(model(images, training=True), tf.float32)
            per_example = loss_fn(labels, logits)
            data_loss = tf.nn.compute_average_loss(per_example, global_batch_size=global_batch_size)
            reg_loss = tf.constant(0.0)
            if model.losses:
                reg_loss = tf.nn.scale_regularization_loss(
                    tf.add_n([tf.cast(l, tf.float32) for l in model.losses])
                )
            total = data_loss + reg_loss
            tape_loss = optimizer.scale_loss(total) if scaled else total
        grads = tape.gradient(tape_loss, model.trainable_variables)
        correct = tf.reduce_sum(
            tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32), labels), tf.float32)
        )
        return grads, data_loss, reg_loss, correct

    if jit_compile:
        gradients = tf.function(gradients, jit_compile=True)

    def replica_step(images, labels):
        grads, data_loss, reg_loss, correct = gradients(images, labels)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return data_loss, reg_loss, correct

    @tf.function
    def train_step(images, labels):
        data_loss, reg_loss, correct = strategy.run(replica_step, args=(images, labels))
        # data_loss is already a share of the global mean; reg_loss a 1/replicas share.
        return tuple(_sum_over_replicas(strategy, v) for v in (data_loss, reg_loss, correct))

    return train_step


def make_eval_step(model, strategy, jit_compile=False):
    """``eval_step(images, labels) -> (correct, count)``, summed over replicas.

    ``jit_compile`` compiles the forward pass with XLA (as ``make_train_step``
    does the training pass).
    """

    def logits_of(images):
        return model(images, training=False)

    if jit_compile:
        logits_of = tf.function(logits_of, jit_compile=True)

    def replica_eval(images, labels):
        logits = logits_of(images)
        predicted = tf.argmax(logits, -1, output_type=tf.int32)
        correct = tf.reduce_sum(tf.cast(tf.equal(predicted, labels), tf.float32))
        return correct, tf.cast(tf.shape(labels)[0], tf.float32)

    @tf.function
    def eval_step(images, labels):
        correct, count = strategy.run(replica_eval, args=(images, labels))
        return _sum_over_replicas(strategy, correct), _sum_over_replicas(strategy, count)

    return eval_step
