"""The distributed custom training loop behind ``train.py``.

One loop for every ``tf.distribute`` strategy (shared/DESIGN.md,
"Distribution"): ``strategy.run`` of a step that computes the per-example
cross-entropy with ``tf.nn.compute_average_loss`` over the *global* batch,
adds the model's regularization losses (weight decay, smoothness penalty)
scaled per replica with ``tf.nn.scale_regularization_loss``, and applies the
gradients with a Keras optimizer, which then applies every variable's
``constraint`` (the gamma / delta_bar guarantees) on every replica. Keras 3
``model.fit`` fails under ``MultiWorkerMirroredStrategy``, hence this loop.

Fault tolerance: a ``tf.train.CheckpointManager`` saves model, optimizer and
the position in the data (epoch, step in epoch) every ``checkpoint_every``
steps and at each epoch end; TensorFlow writes a checkpoint to temporary
files and then atomically updates the ``checkpoint`` index, so a ``kill -9``
at any moment leaves the last complete checkpoint in place. On start the
latest checkpoint is restored and the epoch's data order (a shuffle seeded by
``(seed, epoch)``) is replayed from the saved position, so a resumed run
follows the same trajectory as an uninterrupted one. A non-finite loss stops
training before anything is saved (``TrainingDiverged``).
"""

import dataclasses
import json
import os
import platform
import shutil
import sys
import time

import numpy as np


class TrainingDiverged(RuntimeError):
    """The loss became NaN or Inf; the last good checkpoint is kept."""


@dataclasses.dataclass
class TrainConfig:
    """Everything a training run depends on (train.py's flags)."""

    model: str = "chnode"
    depth: int | None = None
    dataset: str = "mnist"
    data_dir: str | None = None
    epochs: int = 10
    batch_size: int = 100
    learning_rate: float = 0.04
    lr_decay: float = 0.8
    weight_decay: float | None = None
    smoothness: float | None = None
    solver: str | None = None
    step_size: float | None = None
    gamma: str | None = None
    eps: float | None = None
    L_scale: float | None = None
    lift_max_norm: float | None = None
    readout_max_norm: float | None = None
    delta_bar: float | None = None
    alpha: float | None = None
    seed: int = 0
    strategy: str = "auto"
    model_dir: str = "runs/default"
    steps_per_epoch: int | None = None
    checkpoint_every: int = 100
    eval_noise: bool = False
    export: bool = False
    mixed_precision: bool = False
    jit_compile: bool = False
    eval_batch_size: int = 500
    eval_take: int | None = None
    init_from: str | None = None
    validation_size: int = 0
    verbose: int = 1


# ----------------------------------------------------------------------------
# Strategy
# ----------------------------------------------------------------------------


def select_strategy(name):
    """Returns the ``tf.distribute.Strategy`` for a ``--strategy`` value.

    ``auto``: multi-worker when ``TF_CONFIG`` names a cluster of several
    tasks, else a TPU if one is found, else ``MirroredStrategy`` over all GPUs
    when there are several, else ``OneDeviceStrategy`` on the GPU or CPU.
    ``mirrored`` uses every GPU, or every logical CPU device when there is no
    GPU (how the tests run it on one machine).
    """
    import tensorflow as tf

    if name == "auto":
        tf_config = json.loads(os.environ.get("TF_CONFIG", "{}") or "{}")
        n_tasks = sum(len(v) for v in tf_config.get("cluster", {}).values())
        if n_tasks > 1:
            name = "multi_worker"
    if name == "multi_worker":
        # Collective ops must be configured before TensorFlow initialises its
        # devices, so this comes before any other TensorFlow call.
        if not os.environ.get("TF_CONFIG"):
            raise ValueError("--strategy=multi_worker needs the TF_CONFIG environment variable")
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_logical_devices("GPU")
    if name == "auto":
        if _find_tpu() is not None:
            name = "tpu"
        elif len(gpus) > 1:
            name = "mirrored"
        else:
            name = "one_device"
    if name == "one_device":
        device = gpus[0].name if gpus else "/cpu:0"
        return tf.distribute.OneDeviceStrategy(device)
    if name == "mirrored":
        devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices)
    if name == "tpu":
        resolver = _find_tpu()
        if resolver is None:
            raise ValueError("--strategy=tpu but no TPU was found")
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    raise ValueError(f"unknown strategy {name!r}; expected auto, one_device, mirrored, multi_worker or tpu")


