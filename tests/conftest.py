"""Shared pytest set-up: offline data location, quiet TensorFlow, seeds."""

import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# The certificates run many small float64 eigen-decompositions in NumPy;
# multi-threaded OpenBLAS makes each 20-90x slower on a busy 2-core machine.
# Set before NumPy is first imported (it reads the variable at load time).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
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
