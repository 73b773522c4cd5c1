"""training.keras_loop.KerasTrainer (the loop of JAX and PyTorch) on every backend.

A small plain-Keras classifier stands in for the package's models (built
through the trainer's ``build_model``), on a tiny MNIST-shaped dataset: two
steps write a checkpoint, history, summary and a TensorBoard event file; an
interrupted run resumes, also mid-epoch, to the weights of an uninterrupted
one; the optimizer applies the weight constraints after every step; the
options that need TensorFlow refuse in one line.
"""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from contractive_keras import backend
from contractive_keras.training import TrainConfig, Trainer, keras_loop, strategy
from contractive_keras.training.keras_loop import KerasTrainer

pytestmark = pytest.mark.backends

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def small_model(config):
    """Flatten -> Dense 16 (norm-constrained) -> Dense 10 ``logits``."""
    return keras.Sequential([
        keras.Input((28, 28, 1)), keras.layers.Flatten(),
        keras.layers.Dense(16, activation="relu", kernel_constraint=keras.constraints.MaxNorm(0.5),
                           kernel_regularizer=keras.regularizers.L2(1e-4)),
        keras.layers.Dense(10, name="logits"),
    ], name=f"small_{config.seed}")


@pytest.fixture
def tiny_data(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 120), ("test", 40)):
        labels = np.arange(n) % 10
        images = rng.integers(0, 30, (n, 28, 28)).astype(np.uint8)
        for k in range(10):
            images[labels == k, 2 * k:2 * k + 4, 4:24] = 200
        arrays[f"x_{split}"], arrays[f"y_{split}"] = images, labels
    np.savez(tmp_path / "mnist.npz", **arrays)
    return str(tmp_path)


@pytest.fixture
def small(monkeypatch):
    monkeypatch.setattr(keras_loop, "build_model", small_model)


def _config(model_dir, data_dir, **overrides):
    values = dict(model="resnet", depth=2, epochs=1, steps_per_epoch=2, batch_size=20,
                  learning_rate=1e-2, model_dir=str(model_dir), data_dir=data_dir, verbose=0,
                  eval_take=40, eval_batch_size=20, checkpoint_every=0, strategy="one_device")
    values.update(overrides)
    return TrainConfig(**values)


def _weights(trainer):
    return [backend.to_numpy(v) for v in trainer.model.weights]


def test_two_steps_write_checkpoint_history_summary_and_tensorboard(tmp_path, tiny_data, small):
    trainer = KerasTrainer(_config(tmp_path / "run", tiny_data, export=True))
    if not backend.is_tensorflow():
        assert type(Trainer(_config(tmp_path / "other", tiny_data))).__name__ == "KerasTrainer"
    summary = trainer.run()
    run = tmp_path / "run"
    assert int(backend.to_numpy(trainer.optimizer.iterations)) == 2
    index = json.loads((run / "checkpoints" / "latest.json").read_text())
    assert index["checkpoints"] == ["ckpt-2"]
    assert {"model.weights.h5", "optimizer.npz", "position.json"} <= set(os.listdir(run / "checkpoints" / "ckpt-2"))
    assert json.loads((run / "checkpoints" / "ckpt-2" / "position.json").read_text()) == {
        "epoch": 1, "step_in_epoch": 0, "n": 2}
    saved = json.loads((run / "summary.json").read_text())
    assert saved["final"] == summary["final"] and 0.0 <= saved["final"]["test_accuracy"] <= 1.0
    assert saved["hardware"]["backend"] == backend.name()
    assert [json.loads(line)["epoch"] for line in (run / "history.jsonl").read_text().splitlines()] == [1]
    assert np.isfinite(summary["history"][0]["train_loss"])
    assert (run / "export" / "model.keras").is_file()
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.util.tensor_util import make_ndarray

    (events,) = os.listdir(run / "logs")
    values = {v.tag: v for e in EventFileLoader(str(run / "logs" / events)).Load()
              for v in e.summary.value}
    assert values["test_accuracy"].metadata.plugin_data.plugin_name == "scalars"
    logged = make_ndarray(values["test_accuracy"].tensor)
    assert logged.dtype == np.float64 and logged == summary["history"][0]["test_accuracy"]


