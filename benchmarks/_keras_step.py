"""The plain Keras training step the benchmarks time (GradientTape + Adam)."""


def plain_train_step(model, jit_compile=False):
    """A compiled ``step(x, y) -> loss``: forward, backward, Adam (lr 1e-3) update.

    The loss is sparse cross-entropy on the logits plus ``model.losses``; the
    optimizer applies the variables' constraints, as under ``model.fit``.
    """
    import keras
    import tensorflow as tf

    optimizer = keras.optimizers.Adam(1e-3)
    optimizer.build(model.trainable_variables)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    @tf.function(jit_compile=jit_compile)
    def step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True)) + tf.add_n(model.losses)
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    return step
