"""Shared pytest set-up: offline data location, quiet TensorFlow, seeds, backends.

Under ``KERAS_BACKEND=jax`` or ``torch`` only the tests marked ``backends``
are collected (the rest is TensorFlow's suite).  With
``CONTRACTIVE_KERAS_NO_TENSORFLOW=1``, ``import tensorflow`` (and tfp) fails
as on a GPU host that has JAX and PyTorch but no TensorFlow, so those runs
also check that the package's backend-neutral parts never import it.
"""

import os
import runpy

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if os.environ.get("CONTRACTIVE_KERAS_NO_TENSORFLOW") == "1":
    # "import tensorflow" now raises ImportError (scripts/no_tensorflow's finder).
    runpy.run_path(os.path.join(ROOT, "scripts", "no_tensorflow", "sitecustomize.py"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# The certificates run many small float64 eigen-decompositions in NumPy;
# multi-threaded OpenBLAS makes each 20-90x slower on a busy 2-core machine.
# Set before NumPy is first imported (it reads the variable at load time).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
if os.environ.get("KERAS_BACKEND") == "jax":
    # XLA compiles every op and shape once per process: a persistent cache
    # (git-ignored) shares the compilations between the two xdist workers and
    # between runs (the JAX run of the layer tests: about 50 s cold, 14 s warm).
    import jax  # pylint: disable=import-outside-toplevel

    jax.config.update("jax_compilation_cache_dir", os.path.join(ROOT, ".pytest_cache", "jax"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
_REPO_DATA = os.path.join(ROOT, "data")
if "CONTRACTIVE_KERAS_DATA" not in os.environ and os.path.isdir(_REPO_DATA):
    os.environ["CONTRACTIVE_KERAS_DATA"] = _REPO_DATA


@pytest.fixture(autouse=True)
def _seed_everything():
    """Each test starts from the same random state."""
    import keras
    import numpy as np

    keras.utils.set_random_seed(1234)
    np.random.seed(1234)
    yield


def pytest_collection_modifyitems(config, items):
    """Off TensorFlow, keep only the tests marked ``backends``."""
    if os.environ.get("KERAS_BACKEND", "tensorflow") == "tensorflow":
        return
    kept = [item for item in items if item.get_closest_marker("backends")]
    dropped = [item for item in items if not item.get_closest_marker("backends")]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


def pytest_ignore_collect(collection_path, config):
    """Off TensorFlow, do not even import test files without a ``backends`` test
    (they may import TensorFlow at module level)."""
    if os.environ.get("KERAS_BACKEND", "tensorflow") == "tensorflow":
        return None
    path = str(collection_path)
    if not path.endswith(".py") or os.path.basename(path) == "conftest.py":
        return None
    with open(path, encoding="utf-8") as handle:
        return "mark.backends" not in handle.read()
