"""What every backend's trainer shares: data, the epoch loop, the epoch records, the summary.

``BaseTrainer`` holds the parts of a run that do not depend on how a step is
taken: the data (the last ``validation_size`` training images cut off before
anything else, ``data.split_validation``), the epoch loop with its position
in the data (epoch, step in epoch), the per-step bookkeeping (divergence
check, running sums, timings, progress bar, periodic checkpoints), the epoch
records (``history.jsonl``, TensorBoard scalars), fine-tuning from a trained
model (``init_from``) and ``summary.json``. A subclass gives the devices, the
model and optimizer set-up, one epoch of steps, the evaluation step and the
checkpoints: ``training.loop.TFTrainer`` (``tf.distribute``) and
``training.keras_loop.KerasTrainer`` (Keras's own train step, JAX / PyTorch).
No TensorFlow here.
"""

import dataclasses
import json
import os
import time

import keras
import numpy as np

from contractive_keras import data, export
from contractive_keras.training import report
from contractive_keras.training.config import check_paths, keras_file


class TrainingDiverged(RuntimeError):
    """The loss became NaN or Inf; the last good checkpoint is kept."""


class BaseTrainer:
    """The backend-independent part of ``training.Trainer`` (see there)."""

    def __init__(self, config, strategy=None):
        self.config = config
        check_paths(config)
        if config.eval_noise:
            report.robustness_module()   # refuses now, not after training, where it cannot run
        self._set_up_devices(strategy)
        if config.batch_size % self.replicas:
            raise ValueError(
                f"--batch_size={config.batch_size} (global) is not divisible by the "
                f"{self.replicas} replicas in sync"
            )
        if config.mixed_precision:
            keras.mixed_precision.set_global_policy("mixed_float16" if self._has_gpu() else "mixed_bfloat16")
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
        self._build()
        self.history = []
        self.timings = {"train_seconds": 0.0, "train_examples": 0}
        self.writer = report.scalar_writer(os.path.join(config.model_dir, "logs")) if self.chief else None
        self.restored = self.restore()
        self.history = self._earlier_history()

    # -- what a backend's trainer gives ---------------------------------------

    def _set_up_devices(self, strategy):
        """Sets ``strategy``, ``chief`` and ``replicas``."""
        raise NotImplementedError

    def _has_gpu(self):
        raise NotImplementedError

    def _build(self):
        """Builds ``model``, ``optimizer``, ``loss_fn`` and the checkpoint machinery."""
        raise NotImplementedError

    def _position(self):
        """``(epoch, step_in_epoch)`` as Python ints."""
        raise NotImplementedError

    def _set_position(self, epoch, step_in_epoch):
        raise NotImplementedError

    def _train_epoch(self, epoch, start):
        """Runs the steps of ``epoch`` from step ``start`` (each through
        ``_after_step``); returns the sums of the data loss, the correct
        predictions and the examples seen."""
        raise NotImplementedError

    def _count_correct(self, images, labels):
        """``(correct, count)`` of one evaluation batch (uint8-free float images)."""
        raise NotImplementedError

    def _open(self, path, mode="r"):
        """Opens a file of ``model_dir`` (TensorFlow's file system reaches gs:// too)."""
        return open(path, mode, encoding="utf-8")

    def _exists(self, path):
        return os.path.exists(path)

    def latest_checkpoint(self):
        """The path of the latest complete checkpoint, or None."""
        raise NotImplementedError

    def restore_checkpoint(self, path):
        raise NotImplementedError

    def save(self):
        """Saves model, optimizer and the position in the data; returns the path."""
        raise NotImplementedError

    # -- checkpoints ------------------------------------------------------------

    def _history_path(self):
        return os.path.join(self.config.model_dir, "history.jsonl")

    def _earlier_history(self):
        """The epoch records of the processes before this one (``history.jsonl``), up to the
        restored epoch, so that a resumed run's summary covers every epoch."""
        path, done = self._history_path(), self._position()[0]
        if not done or not self._exists(path):
            return []
        with self._open(path) as f:
            records = [json.loads(line) for line in f if line.strip()]
        by_epoch = {r["epoch"]: r for r in records if r["epoch"] <= done}   # the last write wins
        return [by_epoch[e] for e in sorted(by_epoch)]

    def restore(self):
        """Restores the latest checkpoint of ``model_dir``; returns its path.

        Without a checkpoint and with ``init_from``, the weights of that
        trained model are copied in instead (fine-tuning) and every weight
        constraint is applied once, so the guarantees hold from step 0.
        """
        latest = self.latest_checkpoint()
        if latest:
            self.restore_checkpoint(latest)
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

    # -- evaluation -------------------------------------------------------------

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
        correct = count = 0.0
        for c, n in self._evaluation_counts(x, y, take):
            correct += float(c)
            count += float(n)
        return correct / max(count, 1.0)

    def _evaluation_counts(self, x, y, take):
        for images, labels in data.batches(x, y, self.config.eval_batch_size, take=take):
            yield self._count_correct(images, labels)

    def _accuracies(self):
        """Test accuracy, and validation accuracy when images are held out."""
        accuracies = {"test_accuracy": self.evaluate("test")}
        if len(self.y_val):
            accuracies["validation_accuracy"] = self.evaluate("validation")
        return accuracies

    # -- loop -------------------------------------------------------------------

    def run(self):
        """Trains to ``config.epochs`` (resuming), then evaluates and exports."""
        config = self.config
        restored = self.restored
        if restored and self.chief and config.verbose:
            epoch, step = self._position()
            print(f"Resuming from {restored} (epoch {epoch + 1}, step {step} of {self.steps_per_epoch})",
                  flush=True)
        while self._position()[0] < config.epochs:
            epoch, start = self._position()
            learning_rate = float(self.optimizer.learning_rate)
            t_epoch = time.perf_counter()
            sums = self._train_epoch(epoch, start)
            self._set_position(epoch + 1, 0)
            self.save()
            record = self._end_of_epoch(epoch, sums, learning_rate, time.perf_counter() - t_epoch)
            self.history.append(record)
            if self.chief:
                with self._open(self._history_path(), "a") as f:
                    f.write(json.dumps(record, default=float) + "\n")
        return self.finish(restored)

    def _progress_bar(self, epoch):
        if not (self.chief and self.config.verbose):
            return None
        print(f"Epoch {epoch + 1}/{self.config.epochs}", flush=True)
        return keras.utils.Progbar(
            self.steps_per_epoch, stateful_metrics=["loss", "reg_loss", "accuracy", "examples/s"],
            verbose=self.config.verbose,
        )

    def _after_step(self, epoch, start, step, values, dt, sums, progbar):
        """Bookkeeping after step ``step`` (0-based) of ``epoch``: stops on a
        non-finite loss before anything is saved, then updates the position,
        the sums, the timings and the progress bar, and saves every
        ``checkpoint_every`` steps."""
        config = self.config
        data_loss, reg_loss, correct = values
        if not (np.isfinite(data_loss) and np.isfinite(reg_loss)):
            raise TrainingDiverged(
                f"loss became {data_loss + reg_loss} at epoch {epoch + 1}, step {step + 1}; "
                f"training stopped without saving. The last good checkpoint is "
                f"{self.latest_checkpoint()}. Try a smaller --learning_rate or --step_size."
            )
        step += 1
        self._set_position(epoch, step)
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

    def _export(self, directory):
        """Writes the exported model; returns the paths written."""
        return export.export_classifier(self.model, directory)

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
            summary["export"] = self._export(os.path.join(config.model_dir, "export"))
        if self.chief:
            report.write_json(os.path.join(config.model_dir, "summary.json"), summary)
        return summary