def test_every_step_keeps_the_kernel_constraint(tmp_path, tiny_data, small):
    """Keras's optimizer applies ``variable.constraint`` after each update."""
    trainer = KerasTrainer(_config(tmp_path, tiny_data, learning_rate=0.5, steps_per_epoch=3))
    trainer.run()
    kernel = backend.to_numpy(trainer.model.layers[1].kernel)
    assert np.max(np.linalg.norm(kernel, axis=0)) <= 0.5 + 1e-5


class _Killed(Exception):
    pass


def test_an_interrupted_run_resumes_mid_epoch_to_the_uninterrupted_weights(tmp_path, tiny_data, small,
                                                                          monkeypatch):
    common = dict(epochs=2, steps_per_epoch=4, checkpoint_every=2)
    straight = KerasTrainer(_config(tmp_path / "straight", tiny_data, **common))
    straight.run()
    # The second run dies after step 3 of epoch 2 (its last checkpoint: step 2 of epoch 2).
    interrupted = KerasTrainer(_config(tmp_path / "resumed", tiny_data, **common))
    after_step = interrupted._after_step

    def dying(epoch, start, step, *args):
        after_step(epoch, start, step, *args)
        if (epoch, step) == (1, 2):
            raise _Killed

    monkeypatch.setattr(interrupted, "_after_step", dying)
    with pytest.raises(_Killed):
        interrupted.run()
    resumed = KerasTrainer(_config(tmp_path / "resumed", tiny_data, **common))
    assert resumed.restored.endswith("ckpt-6") and resumed._position() == (1, 2)
    summary = resumed.run()
    for a, b in zip(_weights(straight), _weights(resumed)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert [r["epoch"] for r in summary["history"]] == [1, 2]


@pytest.mark.parametrize("name", ["multi_worker", "tpu"])
def test_tensorflow_only_strategies_refuse_in_one_line(monkeypatch, name):
    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    with pytest.raises(NotImplementedError, match=r"^--strategy=" + name + r" \(tf.distribute\) needs "
                       r"Keras's TensorFlow backend; this process uses the 'jax' backend: use "
                       r"--strategy=mirrored .*set KERAS_BACKEND=tensorflow\.$"):
        strategy.select_distribution(name)


def test_mirrored_on_torch_refuses_in_one_line(monkeypatch):
    monkeypatch.setattr(keras.backend, "backend", lambda: "torch")
    with pytest.raises(NotImplementedError, match=r"^--strategy=mirrored needs Keras's JAX or "
                                                  r"TensorFlow backend.*KERAS_BACKEND=jax\.$"):
        strategy.select_distribution("mirrored")
    assert strategy.select_distribution("auto") is None


_DATA_PARALLEL = """
import os, sys
if os.environ.get("CONTRACTIVE_KERAS_NO_TENSORFLOW") == "1":
    for blocked in ("tensorflow", "tensorflow_probability", "tf_keras", "tensorflow_datasets"):
        sys.modules[blocked] = None
import jax
jax.config.update("jax_num_cpu_devices", 2)
import keras, numpy as np
sys.path.insert(0, {root!r})
from tests.training import test_keras_loop as t
from contractive_keras.training import keras_loop
keras_loop.build_model = t.small_model
one = keras_loop.KerasTrainer(t._config({tmp!r} + "/one", {data!r}, steps_per_epoch=3))
one.run()
assert one.strategy is None
two = keras_loop.KerasTrainer(t._config({tmp!r} + "/two", {data!r}, steps_per_epoch=3, strategy="auto"))
assert type(two.strategy).__name__ == "DataParallel" and two.replicas == 2
summary = two.run()
for a, b in zip(t._weights(one), t._weights(two)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
assert summary["hardware"]["replicas"] == 2
print("same weights")
"""


@pytest.mark.skipif(backend.name() != "jax", reason="keras.distribution.DataParallel runs on JAX")
def test_data_parallel_over_two_cpu_devices_matches_one_device(tmp_path, tiny_data):
    script = _DATA_PARALLEL.format(root=ROOT, tmp=str(tmp_path), data=tiny_data)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=300, cwd=ROOT, env=dict(os.environ, KERAS_BACKEND="jax"))
    assert result.returncode == 0 and "same weights" in result.stdout, result.stderr[-3000:]
