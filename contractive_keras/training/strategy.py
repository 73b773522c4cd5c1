"""The devices of a run (shared/DESIGN.md, "Distribution").

On TensorFlow, ``select_strategy(name)`` maps train.py's ``--strategy``
values (``STRATEGIES``) to a ``tf.distribute.Strategy`` and ``is_chief`` says
whether this task writes logs, summaries and exports. On JAX and PyTorch,
``select_distribution(name)`` gives the ``keras.distribution`` of the run:
``keras.distribution.DataParallel`` over the local devices (JAX), or None
(one device). ``multi_worker`` and ``tpu`` are ``tf.distribute`` strategies
and refuse in one line elsewhere (``backend.require_tensorflow``).
TensorFlow is imported only by ``select_strategy`` and ``_find_tpu``.
"""

import glob
import json
import os

import keras

from contractive_keras import backend

#: train.py's ``--strategy`` values.
STRATEGIES = ("auto", "one_device", "mirrored", "multi_worker", "tpu")


def _cluster_tasks():
    tf_config = json.loads(os.environ.get("TF_CONFIG", "{}") or "{}")
    return sum(len(v) for v in tf_config.get("cluster", {}).values())


def select_strategy(name):
    """Returns the ``tf.distribute.Strategy`` for a ``--strategy`` value (TensorFlow only).

    ``auto``: multi-worker when ``TF_CONFIG`` names a cluster of several
    tasks, else a TPU if one is found, else ``MirroredStrategy`` over all GPUs
    when there are several, else ``OneDeviceStrategy`` on the GPU or CPU.
    ``mirrored`` uses every GPU, or every logical CPU device when there is no
    GPU (how the tests run it on one machine).
    """
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    if name == "auto" and _cluster_tasks() > 1:
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


def select_distribution(name):
    """The ``keras.distribution`` for a ``--strategy`` value off TensorFlow, or None.

    ``auto``: data parallel over every local device when JAX sees several
    (GPUs, or the CPU split by ``jax_num_cpu_devices``), else one device;
    ``mirrored``: data parallel over every local device (JAX only);
    ``one_device``: None. ``multi_worker`` (also ``auto`` with a ``TF_CONFIG``
    cluster) and ``tpu`` refuse in one line (``NotImplementedError``), as
    does ``mirrored`` on PyTorch (Keras distributes on JAX only).
    """
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; expected {', '.join(STRATEGIES[:-1])} "
                         f"or {STRATEGIES[-1]}")
    if name == "auto" and _cluster_tasks() > 1:
        name = "multi_worker"
    if name in ("multi_worker", "tpu"):
        backend.require_tensorflow(
            f"--strategy={name} (tf.distribute)",
            "--strategy=mirrored (keras.distribution.DataParallel over this host's devices, JAX)")
    if name == "one_device":
        return None
    if backend.name() != "jax":
        if name == "mirrored":
            raise NotImplementedError(
                f"--strategy=mirrored needs Keras's JAX or TensorFlow backend; this process uses "
                f"the {backend.name()!r} backend: use --strategy=one_device, or set "
                f"KERAS_BACKEND=jax.")
        return None
    devices = keras.distribution.list_devices()
    if name == "auto" and len(devices) < 2:
        return None
    return keras.distribution.DataParallel(devices=devices)


def accelerators():
    """The names of the accelerators Keras's backend sees (GPUs; TPUs on JAX)."""
    # pylint: disable=import-outside-toplevel
    if backend.is_tensorflow():
        import tensorflow as tf
        names = []
        for device in tf.config.list_physical_devices("GPU"):
            details = tf.config.experimental.get_device_details(device)
            names.append(details.get("device_name", device.name))
        return names
    if backend.name() == "jax":
        import jax
        return [getattr(d, "device_kind", str(d)) for d in jax.devices() if d.platform != "cpu"]
    if backend.name() == "torch":
        import torch
        return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return []


def _find_tpu():
    """A TPU cluster resolver when this host is a TPU VM or TPU_NAME is set.

    Nothing is probed otherwise (resolving a TPU with no hint asks a cloud
    metadata server, which is slow and pointless on other machines).
    """
    name = os.environ.get("TPU_NAME")
    if not name and not glob.glob("/dev/accel*") and not glob.glob("/dev/vfio/[0-9]*"):
        return None
    try:
        import tensorflow as tf  # pylint: disable=import-outside-toplevel
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
