"""Makes TensorFlow (and tfp, tf_keras, tensorflow_datasets) look not installed,
as on a GPU host that has JAX and PyTorch but no TensorFlow.

Put this folder first on PYTHONPATH (scripts/gpu_run.sh does, with
``--no-tensorflow``) to check on a machine that has TensorFlow that a command
never imports it. tests/conftest.py installs the same finder when
CONTRACTIVE_KERAS_NO_TENSORFLOW=1.

The path finder is wrapped so that it does not find those packages: then
``import tensorflow`` raises ModuleNotFoundError and
``importlib.util.find_spec("tensorflow")`` returns None, exactly as without
them (``sys.modules[name] = None`` would not do: Keras tests
``"tensorflow" in sys.modules``, and torch._dynamo calls find_spec).
"""

import importlib.machinery
import sys

BLOCKED = ("tensorflow", "tensorflow_probability", "tf_keras", "tensorflow_datasets")


class NoTensorFlow:
    """``importlib.machinery.PathFinder`` that does not find the BLOCKED packages."""

    def __init__(self, inner):
        self.inner = inner

    def find_spec(self, fullname, path=None, target=None):
        if fullname.split(".")[0] in BLOCKED:
            return None
        return self.inner.find_spec(fullname, path, target)

    def __getattr__(self, name):   # invalidate_caches, find_distributions, ...
        return getattr(self.inner, name)


if not any(isinstance(finder, NoTensorFlow) or type(finder).__name__ == "NoTensorFlow"
           for finder in sys.meta_path):
    sys.meta_path[:] = [NoTensorFlow(finder) if finder is importlib.machinery.PathFinder else finder
                        for finder in sys.meta_path]
