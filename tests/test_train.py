"""train.py: flag validation, short runs, resume after kill -9, strategies, exports.

In-process tests of the loop behind it are in tests/training/.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN = os.path.join(ROOT, "train.py")
HAS_MNIST = bool(os.environ.get("CONTRACTIVE_KERAS_DATA")) and os.path.isfile(
    os.path.join(os.environ.get("CONTRACTIVE_KERAS_DATA", ""), "mnist.npz")
)
needs_mnist = pytest.mark.skipif(not HAS_MNIST, reason="MNIST offline copy absent: run `make data`")


def _env(**extra):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1", CUDA_VISIBLE_DEVICES="")
    env.pop("TF_CONFIG", None)
    env.update(extra)
    return env


def run_train(*args, timeout=300, env=None):
    return subprocess.run(
        [sys.executable, TRAIN, *args], capture_output=True, text=True, timeout=timeout,
        env=env or _env(), cwd=ROOT,
    )


def final_weights(model_dir):
    """Model variables of the latest checkpoint, by checkpoint key."""
    import tensorflow as tf

    reader = tf.train.load_checkpoint(os.path.join(model_dir, "checkpoints"))
    return {
        key: reader.get_tensor(key)
        for key in reader.get_variable_to_shape_map()
        if key.startswith("model/") and "OPTIMIZER_SLOT" not in key
    }


def assert_same_weights(a, b, rtol=1e-5, atol=1e-6):
    assert a.keys() == b.keys() and a
    for key in a:
        np.testing.assert_allclose(a[key], b[key], rtol=rtol, atol=atol, err_msg=key)


# Few steps of a small network: quick but a real run on real data.
SMALL = ["--model=resnet", "--depth=2", "--epochs=2", "--steps_per_epoch=6", "--batch_size=20",
         "--verbose=0", "--eval_batch_size=500"]


# --- flag validation -------------------------------------------------------------


@pytest.mark.parametrize("args, expected", [
    (["--model=transformer"], "chnode|hdnn|resnet|node|stable_node"),
    (["--dataset=cifar10"], "mnist|fashion_mnist"),
    (["--solver=leapfrog"], "euler|midpoint|rk4|dopri5|bdf"),
    (["--strategy=parameter_server"], "auto|one_device|mirrored|multi_worker|tpu"),
    (["--lr_decay=1.5"], "--lr_decay must be in (0, 1]"),
    (["--batch_size=0"], "--batch_size must be positive"),
    (["--learning_rate=-0.1"], "--learning_rate must be positive"),
    (["--gamma=-2"], "--gamma must be 'auto' or a positive number"),
    (["--gamma=fast"], "--gamma must be 'auto' or a positive number"),
    (["--model=resnet", "--gamma=3"], "--gamma applies to --model=chnode or chnode_certified only"),
    (["--eps=1.5"], "--eps must lie in (0, 1)"),
    (["--L_scale=0"], "--L_scale must be a positive number"),
    (["--model=hdnn", "--L_scale=0.3"], "--L_scale applies to --model=chnode or chnode_certified only"),
    (["--lift_max_norm=-1"], "--lift_max_norm must be a positive number"),
    (["--model=chnode", "--delta_bar=0.5"], "--delta_bar applies to --model=stable_node or stable_node_certified only"),
    (["--model=chnode", "--kernels=clipped"],
     "--kernels applies to --model=lipschitz_cnn, chnode_certified or stable_node_certified only"),
    (["--model=chnode_certified", "--kernels=spectral"], "kernels"),
    (["--model=stable_node_certified", "--dense=0"], "--dense must be positive"),
    (["--model=stable_node_certified", "--dense=63"], "even"),
    (["--model=node", "--dense=64"], "--dense applies to"),
    (["--model=node", "--depth=4"], "--depth applies to --model=chnode, hdnn, resnet, chnode_certified or stable_node_certified only"),
    (["--min_slope=0"], "--min_slope must be in (0, 1]"),
    (["--train_eps=-1"], "--train_eps must be a finite radius >= 0"),
    (["--temperature=0"], "--temperature must be a positive number"),
    (["--loss=margin"], "loss"),
    (["--epochs=ten"], "epochs"),
    (["positional"], "unexpected arguments"),
])
def test_bad_flags_exit_2_with_a_clear_message(args, expected):
    result = run_train(*args, timeout=60)
    assert result.returncode == 2, result.stderr
    assert expected in result.stderr
    assert "Traceback" not in result.stderr


def test_help_lists_every_flag():
    result = run_train("--helpfull", timeout=60)
    for flag in ("--model", "--depth", "--dataset", "--data_dir", "--epochs", "--batch_size",
                 "--learning_rate", "--lr_decay", "--weight_decay", "--smoothness", "--solver",
                 "--step_size", "--gamma", "--delta_bar", "--min_slope", "--seed", "--strategy",
                 "--model_dir", "--steps_per_epoch", "--eval_noise", "--export",
                 "--mixed_precision", "--loss", "--train_eps", "--temperature", "--loss_bound",
                 "--normalize_inputs", "--kernel_size", "--kernels", "--dense", "--flagfile"):
        name = flag[2:]
        assert f"--{name}:" in result.stdout or f"--[no]{name}:" in result.stdout, flag


@pytest.mark.parametrize("kernels, conv_class", [("orthonormal", "OrthonormalConv2D"),
                                                  ("clipped", "Conv2D")])
def test_kernels_flag_chooses_the_certified_skeletons_layers(kernels, conv_class):
    import train

    from contractive_keras.training import build_model

    train.FLAGS(["train.py", "--model=stable_node_certified", f"--kernels={kernels}"])
    try:
        config = train.make_config()
    finally:
        train.FLAGS.unparse_flags()
    assert config.kernels == kernels
    assert type(build_model(config).get_layer("conv1")).__name__ == conv_class


def test_dense_flag_sets_the_certified_skeletons_width():
    import train

    from contractive_keras.training import build_model

    train.FLAGS(["train.py", "--model=chnode_certified", "--dense=64"])
    try:
        config = train.make_config()
    finally:
        train.FLAGS.unparse_flags()
    assert build_model(config).get_layer("dense1").units == 64


def test_chnode_flags_reach_the_layer():
    import train

    from contractive_keras.training import build_model

    train.FLAGS(["train.py", "--model=chnode", "--depth=2", "--gamma=2", "--eps=0.3",
                 "--L_scale=0.3", "--lift_max_norm=0.5", "--readout_max_norm=2"])
    try:
        config = train.make_config()
    finally:
        train.FLAGS.unparse_flags()
    model = build_model(config)
    assert model.get_layer("lift").kernel.constraint.max_norm == 0.5
    assert model.get_layer("logits").kernel.constraint.max_norm == 2.0
    layer = model.get_layer("chnode")
    constants = layer.theorem1_constants()
    assert layer.gamma == 2.0 and layer.eps == 0.3
    np.testing.assert_allclose(layer.L.numpy(), np.stack([0.3 * np.eye(8)] * 2), rtol=1e-6)
    assert constants["c1"] == pytest.approx(0.09 + layer.kappa, rel=1e-6)   # L^T L + kappa I


def test_recipe_defaults_fill_unset_flags():
    import train

    from contractive_keras import models

    train.FLAGS(["train.py", "--model=hdnn", "--depth=8", "--epochs=3"])
    try:
        config = train.make_config()
    finally:
        train.FLAGS.unparse_flags()
    recipe = models.REFERENCE_HPARAMS["hdnn"]
    assert config.depth == 8 and config.epochs == 3
    assert config.learning_rate == recipe["learning_rate"]
    assert config.weight_decay == recipe["weight_decay"]
    assert config.model_dir == os.path.join("runs", "hdnn_mnist_n8")


# --- runs --------------------------------------------------------------------------


@needs_mnist
def test_short_cli_run_writes_summary_checkpoint_logs_and_exports(tmp_path):
    model_dir = tmp_path / "run"
    result = run_train(*SMALL, f"--model_dir={model_dir}", "--export")
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((model_dir / "summary.json").read_text())
    assert summary["flags"]["model"] == "resnet" and summary["flags"]["depth"] == 2
    assert len(summary["history"]) == 2
    assert 0.0 <= summary["final"]["test_accuracy"] <= 1.0
    assert summary["hardware"]["replicas"] == 1
    assert summary["timings"]["examples_per_second"] > 0
    assert os.listdir(model_dir / "logs")
    assert (model_dir / "checkpoints" / "checkpoint").exists()

    import keras
    import tensorflow as tf

    import contractive_keras.layers  # registers the package's layers for deserialization
    from contractive_keras import data
    from contractive_keras.layers import ResNetODE  # noqa: F401

    x, _ = data.load_numpy("mnist", "test")
    images = (x[:16, ..., None] / 255.0).astype("float32")
    model = keras.saving.load_model(model_dir / "export" / "model.keras")
    expected = model(images).numpy()
    served = tf.saved_model.load(str(model_dir / "export" / "saved_model"))
    np.testing.assert_allclose(served.serve(images).numpy(), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        served.serve_uint8(x[:16, ..., None]).numpy(), expected, rtol=1e-5, atol=1e-5
    )
    wrapped = keras.Sequential([
        keras.Input((28, 28, 1)),
        keras.layers.TFSMLayer(str(model_dir / "export" / "saved_model"), call_endpoint="serve"),
    ])
    np.testing.assert_allclose(wrapped(images).numpy(), expected, rtol=1e-5, atol=1e-5)


def test_flag_choices_come_from_the_package():
    import train

    from contractive_keras import data, models, solvers, training

    assert tuple(train.FLAGS["model"].parser.enum_values) == models.NAMES
    assert tuple(train.FLAGS["dataset"].parser.enum_values) == data.DATASETS
    assert tuple(train.FLAGS["solver"].parser.enum_values) == tuple(solvers.KNOWN_METHODS)
    assert tuple(train.FLAGS["strategy"].parser.enum_values) == training.STRATEGIES


def test_init_from_a_different_architecture_is_refused(tmp_path):
    result = run_train("--model=stable_node", "--init_from=" + str(tmp_path / "missing.keras"),
                       f"--model_dir={tmp_path}", timeout=120)
    assert result.returncode == 2 and "--init_from: no .keras file" in result.stderr


def _one_line_error(result):
    lines = [l for l in result.stderr.splitlines() if l.startswith("train.py:")]
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr and len(lines) == 1, result.stderr[-3000:]
    return lines[0]


def test_unwritable_model_dir_exits_2_with_one_line(tmp_path):
    (tmp_path / "a_file").write_text("x")
    result = run_train("--model=resnet", f"--model_dir={tmp_path / 'a_file' / 'run'}", timeout=120)
    assert "is not a writable directory" in _one_line_error(result)


def test_init_from_a_file_that_is_not_a_keras_archive_exits_2_with_one_line(tmp_path):
    (tmp_path / "model.keras").write_text("not a zip archive")
    result = run_train("--model=stable_node", f"--init_from={tmp_path / 'model.keras'}",
                       f"--model_dir={tmp_path / 'run'}", timeout=120)
    assert "is not a .keras file" in _one_line_error(result)


@pytest.mark.slow   # a training run (make test-slow)
@needs_mnist
def test_resume_after_kill_matches_uninterrupted_run(tmp_path):
    args = ["--model=resnet", "--depth=2", "--epochs=2", "--steps_per_epoch=40", "--batch_size=20",
            "--verbose=0", "--checkpoint_every=4", "--eval_batch_size=1000"]
    reference = tmp_path / "reference"
    assert run_train(*args, f"--model_dir={reference}").returncode == 0

    interrupted = tmp_path / "interrupted"
    proc = subprocess.Popen([sys.executable, TRAIN, *args, f"--model_dir={interrupted}"],
                            env=_env(), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    index = interrupted / "checkpoints" / "checkpoint"
    deadline = time.time() + 240
    # Kill once a mid-epoch checkpoint of the second epoch exists (step 48 of 80).
    while time.time() < deadline and proc.poll() is None:
        if index.exists() and "ckpt-48" in index.read_text():
            break
        time.sleep(0.05)
    assert proc.poll() is None, "run finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (interrupted / "summary.json").exists()

    resumed = run_train(*args, f"--model_dir={interrupted}", "--verbose=1")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Resuming from" in resumed.stdout
    assert_same_weights(final_weights(reference), final_weights(interrupted))
    # The summary covers every epoch, the one the killed process finished included.
    history = json.loads((interrupted / "summary.json").read_text())["history"]
    expected = json.loads((reference / "summary.json").read_text())["history"]
    assert [r["epoch"] for r in history] == [1, 2]
    assert history[0]["train_loss"] == expected[0]["train_loss"]   # written by the killed process


@needs_mnist
def test_nan_loss_stops_with_exit_3_and_keeps_last_checkpoint(tmp_path):
    # Adam steps of size ~lr = 1e30 overflow the logits to Inf, the loss to NaN.
    result = run_train("--model=resnet", "--depth=2", "--epochs=1", "--steps_per_epoch=200",
                       "--batch_size=20", "--verbose=0", "--learning_rate=1e30",
                       "--checkpoint_every=1", f"--model_dir={tmp_path}")
    assert result.returncode == 3, result.stderr[-2000:]
    assert "training diverged" in result.stderr and "last good checkpoint" in result.stderr
    weights = final_weights(tmp_path)
    assert all(np.all(np.isfinite(w)) for w in weights.values())


@pytest.mark.slow   # a training run (make test-slow)
@needs_mnist
def test_mirrored_two_cpus_matches_one_device(tmp_path):
    args = ["--model=resnet", "--depth=2", "--epochs=1", "--steps_per_epoch=5", "--batch_size=20",
            "--verbose=0", "--eval_batch_size=1000"]
    one = run_train(*args, "--strategy=one_device", f"--model_dir={tmp_path / 'one'}")
    assert one.returncode == 0, one.stderr[-3000:]
    two = run_train(*args, "--strategy=mirrored", "--cpu_devices=2", f"--model_dir={tmp_path / 'two'}")
    assert two.returncode == 0, two.stderr[-3000:]
    assert json.loads((tmp_path / "two" / "summary.json").read_text())["hardware"]["replicas"] == 2
    assert_same_weights(final_weights(tmp_path / "one"), final_weights(tmp_path / "two"), rtol=1e-4, atol=1e-5)


def _free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.mark.slow   # a training run (make test-slow)
@needs_mnist
def test_two_workers_on_localhost_match_a_single_worker(tmp_path):
    args = ["--model=resnet", "--depth=2", "--epochs=1", "--steps_per_epoch=5", "--batch_size=20",
            "--verbose=0", "--eval_batch_size=1000"]
    single = run_train(*args, "--strategy=one_device", f"--model_dir={tmp_path / 'single'}")
    assert single.returncode == 0, single.stderr[-3000:]
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    procs = []
    for index in range(2):
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        procs.append(subprocess.Popen(
            [sys.executable, TRAIN, *args, "--strategy=multi_worker", f"--model_dir={tmp_path / 'multi'}"],
            env=_env(TF_CONFIG=tf_config), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        ))
    outputs = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, outputs):
        assert p.returncode == 0, err[-3000:]
    summary = json.loads((tmp_path / "multi" / "summary.json").read_text())
    assert summary["hardware"]["strategy"] in ("MultiWorkerMirroredStrategy", "CollectiveAllReduceStrategy")
    assert summary["hardware"]["replicas"] == 2
    assert not (tmp_path / "multi" / ".worker_scratch" / "worker_1").exists()
    assert_same_weights(final_weights(tmp_path / "single"), final_weights(tmp_path / "multi"), rtol=1e-4, atol=1e-5)


# --- validation split ----------------------------------------------------------------


def test_negative_validation_size_exits_2():
    result = run_train("--validation_size=-1", timeout=60)
    assert result.returncode == 2 and "--validation_size must be >= 0" in result.stderr


@pytest.mark.slow   # a training run (make test-slow)
@needs_mnist
def test_validation_size_reports_validation_accuracy_every_epoch(tmp_path):
    result = run_train(*SMALL, "--validation_size=500", f"--model_dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["flags"]["validation_size"] == 500
    assert len(summary["history"]) == 2
    for record in summary["history"]:
        assert 0.0 <= record["validation_accuracy"] <= 1.0
    assert 0.0 <= summary["final"]["validation_accuracy"] <= 1.0
    import tensorflow as tf

    tags = set()
    for name in os.listdir(tmp_path / "logs"):
        for event in tf.compat.v1.train.summary_iterator(str(tmp_path / "logs" / name)):
            tags.update(v.tag for v in event.summary.value)
    assert "validation_accuracy" in tags


@pytest.mark.slow   # a training run (make test-slow)
@needs_mnist
def test_validation_split_is_the_last_n_images_and_never_trained_on(tmp_path):
    """A run with --validation_size=n equals one on a data dir of the first N - n images."""
    from contractive_keras import data

    n = 1000
    x_train, y_train = data.load_numpy("mnist", "train")
    x_test, y_test = data.load_numpy("mnist", "test")
    cut = len(x_train) - n
    head = tmp_path / "head"
    head.mkdir()
    np.savez(head / "mnist.npz", x_train=x_train[:cut], y_train=y_train[:cut],
             x_test=x_test, y_test=y_test)
    args = ["--model=resnet", "--depth=2", "--epochs=1", "--steps_per_epoch=4", "--batch_size=20",
            "--verbose=0", "--eval_batch_size=1000"]
    held_out = run_train(*args, f"--validation_size={n}", f"--model_dir={tmp_path / 'held_out'}")
    assert held_out.returncode == 0, held_out.stderr[-3000:]
    only_head = run_train(*args, f"--data_dir={head}", f"--model_dir={tmp_path / 'only_head'}")
    assert only_head.returncode == 0, only_head.stderr[-3000:]
    assert_same_weights(final_weights(tmp_path / "held_out"), final_weights(tmp_path / "only_head"),
                        rtol=0, atol=0)
    a = json.loads((tmp_path / "held_out" / "summary.json").read_text())["final"]
    b = json.loads((tmp_path / "only_head" / "summary.json").read_text())["final"]
    assert a["train_accuracy"] == b["train_accuracy"] and a["test_accuracy"] == b["test_accuracy"]


@needs_mnist
def test_init_from_a_zip_that_is_not_a_keras_model_exits_2_with_one_line(tmp_path):
    import zipfile

    with zipfile.ZipFile(tmp_path / "model.keras", "w") as archive:
        archive.writestr("readme.txt", "no model here")
    result = run_train("--model=stable_node", f"--init_from={tmp_path / 'model.keras'}",
                       f"--model_dir={tmp_path / 'run'}", timeout=180)
    assert "cannot load" in _one_line_error(result)


def test_a_tensorflow_only_strategy_exits_2_with_one_line_on_another_backend(tmp_path):
    """train.py under KERAS_BACKEND=jax (``multi_worker`` refuses alike, and on
    torch: tests/training/test_keras_loop.py, run on every backend)."""
    strategy, other = "tpu", "jax"
    result = run_train(f"--strategy={strategy}", "--model=resnet", "--depth=2",
                       f"--model_dir={tmp_path}", env=_env(KERAS_BACKEND=other))
    assert result.returncode == 2, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("train.py:")]
    assert lines == [f"train.py: error: --strategy={strategy} (tf.distribute) needs Keras's "
                     f"TensorFlow backend; this process uses the {other!r} backend: use "
                     f"--strategy=mirrored (keras.distribution.DataParallel over this host's "
                     f"devices, JAX) on this backend, or set KERAS_BACKEND=tensorflow."], result.stderr
