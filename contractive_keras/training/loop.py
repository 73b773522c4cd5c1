"""The ``tf.distribute`` training loop behind ``train.py`` on TensorFlow, with its checkpoints.

One loop for every ``tf.distribute`` strategy (shared/DESIGN.md,
"Distribution"; the step itself is in ``training.steps``): Keras 3
``model.fit`` fails under ``MultiWorkerMirroredStrategy``, hence this loop.
TensorFlow only; ``training.Trainer`` picks it when Keras runs on TensorFlow
(``training.keras_loop`` serves JAX and PyTorch). What every backend shares
(data, epoch loop, records, summary) is ``training.base.BaseTrainer``.

Data: the last ``validation_size`` training images are cut off before any
pipeline is built (``data.split_validation``), so a run trains on exactly the
first N - validation_size images; every epoch is a shuffle of them seeded by
``(seed, epoch)``.

Fault tolerance: a ``tf.train.CheckpointManager`` saves model, optimizer and
the position in the data (epoch, step in epoch) every ``checkpoint_every``
steps and at each epoch end; TensorFlow writes a checkpoint to temporary
files and then atomically updates the ``checkpoint`` index, so a ``kill -9``
at any moment leaves the last complete checkpoint in place. On start the
latest checkpoint is restored and the epoch's data order is replayed from the
saved position, so a resumed run follows the same trajectory as an
uninterrupted one. A non-finite loss stops training before anything is saved
(``TrainingDiverged``).
"""

import os
import shutil
import time

import tensorflow as tf

from contractive_keras import data
from contractive_keras.training.base import BaseTrainer, TrainingDiverged  # noqa: F401  (re-exported)
from contractive_keras.training.builders import build_loss, build_model, build_optimizer
from contractive_keras.training.steps import make_eval_step, make_train_step
from contractive_keras.training.strategy import is_chief, select_strategy


class TFTrainer(BaseTrainer):
    """``training.Trainer`` on TensorFlow: a custom loop under a ``tf.distribute`` strategy."""

    def _set_up_devices(self, strategy):
        self.strategy = strategy or select_strategy(self.config.strategy)
        self.chief = is_chief(self.strategy)
        self.replicas = self.strategy.num_replicas_in_sync

    def _has_gpu(self):
        return bool(tf.config.list_logical_devices("GPU"))

    def _build(self):
        config = self.config
        with self.strategy.scope():
            self.model = build_model(config)
            self.model.build((None, *data.INPUT_SHAPE))
            self.optimizer = build_optimizer(config, self.steps_per_epoch)
            self.optimizer.build(self.model.trainable_variables)
            self.loss_fn = build_loss(config, self.model)
        # The position in the data is host-side bookkeeping: plain variables.
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        self.step_in_epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="step_in_epoch")
        # Keras 3 models are not tracked by tf.train.Checkpoint themselves, so
        # every model variable (trainable or not) is listed by its path.
        weights = tf.Module()
        weights.variables_by_path = {v.path: v for v in self.model.variables}
        self.checkpoint = tf.train.Checkpoint(
            model=weights, optimizer=self.optimizer, epoch=self.epoch, step_in_epoch=self.step_in_epoch
        )
        self.checkpoint_dir = os.path.join(config.model_dir, "checkpoints")
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, self._writable_checkpoint_dir(), max_to_keep=3
        )
        self._train_step = make_train_step(self.model, self.optimizer, self.strategy,
                                           config.batch_size, config.jit_compile, self.loss_fn)
        self._eval_step = make_eval_step(self.model, self.strategy, config.jit_compile)

    def _position(self):
        return int(self.epoch), int(self.step_in_epoch)

    def _set_position(self, epoch, step_in_epoch):
        self.epoch.assign(epoch)
        self.step_in_epoch.assign(step_in_epoch)

    def _open(self, path, mode="r"):
        return tf.io.gfile.GFile(path, mode)

    def _exists(self, path):
        return tf.io.gfile.exists(path)

    # -- checkpoints --------------------------------------------------------

    def _writable_checkpoint_dir(self):
        """Non-chief workers write their (identical) copy to a scratch dir."""
        if self.chief:
            return self.checkpoint_dir
        task_id = self.strategy.cluster_resolver.task_id
        return os.path.join(self.config.model_dir, ".worker_scratch", f"worker_{task_id}")

    def latest_checkpoint(self):
        return tf.train.latest_checkpoint(self.checkpoint_dir)

    def restore_checkpoint(self, path):
        self.checkpoint.restore(path).assert_existing_objects_matched()

    def save(self):
        path = self.manager.save(checkpoint_number=self.optimizer.iterations)
        if not self.chief:
            shutil.rmtree(self._writable_checkpoint_dir(), ignore_errors=True)
        return path

    # -- data ---------------------------------------------------------------

    def _epoch_dataset(self, epoch, start_step):
        ds = data.from_arrays(
            self.x_train,
            self.y_train,
            self.config.batch_size,
            shuffle=True,
            seed=self.config.seed * 100003 + epoch,
            drop_remainder=True,
            prefetch=False,
        )
        ds = ds.take(self.steps_per_epoch).skip(start_step).prefetch(4)
        return self.strategy.experimental_distribute_dataset(ds)

    def _evaluation_counts(self, x, y, take):
        ds = data.from_arrays(x, y, self.config.eval_batch_size, take=take)
        for images, labels in self.strategy.experimental_distribute_dataset(ds):
            yield self._eval_step(images, labels)

    # -- loop ---------------------------------------------------------------

    def _train_epoch(self, epoch, start):
        progbar = self._progress_bar(epoch)
        sums = {"loss": 0.0, "correct": 0.0, "n": 0}
        step = start
        for images, labels in self._epoch_dataset(epoch, start):
            t0 = time.perf_counter()
            data_loss, reg_loss, correct = self._train_step(images, labels)
            values = float(data_loss), float(reg_loss), float(correct)
            self._after_step(epoch, start, step, values, time.perf_counter() - t0, sums, progbar)
            step += 1
        return sums