def _find_tpu():
    """A TPU cluster resolver when this host is a TPU VM or TPU_NAME is set.

    Nothing is probed otherwise (resolving a TPU with no hint asks a cloud
    metadata server, which is slow and pointless on other machines).
    """
    import glob

    import tensorflow as tf

    name = os.environ.get("TPU_NAME")
    if not name and not glob.glob("/dev/accel*") and not glob.glob("/dev/vfio/[0-9]*"):
        return None
    try:
        return tf.distribute.cluster_resolver.TPUClusterResolver(tpu=name or "local")
    except (ValueError, KeyError, RuntimeError, ImportError):
        return None


def is_chief(strategy):
    """Whether this task writes logs, summaries and exports."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "task_type", None):
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    cluster = resolver.cluster_spec().as_dict()
    if task_type == "chief":
        return True
    return task_type == "worker" and task_id == 0 and "chief" not in cluster


# ----------------------------------------------------------------------------
# Model and optimizer
# ----------------------------------------------------------------------------


def build_model(config):
    """The model named by ``config.model`` with the run's overrides."""
    from contractive_keras import models

    overrides = {}
    for key in ("weight_decay", "smoothness", "solver", "step_size", "gamma", "eps", "delta_bar",
                "alpha", "lift_max_norm", "readout_max_norm"):
        value = getattr(config, key)
        if value is not None:
            overrides[key] = _parse_gamma(value) if key == "gamma" else value
    if config.L_scale is not None:
        from contractive_keras.layers._hamiltonian_common import StepwiseIdentity

        overrides["L_initializer"] = StepwiseIdentity(config.L_scale)
    return models.build(config.model, depth=config.depth, **overrides)


def _parse_gamma(value):
    if isinstance(value, str) and value != "auto":
        return float(value)
    return value


def build_optimizer(config, steps_per_epoch):
    """Adam with the learning rate multiplied by ``lr_decay`` after each epoch."""
    import keras

    schedule = keras.optimizers.schedules.ExponentialDecay(
        config.learning_rate, decay_steps=steps_per_epoch, decay_rate=config.lr_decay, staircase=True
    )
    optimizer = keras.optimizers.Adam(learning_rate=schedule)
    if config.mixed_precision and keras.mixed_precision.global_policy().name == "mixed_float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def certificate_scalars(model):
    """Certificate values of a model's ODE layers, for logging.

    CH-NODE / H-DNN / ResNet-ODE layers report through
    ``contractive_keras.certify.summary`` (gamma, alpha, rho, c1, c2 and the
    discrete Lipschitz bound); any other layer with a ``certificate()`` method
    (e.g. the stabilized NODE: delta, its kind, the Lipschitz bound) adds its
    numbers, prefixed with the layer name when several layers report.
    """
    from contractive_keras import certify

    scalars = {}
    try:
        scalars.update(certify.summary(model, warn=False))
    except (ValueError, TypeError, NotImplementedError) as e:  # logging must not stop training
        scalars["certify_error"] = str(e).splitlines()[0]
    reports = []
    for layer in model._flatten_layers(include_self=False):
        method = getattr(layer, "certificate", None)
        if callable(method):
            try:
                reports.append((layer.name, method()))
            except Exception as e:  # a logging aid must not stop training
                reports.append((layer.name, {"error": repr(e)}))
    for name, report in reports:
        for key, value in report.items():
            scalars[key if len(reports) == 1 else f"{name}/{key}"] = _to_python(value)
    return scalars


def _to_python(value):
    if hasattr(value, "numpy"):
        value = value.numpy()
    if isinstance(value, np.ndarray) and value.size == 1:
        value = value.item()
    if isinstance(value, (np.floating, np.integer)):
        value = value.item()
    return value


# ----------------------------------------------------------------------------
# The trainer
# ----------------------------------------------------------------------------


