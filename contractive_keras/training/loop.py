"""The custom training loop behind ``train.py``, with its checkpoints.

One loop for every ``tf.distribute`` strategy (shared/DESIGN.md,
"Distribution"; the step itself is in ``training.steps``): Keras 3
``model.fit`` fails under ``MultiWorkerMirroredStrategy``, hence this loop.

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

import dataclasses
import json
import os
import shutil
import time

import keras
import numpy as np
import tensorflow as tf

from contractive_keras import data, export
from contractive_keras.training import report
from contractive_keras.training.builders import build_loss, build_model, build_optimizer
from contractive_keras.training.config import check_paths, keras_file
from contractive_keras.training.steps import make_eval_step, make_train_step
from contractive_keras.training.strategy import is_chief, select_strategy


class TrainingDiverged(RuntimeError):
    """The loss became NaN or Inf; the last good checkpoint is kept."""


class Trainer:
    """Trains ``config.model`` on ``config.dataset`` under a strategy.

    Raises ``ValueError`` (before reading any data) for a ``model_dir`` that
    cannot be written or an ``init_from`` that is not a model file.

    Example:

    >>> config = TrainConfig(model="resnet", depth=4, epochs=1, model_dir="/tmp/r")  # doctest: +SKIP
    >>> summary = Trainer(config).run()                                             # doctest: +SKIP
    """

    def __init__(self, config, strategy=None):
        if keras.backend.backend() != "tensorflow":
            raise ValueError(f"training runs on Keras's TensorFlow backend only for now (a tf.distribute "
                             f"loop); this process uses the {keras.backend.backend()!r} backend. "
                             "Set KERAS_BACKEND=tensorflow.")
        self.config = config
        check_paths(config)
        self.strategy = strategy or select_strategy(config.strategy)
        self.chief = is_chief(self.strategy)
        self.replicas = self.strategy.num_replicas_in_sync
        if config.batch_size % self.replicas:
            raise ValueError(
                f"--batch_size={config.batch_size} (global) is not divisible by the "
                f"{self.replicas} replicas in sync"
            )
        if config.mixed_precision:
            gpu = bool(tf.config.list_logical_devices("GPU"))
            keras.mixed_precision.set_global_policy("mixed_float16" if gpu else "mixed_bfloat16")
        keras.utils.set_random_seed(config.seed)
        x_train, y_train = data.load_numpy(config.dataset, "train", config.data_dir)
        (self.x_train, self.y_train), (self.x_val, self.y_val) = data.split_validation(
            x_train, y_train, config.validation_size)
        self.x_test, self.y_test = data.load_numpy(config.dataset, "test", config.data_dir)
        full_epoch = len(self.x_train) // config.batch_size
        if full_epoch == 0:
            raise ValueError(f"--batch_size={config.batch_size} is larger than the "
                             f"{len(self.x_train)} training images")
        self.steps_per_epoch = min(config.steps_per_epoch or full_epoch, full_epoch)
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
        self.history = []
        self.timings = {"train_seconds": 0.0, "train_examples": 0}
        self.writer = None
        if self.chief:
            self.writer = tf.summary.create_file_writer(os.path.join(config.model_dir, "logs"))
        self.restored = self.restore()
        self.history = self._earlier_history()

    # -- checkpoints --------------------------------------------------------

    def _writable_checkpoint_dir(self):
        """Non-chief workers write their (identical) copy to a scratch dir."""
        if self.chief:
            return self.checkpoint_dir
        task_id = self.strategy.cluster_resolver.task_id
        return os.path.join(self.config.model_dir, ".worker_scratch", f"worker_{task_id}")

    def _history_path(self):
        return os.path.join(self.config.model_dir, "history.jsonl")

    def _earlier_history(self):
        """The epoch records of the processes before this one (``history.jsonl``), up to the
        restored epoch, so that a resumed run's summary covers every epoch."""
        path, done = self._history_path(), int(self.epoch)
        if not done or not tf.io.gfile.exists(path):
            return []
        with tf.io.gfile.GFile(path) as f:
            records = [json.loads(line) for line in f if line.strip()]
        by_epoch = {r["epoch"]: r for r in records if r["epoch"] <= done}   # the last write wins
        return [by_epoch[e] for e in sorted(by_epoch)]

    def restore(self):
        """Restores the latest checkpoint of ``model_dir``; returns its path.

        Without a checkpoint and with ``init_from``, the weights of that
        trained model are copied in instead (fine-tuning) and every weight
        constraint is applied once, so the guarantees hold from step 0.
        """
        latest = tf.train.latest_checkpoint(self.checkpoint_dir)
        if latest:
            self.checkpoint.restore(latest).assert_existing_objects_matched()
        elif self.config.init_from:
            self.initialize_from(self.config.init_from)
        return latest

    def initialize_from(self, path):
        """Copies the weights of a trained model (``.keras`` file or a
        train.py ``--model_dir``) into this one, then applies the constraints."""
        path = keras_file(path)
        if not os.path.isfile(path):
            raise ValueError(f"--init_from: no .keras file at {path} (give a .keras file or a "
                             f"train.py --model_dir that was run with --export)")
        try:
            source = keras.saving.load_model(path, safe_mode=True)
        except Exception as e:  # Keras raises many types for a file it cannot read
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ValueError(f"--init_from: cannot load {path} as a Keras model ({reason})") from None
        mine = [tuple(w.shape) for w in self.model.weights]
        theirs = [tuple(w.shape) for w in source.weights]
        if mine != theirs:
            raise ValueError(f"--init_from: {path} has weight shapes {theirs}, this model {mine}; "
                             f"fine-tuning needs the same architecture (e.g. node -> stable_node)")
        self.model.set_weights(source.get_weights())
        for variable in self.model.trainable_variables:
            if variable.constraint is not None:
                variable.assign(variable.constraint(variable))

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

    def evaluate(self, split="test", take=None):
        """Accuracy on ``split``: ``"train"`` (the trained images),
        ``"validation"`` (the held-out last ``validation_size`` training
        images) or ``"test"``; the first ``take`` (default
        ``config.eval_take``) images only when set."""
        arrays = {"train": (self.x_train, self.y_train), "validation": (self.x_val, self.y_val),
                  "test": (self.x_test, self.y_test)}
        if split not in arrays:
            raise ValueError(f"unknown split {split!r}; expected one of {sorted(arrays)}")
        x, y = arrays[split]
        take = take if take is not None else self.config.eval_take
        ds = data.from_arrays(x, y, self.config.eval_batch_size, take=take)
        correct = count = 0.0
        for images, labels in self.strategy.experimental_distribute_dataset(ds):
            c, n = self._eval_step(images, labels)
            correct += float(c)
            count += float(n)
        return correct / max(count, 1.0)

    def _accuracies(self):
        """Test accuracy, and validation accuracy when images are held out."""
        accuracies = {"test_accuracy": self.evaluate("test")}
        if len(self.y_val):
            accuracies["validation_accuracy"] = self.evaluate("validation")
        return accuracies

    # -- loop ---------------------------------------------------------------

    def run(self):
        """Trains to ``config.epochs`` (resuming), then evaluates and exports."""
        config = self.config
        restored = self.restored
        if restored and self.chief and config.verbose:
            print(
                f"Resuming from {restored} (epoch {int(self.epoch) + 1}, "
                f"step {int(self.step_in_epoch)} of {self.steps_per_epoch})",
                flush=True,
            )
        while int(self.epoch) < config.epochs:
            epoch = int(self.epoch)
            learning_rate = float(self.optimizer.learning_rate)
            t_epoch = time.perf_counter()
            sums = self._train_epoch(epoch, int(self.step_in_epoch))
            self.epoch.assign(epoch + 1)
            self.step_in_epoch.assign(0)
            self.save()
            record = self._end_of_epoch(epoch, sums, learning_rate, time.perf_counter() - t_epoch)
            self.history.append(record)
            if self.chief:
                with tf.io.gfile.GFile(self._history_path(), "a") as f:
                    f.write(json.dumps(record, default=float) + "\n")
        return self.finish(restored)

    def _train_epoch(self, epoch, start):
        """Runs the steps of ``epoch`` from step ``start``; returns the sums of
        the data loss, the correct predictions and the examples seen."""
        config = self.config
        progbar = None
        if self.chief and config.verbose:
            print(f"Epoch {epoch + 1}/{config.epochs}", flush=True)
            progbar = keras.utils.Progbar(
                self.steps_per_epoch, stateful_metrics=["loss", "reg_loss", "accuracy", "examples/s"],
                verbose=config.verbose,
            )
        sums = {"loss": 0.0, "correct": 0.0, "n": 0}
        step = start
        for images, labels in self._epoch_dataset(epoch, start):
            t0 = time.perf_counter()
            data_loss, reg_loss, correct = self._train_step(images, labels)
            data_loss, reg_loss, correct = float(data_loss), float(reg_loss), float(correct)
            dt = time.perf_counter() - t0
            if not (np.isfinite(data_loss) and np.isfinite(reg_loss)):
                raise TrainingDiverged(
                    f"loss became {data_loss + reg_loss} at epoch {epoch + 1}, step {step + 1}; "
                    f"training stopped without saving. The last good checkpoint is "
                    f"{tf.train.latest_checkpoint(self.checkpoint_dir)}. Try a smaller "
                    f"--learning_rate or --step_size."
                )
            step += 1
            self.step_in_epoch.assign(step)
            sums["loss"] += data_loss
            sums["correct"] += correct
            sums["n"] += config.batch_size
            if step > start + 1:  # the first step of a run includes tracing
                self.timings["train_seconds"] += dt
                self.timings["train_examples"] += config.batch_size
            if progbar is not None:
                progbar.update(step, [
                    ("loss", sums["loss"] / (step - start)),
                    ("reg_loss", reg_loss),
                    ("accuracy", sums["correct"] / sums["n"]),
                    ("examples/s", config.batch_size / max(dt, 1e-9)),
                ])
            if config.checkpoint_every and step % config.checkpoint_every == 0 and step < self.steps_per_epoch:
                self.save()
        return sums

    def _end_of_epoch(self, epoch, sums, learning_rate, seconds):
        accuracies = self._accuracies()
        record = {
            "epoch": epoch + 1,
            "train_loss": sums["loss"] / max(sums["n"] / self.config.batch_size, 1),
            "train_accuracy_running": sums["correct"] / max(sums["n"], 1),
            "test_accuracy": accuracies.pop("test_accuracy"),
            **accuracies,
            "learning_rate": learning_rate,
            "seconds": seconds,
        }
        record.update({f"certificate/{k}": v for k, v in report.certificate_summary(self.model).items()
                       if isinstance(v, (int, float))})
        record.update(self._certified_accuracies())
        if self.chief:
            if self.config.verbose:
                shown = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in record.items()}
                print(f"  {shown}", flush=True)
            report.log_scalars(self.writer, epoch + 1, record)
        return record

    def _certified_accuracies(self):
        """Certified accuracy on the test set (the first ``eval_take`` images
        when set) at the dataset's radii, ``report.certified_accuracies``;
        empty for a model ``certify`` cannot bound."""
        take = self.config.eval_take or len(self.y_test)
        return report.certified_accuracies(self.model, self.x_test[:take], self.y_test[:take],
                                           data.CERTIFIED_RADII[self.config.dataset])

    def _final_certified_accuracies(self):
        """The last epoch's ``certified/*`` values (the weights have not
        changed since); computed afresh only when this process trained no
        epoch (a finished run restarted)."""
        if self.history:
            return {k: v for k, v in self.history[-1].items() if k.startswith("certified/")}
        return self._certified_accuracies()

    def finish(self, restored):
        """Final metrics, optional noise table and export, summary JSON."""
        config = self.config
        accuracies = self._accuracies()
        summary = {
            "flags": dataclasses.asdict(config),
            "resumed_from": restored,
            "history": self.history,
            "final": {
                "test_accuracy": accuracies.pop("test_accuracy"),
                "train_accuracy": self.evaluate("train", take=config.eval_take),
                **accuracies,
            },
            "certificate": report.certificate_summary(self.model),
            "certified_accuracy": self._final_certified_accuracies(),
            "timings": {
                **self.timings,
                "examples_per_second": self.timings["train_examples"] / self.timings["train_seconds"]
                if self.timings["train_seconds"] else None,
            },
            "hardware": report.hardware_summary(self.strategy),
        }
        if config.eval_noise:
            take = config.eval_take or len(self.y_test)
            summary["robustness"] = report.robustness_table(
                self.model, self.x_test[:take], self.y_test[:take], config.dataset,
                verbose=1 if self.chief and config.verbose else 0)
        if config.export and self.chief:
            summary["export"] = export.export_classifier(self.model, os.path.join(config.model_dir, "export"))
        if self.chief:
            report.write_json(os.path.join(config.model_dir, "summary.json"), summary)
        return summary
