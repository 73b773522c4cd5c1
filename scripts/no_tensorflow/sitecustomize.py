"""Makes ``import tensorflow`` (and tfp, tf_keras, tensorflow_datasets) fail, as
on a GPU host that has JAX and PyTorch but no TensorFlow.

Put this folder first on PYTHONPATH (scripts/gpu_run.sh does, with
``--no-tensorflow``) to check on a machine that has TensorFlow that a command
never imports it.
"""

import sys

for _name in ("tensorflow", "tensorflow_probability", "tf_keras", "tensorflow_datasets"):
    sys.modules[_name] = None
