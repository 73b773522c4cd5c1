"""Peak memory of a gradient computation as the step count grows.

Measured with TensorFlow's own allocator statistics
(``tf.config.experimental.get_memory_info``). On CPU these exist only with
the BFC allocator, chosen by ``TF_CPU_ALLOCATOR_USE_BFC`` before TensorFlow
starts, so the measurement runs in a fresh subprocess on the CPU.
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))

_SCRIPT = textwrap.dedent("""
    import json
    import tensorflow as tf
    from contractive_keras import solvers

    tf.random.set_seed(0)
    weights = tf.Variable(tf.random.normal([64, 64]) * 0.1)
    y0 = tf.random.normal([128, 64])

    def fn(t, y):
        return tf.tanh(tf.matmul(y, weights))

    def peak(gradient, steps):
        tf.config.experimental.reset_memory_stats("CPU:0")
        with tf.GradientTape() as tape:
            y1 = solvers.odeint(fn, y0, 1.0, method="midpoint", steps=steps,
                                gradient=gradient, unroll=False)
            loss = tf.reduce_sum(y1)
        tape.gradient(loss, weights)
        return tf.config.experimental.get_memory_info("CPU:0")["peak"]

    peaks = {}
    for gradient in ("backprop", "checkpoint", "adjoint"):
        peak(gradient, 4)  # warm-up: kernels, caches
        peaks[gradient] = [peak(gradient, 16), peak(gradient, 144)]
    print("PEAKS" + json.dumps(peaks))
""")


@pytest.fixture(scope="module")
def peaks():
    env = dict(os.environ, TF_CPU_ALLOCATOR_USE_BFC="true",
               CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run([sys.executable, "-c", _SCRIPT], cwd=ROOT,
                            env=env, capture_output=True, text=True,
                            timeout=300, check=False)
    lines = [line for line in result.stdout.splitlines()
             if line.startswith("PEAKS")]
    assert result.returncode == 0 and lines, result.stderr[-3000:]
    return json.loads(lines[-1][len("PEAKS"):])


def test_backprop_memory_grows_linearly_with_steps(peaks):
    # The measurement itself must see the tape: 9x the steps, >= 6x memory.
    small, large = peaks["backprop"]
    assert large > 6 * small, peaks


def test_checkpoint_memory_grows_like_the_square_root_of_steps(peaks):
    # sqrt(144 / 16) = 3; linear growth would be 9.
    small, large = peaks["checkpoint"]
    assert large < 4.5 * small, peaks
    assert large < peaks["backprop"][1] / 4, peaks


def test_adjoint_memory_does_not_grow_with_steps(peaks):
    small, large = peaks["adjoint"]
    assert large < 1.5 * small, peaks
    assert large < peaks["backprop"][1] / 20, peaks
