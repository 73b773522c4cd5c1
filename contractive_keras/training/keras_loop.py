"""The training loop on JAX and PyTorch: a small loop over Keras's own train step.

``KerasTrainer`` is ``training.Trainer`` off TensorFlow. The model is
compiled (``model.compile``) with the run's Adam optimizer, its per-example
loss averaged over the batch and the model's regularization losses added by
Keras (so the step minimises, as on TensorFlow,

    loss = (1 / B) sum_i loss(logits_i, y_i) + sum(model.losses),   B the global batch),

and each step is ``model.train_on_batch``: Keras's compiled step (XLA under
JAX), whose optimizer applies every variable's ``constraint`` after the
update, so the gamma / delta_bar / norm guarantees hold after every step.
On JAX with several local devices the batch is split over them by
``keras.distribution.DataParallel`` (``strategy.select_distribution``).

Data (``data.batches``): the same images as the TensorFlow loop, shuffled
every epoch by NumPy with the seed ``seed * 100003 + epoch`` (an order of its
own, not tf.data's). Checkpoints (``training.checkpoints``): Keras weight
files plus the optimizer state and the position in the data, written
atomically every ``checkpoint_every`` steps and at each epoch end; a
resumed run replays the epoch's order from the saved step, so it ends at the
same weights as an uninterrupted one. TensorBoard scalars without TensorFlow
(``training.summaries``). ``--export`` writes ``export/model.keras`` (a
SavedModel needs TensorFlow). No TensorFlow here.
"""

import os
import time

import keras
import numpy as np

from contractive_keras import data
from contractive_keras.training.base import BaseTrainer
from contractive_keras.training.builders import build_loss, build_model, build_optimizer
from contractive_keras.training.checkpoints import Checkpoints
from contractive_keras.training.strategy import accelerators, select_distribution


class KerasTrainer(BaseTrainer):
    """``training.Trainer`` on JAX or PyTorch (module docstring)."""

    def _set_up_devices(self, strategy):
        self.strategy = strategy if strategy is not None else select_distribution(self.config.strategy)
        self.chief = True
        self.replicas = 1 if self.strategy is None else int(np.size(self.strategy.device_mesh.devices))
        if self.strategy is not None:
            keras.distribution.set_distribution(self.strategy)

    def _has_gpu(self):
        return bool(accelerators())

    def _build(self):
        config = self.config
        self.model = build_model(config)
        self.model.build((None, *data.INPUT_SHAPE))
        self.optimizer = build_optimizer(config, self.steps_per_epoch)
        self.optimizer.build(self.model.trainable_variables)
        self.loss_fn = build_loss(config, self.model)
        loss_fn = self.loss_fn

        def data_loss(labels, logits):
            return loss_fn(labels, keras.ops.cast(logits, "float32"))

        self.model.compile(
            optimizer=self.optimizer,
            loss=data_loss,
            metrics=[keras.metrics.MeanMetricWrapper(data_loss, name="data_loss"),
                     keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
            jit_compile=True if config.jit_compile else "auto",
        )
        self.epoch, self.step_in_epoch = 0, 0
        self.checkpoint_dir = os.path.join(config.model_dir, "checkpoints")
        self.checkpoints = Checkpoints(self.checkpoint_dir, max_to_keep=3)

    def _position(self):
        return self.epoch, self.step_in_epoch

    def _set_position(self, epoch, step_in_epoch):
        self.epoch, self.step_in_epoch = int(epoch), int(step_in_epoch)

    # -- checkpoints ------------------------------------------------------------

    def latest_checkpoint(self):
        return self.checkpoints.latest()

    def restore_checkpoint(self, path):
        position = self.checkpoints.restore(path, self.model, self.optimizer)
        self._set_position(position["epoch"], position["step_in_epoch"])

    def save(self):
        return self.checkpoints.save(
            int(keras.ops.convert_to_numpy(self.optimizer.iterations)), self.model, self.optimizer,
            {"epoch": self.epoch, "step_in_epoch": self.step_in_epoch})

    # -- steps ------------------------------------------------------------------

    def _train_epoch(self, epoch, start):
        config = self.config
        progbar = self._progress_bar(epoch)
        sums = {"loss": 0.0, "correct": 0.0, "n": 0}
        batches = data.batches(self.x_train, self.y_train, config.batch_size, shuffle=True,
                               seed=config.seed * 100003 + epoch, drop_remainder=True,
                               start=start, steps=self.steps_per_epoch)
        step = start
        for images, labels in batches:
            t0 = time.perf_counter()
            logs = self.model.train_on_batch(images, labels, return_dict=True)
            loss, data_loss = float(logs["loss"]), float(logs["data_loss"])
            correct = float(np.round(float(logs["accuracy"]) * len(labels)))
            values = data_loss, loss - data_loss, correct
            self._after_step(epoch, start, step, values, time.perf_counter() - t0, sums, progbar)
            step += 1
        return sums

    def _count_correct(self, images, labels):
        n = len(labels)
        pad = -n % self.replicas   # the data-parallel batch must split evenly over the devices
        if pad:
            images = np.concatenate([images, np.repeat(images[-1:], pad, axis=0)])
        logits = keras.ops.convert_to_numpy(self.model.predict_on_batch(images))[:n]
        return float(np.sum(np.argmax(logits, axis=-1) == labels)), float(n)
