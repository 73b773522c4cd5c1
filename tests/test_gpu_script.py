"""scripts/gpu_run.sh, the GPU run of the JAX path, runs on this CPU: with
TensorFlow blocked (as on the GPU host), it runs a backends-marked test file,
trains the N = 12 CH-NODE with train.py under JAX and reports examples per
second in gpu_run.json."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

pytestmark = pytest.mark.slow


def test_gpu_run_script_on_cpu_with_jax_and_no_tensorflow(tmp_path):
    env = dict(os.environ, PYTHON=sys.executable)
    env.pop("KERAS_BACKEND", None)
    result = subprocess.run(
        ["bash", "scripts/gpu_run.sh", "--wheels", str(tmp_path / "no_wheels"),
         "--out", str(tmp_path / "out"), "--no-tensorflow",
         "--tests", "tests/test_export_backends.py", "--",
         "--steps_per_epoch=3", "--batch_size=32"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-4000:]
    assert "no TensorFlow here" in log
    assert "passed" in (tmp_path / "out" / "tests.log").read_text()
    with open(tmp_path / "out" / "gpu_run.json") as f:
        report = json.load(f)
    assert report["backend"] == "jax" and report["gpu"] is None
    assert report["examples_per_second"] > 0
    assert 0.0 <= report["test_accuracy"] <= 1.0
    with open(tmp_path / "out" / "chnode_n12" / "summary.json") as f:
        summary = json.load(f)
    assert summary["flags"]["depth"] == 12 and summary["flags"]["model"] == "chnode"
    assert "examples/s" in log
