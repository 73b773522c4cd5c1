"""What a run reports: certificate values, the robustness table, the hardware
it ran on, TensorBoard scalars and ``summary.json`` (written atomically).

Backend-neutral: the TensorBoard writer is ``tf.summary`` on TensorFlow and
``tensorboard``'s own event-file writer elsewhere (``training.summaries``).
"""

import json
import os
import platform
import sys

import keras
import numpy as np

from contractive_keras import backend, certify, data
from contractive_keras.training.strategy import accelerators
from contractive_keras.training.summaries import scalar_writer  # noqa: F401  (re-exported)


def certificate_summary(model):
    """``certify.summary(model, warn=False)``: the certificate values of the
    model's ODE layers; a model it cannot certify gets ``certify_error`` (the
    first line of the reason) instead, so logging never stops training."""
    try:
        return dict(certify.summary(model, warn=False))
    except (ValueError, TypeError, NotImplementedError) as e:
        return {"certify_error": str(e).splitlines()[0]}


def certified_accuracies(model, images, labels, radii):
    """``{"certified/<r>": fraction}``: certified accuracy at each L2 radius r,
    with ``certified/bound``, the read-out form used ("pairwise" or "global").

    ``certify.certified_radius`` (the pairwise read-out test where it
    applies, images in the model's own units) on ``(images, labels)``, plus
    ``certified/body_bound``; empty when ``certify`` cannot bound the model
    (an adaptive solver, an unknown layer), so logging never stops training.
    """
    try:
        radius, _ = certify.certified_radius(model, _as_images(images), labels)
        body = certify.body_and_readout(model)[0].value
    except (ValueError, TypeError, NotImplementedError):
        return {}
    out = {f"certified/{r:g}": float(np.mean(radius > r)) for r in radii}
    out["certified/body_bound"] = float(body)
    out["certified/bound"] = certify.bound_used(model)
    return out


def _as_images(images):
    """uint8 (N, H, W) arrays as float32 [0, 1] images with a channel axis."""
    images = np.asarray(images)
    if images.dtype == np.uint8:
        images = images.astype("float32") / 255.0
    return images[..., None] if images.ndim == 3 else images


def robustness_module():
    """``contractive_keras.robustness``, imported on demand: it refuses (one-line
    ``NotImplementedError``) on a backend it does not support, which
    ``--eval_noise`` checks before training."""
    from contractive_keras import robustness  # pylint: disable=import-outside-toplevel
    return robustness


def robustness_table(model, images, labels, dataset, verbose=0):
    """The reference noise protocol (10 draws) and FGSM on ``(images, labels)``,
    as a dict; PGD is left to ``python -m contractive_keras.evaluate``."""
    robustness = robustness_module()
    table = robustness.evaluate(
        model, (images, labels), attacks=("fgsm",),
        normalization=robustness.model_normalization(model, default=data.normalization(dataset)),
        verbose=verbose,
    )
    return table.to_dict() if hasattr(table, "to_dict") else table


def log_scalars(writer, step, record):
    """Writes every number of ``record`` (except ``epoch``) to TensorBoard
    (``writer``: a ``scalar_writer``), as float64: certificate bounds such as
    1e60 overflow float32."""
    writer.scalars(step, {key: float(value) for key, value in record.items()
                          if key != "epoch" and isinstance(value, (int, float))})


def hardware_summary(strategy=None):
    """Processor, accelerators, replicas and library versions of the run.

    ``strategy``: the run's ``tf.distribute.Strategy`` (TensorFlow), its
    ``keras.distribution`` (JAX) or None (one device).
    """
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    if hasattr(strategy, "num_replicas_in_sync"):
        replicas = strategy.num_replicas_in_sync
    elif strategy is not None:
        replicas = int(np.size(strategy.device_mesh.devices))
    else:
        replicas = 1
    summary = {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "gpus": accelerators(),
        "strategy": type(strategy).__name__ if strategy is not None else "OneDevice",
        "replicas": replicas,
        "python": sys.version.split()[0],
        "backend": backend.name(),
        "keras": keras.__version__,
    }
    if backend.is_tensorflow():
        import tensorflow as tf  # pylint: disable=import-outside-toplevel
        summary["tensorflow"] = tf.__version__
    else:
        module = __import__(backend.name())
        summary[backend.name()] = getattr(module, "__version__", None)
    return summary


def to_python(value):
    """A tensor, NumPy scalar or one-element array as a plain Python number."""
    if hasattr(value, "numpy"):
        value = value.numpy()
    if isinstance(value, np.ndarray) and value.size == 1:
        value = value.item()
    if isinstance(value, (np.floating, np.integer)):
        value = value.item()
    return value


def write_json(path, obj):
    """Writes JSON atomically (temporary file, then rename)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, default=to_python)
    os.replace(tmp, path)
