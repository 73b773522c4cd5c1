"""The ``tf.distribute.Strategy`` of a run (shared/DESIGN.md, "Distribution").

``select_strategy(name)`` maps train.py's ``--strategy`` values
(``STRATEGIES``) to a strategy; ``is_chief`` says whether this task writes
logs, summaries and exports.
"""

import glob
import json
import os

import tensorflow as tf

#: train.py's ``--strategy`` values.
STRATEGIES = ("auto", "one_device", "mirrored", "multi_worker", "tpu")


def select_strategy(name):
    """Returns the ``tf.distribute.Strategy`` for a ``--strategy`` value.

    ``auto``: multi-worker when ``TF_CONFIG`` names a cluster of several
    tasks, else a TPU if one is found, else ``MirroredStrategy`` over all GPUs
    when there are several, else ``OneDeviceStrategy`` on the GPU or CPU.
    ``mirrored`` uses every GPU, or every logical CPU device when there is no
    GPU (how the tests run it on one machine).
    """
    if name == "auto":
        tf_config = json.loads(os.environ.get("TF_CONFIG", "{}") or "{}")
        n_tasks = sum(len(v) for v in tf_config.get("cluster", {}).values())
        if n_tasks > 1:
            name = "multi_worker"
    if name == "multi_worker":
        # Collective ops must be configured before TensorFlow initialises its
        # devices, so this comes before any other TensorFlow call.
        if not os.environ.get("TF_CONFIG"):
            raise ValueError("--strategy=multi_worker needs the TF_CONFIG environment variable")
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_logical_devices("GPU")
    if name == "auto":
        if _find_tpu() is not None:
            name = "tpu"
        elif len(gpus) > 1:
            name = "mirrored"
        else:
            name = "one_device"
    if name == "one_device":
        device = gpus[0].name if gpus else "/cpu:0"
        return tf.distribute.OneDeviceStrategy(device)
    if name == "mirrored":
        devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices)
    if name == "tpu":
        resolver = _find_tpu()
        if resolver is None:
            raise ValueError("--strategy=tpu but no TPU was found")
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    raise ValueError(f"unknown strategy {name!r}; expected {', '.join(STRATEGIES[:-1])} or {STRATEGIES[-1]}")


def _find_tpu():
    """A TPU cluster resolver when this host is a TPU VM or TPU_NAME is set.

    Nothing is probed otherwise (resolving a TPU with no hint asks a cloud
    metadata server, which is slow and pointless on other machines).
    """
    name = os.environ.get("TPU_NAME")
    if not name and not glob.glob("/dev/accel*") and not glob.glob("/dev/vfio/[0-9]*"):
        return None
    try:
        return tf.distribute.cluster_resolver.TPUClusterResolver(tpu=name or "local")
    except (ValueError, KeyError, RuntimeError, ImportError):
        return None


def is_chief(strategy):
    """Whether this task writes logs, summaries and exports."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "task_type", None):
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    cluster = resolver.cluster_spec().as_dict()
    if task_type == "chief":
        return True
    return task_type == "worker" and task_id == 0 and "chief" not in cluster