class Trainer:
    """Trains ``config.model`` on ``config.dataset`` under a strategy.

    Example:

    >>> config = TrainConfig(model="resnet", depth=4, epochs=1, model_dir="/tmp/r")  # doctest: +SKIP
    >>> summary = Trainer(config).run()                                             # doctest: +SKIP
    """

    def __init__(self, config, strategy=None):
        import keras
        import tensorflow as tf

        from contractive_keras import data

        self.config = config
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
        # The held-out images are cut off before any pipeline is built, so a
        # run equals one on a dataset holding only the first N - n images.
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
            self.model.build((None, 28, 28, 1))
            self.optimizer = build_optimizer(config, self.steps_per_epoch)
            self.optimizer.build(self.model.trainable_variables)
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
        self._train_step = self._make_train_step()
        self._eval_step = self._make_eval_step()
        self.history = []
        self.timings = {"train_seconds": 0.0, "train_examples": 0}
        self.writer = None
        if self.chief:
            self.writer = tf.summary.create_file_writer(os.path.join(config.model_dir, "logs"))
        self.restored = self.restore()

    # -- checkpoints --------------------------------------------------------

    def _writable_checkpoint_dir(self):
        """Non-chief workers write their (identical) copy to a scratch dir."""
        if self.chief:
            return self.checkpoint_dir
        task_id = self.strategy.cluster_resolver.task_id
        return os.path.join(self.config.model_dir, ".worker_scratch", f"worker_{task_id}")

    def restore(self):
        """Restores the latest checkpoint of ``model_dir``; returns its path.

        Without a checkpoint and with ``init_from``, the weights of that
        trained model are copied in instead (fine-tuning) and every weight
        constraint is applied once, so the guarantees hold from step 0.
        """
        import tensorflow as tf

        latest = tf.train.latest_checkpoint(self.checkpoint_dir)
        if latest:
            self.checkpoint.restore(latest).assert_existing_objects_matched()
        elif self.config.init_from:
            self.initialize_from(self.config.init_from)
        return latest

    def initialize_from(self, path):
        """Copies the weights of a trained model (``.keras`` file or a
        train.py ``--model_dir``) into this one, then applies the constraints."""
        import keras

        import contractive_keras.layers  # noqa: F401  registers the layers

        if os.path.isdir(path):
            path = os.path.join(path, "export", "model.keras")
        if not os.path.isfile(path):
            raise ValueError(f"--init_from: no .keras file at {path} (give a .keras file or a "
                             f"train.py --model_dir that was run with --export)")
        source = keras.saving.load_model(path, safe_mode=True)
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

    # -- steps --------------------------------------------------------------

    def _make_train_step(self):
        import keras
        import tensorflow as tf

        model, optimizer, strategy = self.model, self.optimizer, self.strategy
        global_batch = self.config.batch_size
        loss_fn = keras.losses.SparseCategoricalCrossentropy(
            from_logits=True, reduction=None
        )
        scaled = isinstance(optimizer, keras.optimizers.LossScaleOptimizer)

        def gradients(images, labels):
            with tf.GradientTape() as tape:
                logits = tf.cast(model(images, training=True), tf.float32)
                per_example = loss_fn(labels, logits)
                data_loss = tf.nn.compute_average_loss(per_example, global_batch_size=global_batch)
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

        if self.config.jit_compile:
            gradients = tf.function(gradients, jit_compile=True)

        def replica_step(images, labels):
            grads, data_loss, reg_loss, correct = gradients(images, labels)
            optimizer.apply_gradients(zip(grads, model.trainable_variables))
            return data_loss, reg_loss, correct

        @tf.function
        def train_step(images, labels):
            data_loss, reg_loss, correct = strategy.run(replica_step, args=(images, labels))
            reduce = lambda v: strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None)
            # data_loss is already a share of the global mean; reg_loss a 1/replicas share.
            return reduce(data_loss), reduce(reg_loss), reduce(correct)

        return train_step

    def _make_eval_step(self):
        import tensorflow as tf

        model, strategy = self.model, self.strategy

        def replica_eval(images, labels):
            logits = model(images, training=False)
            predicted = tf.argmax(logits, -1, output_type=tf.int32)
            correct = tf.reduce_sum(tf.cast(tf.equal(predicted, labels), tf.float32))
            return correct, tf.cast(tf.shape(labels)[0], tf.float32)

        @tf.function
        def eval_step(images, labels):
            correct, count = strategy.run(replica_eval, args=(images, labels))
            reduce = lambda v: strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None)
            return reduce(correct), reduce(count)

        return eval_step

    # -- data ---------------------------------------------------------------

    def _epoch_dataset(self, epoch, start_step):
        from contractive_keras import data

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
        """Accuracy on ``split``: ``"train"`` (the trained part), ``"validation"``
        (the held-out last ``validation_size`` training images) or ``"test"``."""
        from contractive_keras import data

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

    # -- loop ---------------------------------------------------------------

    def run(self):
        """Trains to ``config.epochs`` (resuming), then evaluates and exports."""
        import keras
        import tensorflow as tf

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
            start = int(self.step_in_epoch)
            progbar = None
            if self.chief and config.verbose:
                print(f"Epoch {epoch + 1}/{config.epochs}", flush=True)
                progbar = keras.utils.Progbar(
                    self.steps_per_epoch, stateful_metrics=["loss", "reg_loss", "accuracy", "examples/s"],
                    verbose=config.verbose,
                )
            sums = {"loss": 0.0, "correct": 0.0, "n": 0}
            learning_rate = float(self.optimizer.learning_rate)
            t_epoch = time.perf_counter()
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
            self.epoch.assign(epoch + 1)
            self.step_in_epoch.assign(0)
            self.save()
            record = self._end_of_epoch(epoch, sums, learning_rate, time.perf_counter() - t_epoch)
            self.history.append(record)
        return self.finish(restored)

    def _end_of_epoch(self, epoch, sums, learning_rate, seconds):
        import tensorflow as tf

        record = {
            "epoch": epoch + 1,
            "train_loss": sums["loss"] / max(sums["n"] / self.config.batch_size, 1),
            "train_accuracy_running": sums["correct"] / max(sums["n"], 1),
            "test_accuracy": self.evaluate("test"),
            **({"validation_accuracy": self.evaluate("validation")} if len(self.y_val) else {}),
            "learning_rate": learning_rate,
            "seconds": seconds,
        }
        record.update({f"certificate/{k}": v for k, v in certificate_scalars(self.model).items()
                       if isinstance(v, (int, float))})
        if self.chief:
            if self.config.verbose:
                shown = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in record.items()}
                print(f"  {shown}", flush=True)
            with self.writer.as_default(step=epoch + 1):
                for key, value in record.items():
                    if key != "epoch" and isinstance(value, (int, float)):
                        # float64: certificate bounds such as 1e60 overflow float32
                        tf.summary.scalar(key, tf.constant(float(value), tf.float64))
            self.writer.flush()
        return record

    def finish(self, restored):
        """Final metrics, optional noise table and export, summary JSON."""
        config = self.config
        summary = {
            "flags": dataclasses.asdict(config),
            "resumed_from": restored,
            "history": self.history,
            "final": {
                "test_accuracy": self.evaluate("test"),
                "train_accuracy": self.evaluate("train", take=config.eval_take),
                **({"validation_accuracy": self.evaluate("validation")} if len(self.y_val) else {}),
            },
            "certificate": certificate_scalars(self.model),
            "timings": {
                **self.timings,
                "examples_per_second": self.timings["train_examples"] / self.timings["train_seconds"]
                if self.timings["train_seconds"] else None,
            },
            "hardware": hardware_summary(self.strategy),
        }
        if config.eval_noise:
            summary["robustness"] = self._robustness_table()
        if config.export and self.chief:
            from contractive_keras import export

            summary["export"] = export.export_classifier(self.model, os.path.join(config.model_dir, "export"))
        if self.chief:
            write_json(os.path.join(config.model_dir, "summary.json"), summary)
        return summary

    def _robustness_table(self):
        from contractive_keras import robustness

        from contractive_keras import data

        take = self.config.eval_take or len(self.y_test)
        # The reference noise protocol (10 draws) and FGSM; PGD is left to
        # `python -m contractive_keras.evaluate`, which takes much longer.
        table = robustness.evaluate(
            self.model, (self.x_test[:take], self.y_test[:take]), attacks=("fgsm",),
            normalization=robustness.model_normalization(
                self.model, default=data.normalization(self.config.dataset)),
            verbose=1 if self.chief and self.config.verbose else 0,
        )
        return table.to_dict() if hasattr(table, "to_dict") else table


# ----------------------------------------------------------------------------
# Reporting helpers
# ----------------------------------------------------------------------------


def hardware_summary(strategy):
    """Processor, accelerators, replicas and library versions of the run."""
    import keras
    import tensorflow as tf

    gpus = []
    for device in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(device)
        gpus.append(details.get("device_name", device.name))
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "gpus": gpus,
        "strategy": type(strategy).__name__,
        "replicas": strategy.num_replicas_in_sync,
        "python": sys.version.split()[0],
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
    }


def write_json(path, obj):
    """Writes JSON atomically (temporary file, then rename)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, default=_to_python)
    os.replace(tmp, path)
