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
