"""zoo/seeds.py: the run lock that lets several drivers share one queue."""

import importlib
import os
import subprocess
import sys

import pytest


@pytest.fixture(scope="module")
def seeds():
    return importlib.import_module("zoo.seeds")


def lock_path(seeds, model_dir):
    return os.path.join(model_dir, seeds.LOCK_FILE)


def test_a_claim_holds_the_run_until_released(seeds, tmp_path):
    model_dir = str(tmp_path / "cell" / "seed0")
    with seeds.claimed(model_dir) as mine:
        assert mine
        with open(lock_path(seeds, model_dir)) as f:
            assert int(f.read()) == os.getpid()
        with seeds.claimed(model_dir) as again:
            assert not again
    assert not os.path.exists(lock_path(seeds, model_dir))
    assert os.listdir(model_dir) == []  # no temporary file left behind


def test_a_live_driver_s_lock_is_respected(seeds, tmp_path):
    model_dir = str(tmp_path / "run")
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        os.makedirs(model_dir)
        with open(lock_path(seeds, model_dir), "w") as f:
            f.write(str(other.pid))
        with seeds.claimed(model_dir) as mine:
            assert not mine
        assert os.path.exists(lock_path(seeds, model_dir))  # not ours to remove
    finally:
        other.kill()
        other.wait()


@pytest.mark.parametrize("content", ["dead", "", "not a pid"])
def test_a_dead_or_unreadable_lock_is_taken_over(seeds, tmp_path, content):
    model_dir = str(tmp_path / "run")
    os.makedirs(model_dir)
    if content == "dead":
        gone = subprocess.Popen([sys.executable, "-c", "pass"])
        gone.wait()
        content = str(gone.pid)
    with open(lock_path(seeds, model_dir), "w") as f:
        f.write(content)
    with seeds.claimed(model_dir) as mine:
        assert mine
        with open(lock_path(seeds, model_dir)) as f:
            assert int(f.read()) == os.getpid()


def test_only_finished_node_runs_without_a_curve_need_one(seeds, tmp_path):
    import argparse
    import json

    paths = seeds.Paths(argparse.Namespace(runs_root=str(tmp_path / "runs"), results_dir=str(tmp_path),
                                           data_dir=str(tmp_path / "data"), source_data_dir=None))
    assert not seeds.needs_curve(paths, "node_mnist", 0)  # not finished
    for cell in ("node_mnist", "chnode_mnist_n4"):
        with open(paths.result(cell, 0), "w") as f:
            json.dump({"cell": cell}, f)
    assert seeds.needs_curve(paths, "node_mnist", 0)
    assert not seeds.needs_curve(paths, "chnode_mnist_n4", 0)  # Hamiltonian cells have no curve
    with open(paths.result("node_mnist", 0), "w") as f:
        json.dump({"cell": "node_mnist", "test_fgsm_curve": {"0.1": 0.5}}, f)
    assert not seeds.needs_curve(paths, "node_mnist", 0)


def test_the_fgsm_curve_is_robustness_evaluate_at_every_radius(seeds):
    import numpy as np

    from tests.robustness.classifiers import tiny_mnist_model

    model = tiny_mnist_model()
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (32, 28, 28)).astype("uint8")
    labels = rng.integers(0, 10, 32)
    curve = seeds.fgsm_curve(model, images, labels)
    assert list(curve) == [f"{e:g}" for e in seeds.NODE_FGSM_CURVE]
    assert all(0.0 <= v <= 1.0 for v in curve.values())
