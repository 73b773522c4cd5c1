"""Exports a trained image classifier as ``.keras`` and as a SavedModel.

The SavedModel (``keras.export.ExportArchive``, the machinery behind
``model.export()``) has two endpoints, both returning float32 logits of shape
``(N, 10)``:

* ``serve`` (also the ``serving_default`` signature): float32 images in
  [0, 1] of shape ``(N, *data.INPUT_SHAPE)`` = ``(N, 28, 28, 1)``, the
  model's own input;
* ``serve_uint8`` (signature of the same name): raw uint8 pixels of the same
  shape, divided by 255 before the model.

Normalisation is a layer inside every model built by
``contractive_keras.models``, so neither endpoint needs preprocessing.

Example:

>>> paths = export_classifier(model, "runs/chnode/export")      # doctest: +SKIP
>>> import tensorflow as tf
>>> served = tf.saved_model.load(paths["saved_model"])          # doctest: +SKIP
>>> logits = served.serve(tf.zeros((2, 28, 28, 1)))              # doctest: +SKIP
>>> layer = keras.layers.TFSMLayer(paths["saved_model"], call_endpoint="serve")  # doctest: +SKIP
"""

import os
import shutil
import tempfile

import keras

from contractive_keras import backend
from contractive_keras import data


def export_saved_model(model, path):
    """Writes ``model`` as a SavedModel with ``serve`` and ``serve_uint8``.

    The directory is written next to ``path`` and renamed into place, so an
    interrupted export never leaves a half-written SavedModel at ``path``.
    TensorFlow only (a SavedModel is a TensorFlow graph).
    """
    backend.require_tensorflow("the SavedModel export", "save_keras (a .keras file, which "
                               "loads on every backend)")
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    archive = keras.export.ExportArchive()
    archive.track(model)
    float_spec = tf.TensorSpec((None, *data.INPUT_SHAPE), tf.float32, name="images")
    uint8_spec = tf.TensorSpec((None, *data.INPUT_SHAPE), tf.uint8, name="images")

    def serve(images):
        return model(images, training=False)

    def serve_uint8(images):
        return model(tf.cast(images, tf.float32) / 255.0, training=False)

    archive.add_endpoint("serve", serve, input_signature=[float_spec])
    archive.add_endpoint("serve_uint8", serve_uint8, input_signature=[uint8_spec])
    return _write_atomically(path, lambda tmp: archive.write_out(tmp, verbose=False), directory=True)


def save_keras(model, path):
    """Saves ``model`` to a ``.keras`` file atomically (write, then rename)."""
    return _write_atomically(path, model.save, directory=False)


def _write_atomically(path, write, *, directory):
    """``write(tmp)`` to a temporary file or directory beside ``path``, then rename it to ``path``.

    A reader never sees a half-written ``path``: an old one stays until the new
    one is complete, and a failed write leaves no temporary behind.
    """
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    if directory:
        tmp = tempfile.mkdtemp(dir=parent, prefix=".saved_model_tmp_")
    else:
        fd, tmp = tempfile.mkstemp(dir=parent, prefix=".model_tmp_", suffix=os.path.splitext(path)[1])
        os.close(fd)
    remove = shutil.rmtree if directory else os.remove
    try:
        write(tmp)
        if directory and os.path.exists(path):
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            remove(tmp)
    return path


def export_classifier(model, directory, saved_model="auto"):
    """Writes ``directory/model.keras`` and ``directory/saved_model/``.

    Args:
        model: the Keras classifier.
        directory: where to write.
        saved_model: True (write the SavedModel; TensorFlow backend only),
            False (only the ``.keras`` file) or "auto" (the SavedModel where
            Keras runs on TensorFlow, else only the ``.keras`` file).

    Returns:
        dict with the paths written, keys ``"keras"`` and, with a SavedModel,
        ``"saved_model"``.
    """
    if saved_model not in (True, False, "auto"):
        raise ValueError(f"saved_model must be True, False or 'auto', got {saved_model!r}.")
    if saved_model is True:
        backend.require_tensorflow("the SavedModel export", "saved_model=False (the .keras file)")
    os.makedirs(directory, exist_ok=True)
    paths = {"keras": save_keras(model, os.path.join(directory, "model.keras"))}
    if saved_model is True or (saved_model == "auto" and backend.is_tensorflow()):
        paths["saved_model"] = export_saved_model(model, os.path.join(directory, "saved_model"))
    return paths
