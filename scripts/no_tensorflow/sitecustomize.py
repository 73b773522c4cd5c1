"""Makes ``import tensorflow`` (and tfp, tf_keras, tensorflow_datasets) fail, as
on a GPU host that has JAX and PyTorch but no TensorFlow.

Put this folder first on PYTHONPATH (scripts/gpu_run.sh does, with
``--no-tensorflow``) to check on a machine that has TensorFlow that a command
never imports it. tests/conftest.py installs the same finder when
CONTRACTIVE_KERAS_NO_TENSORFLOW=1. A finder is used rather than
``sys.modules[name] = None``: libraries (Keras among them) test
``"tensorflow" in sys.modules`` to see whether TensorFlow was imported.
"""

import importlib.abc
import sys

BLOCKED = ("tensorflow", "tensorflow_probability", "tf_keras", "tensorflow_datasets")


class NoTensorFlow(importlib.abc.MetaPathFinder):
    """Refuses to find TensorFlow and its companions, as if not installed."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {fullname!r} (blocked: no TensorFlow here)",
                                      name=fullname)
        return None


if not any(isinstance(finder, NoTensorFlow) for finder in sys.meta_path):
    sys.meta_path.insert(0, NoTensorFlow())
