"""What a run reports: certificate values, the robustness table, the hardware
it ran on, TensorBoard scalars and ``summary.json`` (written atomically)."""

import json
import os
import platform
import sys

import keras
import numpy as np
import tensorflow as tf

from contractive_keras import certify, data, robustness


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


def robustness_table(model, images, labels, dataset, verbose=0):
    """The reference noise protocol (10 draws) and FGSM on ``(images, labels)``,
    as a dict; PGD is left to ``python -m contractive_keras.evaluate``."""
    table = robustness.evaluate(
        model, (images, labels), attacks=("fgsm",),
        normalization=robustness.model_normalization(model, default=data.normalization(dataset)),
        verbose=verbose,
    )
    return table.to_dict() if hasattr(table, "to_dict") else table


def log_scalars(writer, step, record):
    """Writes every number of ``record`` (except ``epoch``) to TensorBoard."""
    with writer.as_default(step=step):
        for key, value in record.items():
            if key != "epoch" and isinstance(value, (int, float)):
                # float64: certificate bounds such as 1e60 overflow float32
                tf.summary.scalar(key, tf.constant(float(value), tf.float64))
    writer.flush()


def hardware_summary(strategy):
    """Processor, accelerators, replicas and library versions of the run."""
    gpus = []
    for device in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(device)
        gpus.append(details.get("device_name", device.name))
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "gpus": gpus,
        "strategy": type(strategy).__name__,
        "replicas": strategy.num_replicas_in_sync,
        "python": sys.version.split()[0],
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
    }


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
