"""The one model loader of evaluation, attacks and the zoo build script.

``load_model(source)`` turns a path into a model:

- a ``.keras`` file: ``saving.load_keras_file`` (the package's classes
  registered, ``safe_mode=True``);
- a SavedModel directory (one holding ``saved_model.pb``):
  ``tf.saved_model.load``.

A path that is neither raises ``ModelSourceError`` with a one-line message
naming the path and what is wrong with it (missing, a file that is not a zip
archive, a directory without ``saved_model.pb``, a file that fails to
deserialize). Zoo models are loaded by name with ``zoo.load`` /
``zoo.load_saved_model`` (sha256-verified); ``python -m
contractive_keras.evaluate --model=`` takes either a zoo name or a path.

``logit_function(model)`` turns a loaded model (or a path) into a callable
``images -> logits`` that ``attacks`` can differentiate through.
"""

import os
import zipfile

import keras
import tensorflow as tf

from contractive_keras import saving

__all__ = ["ModelSourceError", "load_model", "logit_function", "source_kind"]


class ModelSourceError(ValueError):
    """A model source cannot be loaded; the message is one line."""


def _first_line(error):
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0] if text else ''}"


def source_kind(source):
    """"keras_file" or "saved_model_dir": what the path ``source`` names.

    Raises:
        ModelSourceError: the path is neither (the message says why).
    """
    path = os.fspath(source)
    if os.path.isfile(path):
        if not path.endswith(".keras"):
            raise ModelSourceError(f"{path} is a file but not a .keras file")
        if not zipfile.is_zipfile(path):
            raise ModelSourceError(f"{path} is not a .keras file: a .keras file is a zip archive, "
                                   "this one is not (truncated, or another format)")
        return "keras_file"
    if os.path.isdir(path):
        if not os.path.isfile(os.path.join(path, "saved_model.pb")):
            raise ModelSourceError(f"{path} is a directory without saved_model.pb (not a SavedModel)")
        return "saved_model_dir"
    raise ModelSourceError(f"{path} is not an existing path (a zoo name is loaded by zoo.load)")


def load_model(source):
    """The model a path names: a ``.keras`` file or a SavedModel directory.

    Args:
        source: a path (str or ``os.PathLike``).

    Returns:
        A Keras model, or a ``tf.saved_model.load`` object.

    Raises:
        ModelSourceError: the path is not a model (one-line message).

    Example:
        >>> model = load_model("runs/zoo/x/export/model.keras")  # doctest: +SKIP
    """
    path = os.fspath(source)
    kind = source_kind(path)
    try:
        if kind == "keras_file":
            return saving.load_keras_file(path)
        return tf.saved_model.load(path)
    except Exception as e:  # any deserialization failure becomes one line naming the file
        raise ModelSourceError(f"{path} could not be loaded: {_first_line(e)}") from e


class _SavedModelLogits:
    """Calls a SavedModel endpoint and holds the loaded object.

    A restored function only references its variables weakly; holding the
    object keeps them alive (else: "variables which have been deleted").
    """

    def __init__(self, saved_model, endpoint):
        self.saved_model = saved_model
        self.endpoint = endpoint

    def __call__(self, x):
        return self.endpoint(x)


def _signature_function(signature):
    _, kwargs = signature.structured_input_signature
    outputs = signature.structured_outputs
    if len(kwargs) != 1 or len(outputs) != 1:
        raise ValueError(
            "serving_default must have exactly one input and one output, got "
            f"inputs {sorted(kwargs)} and outputs {sorted(outputs)}"
        )
    (input_name,) = kwargs
    (output_name,) = outputs
    return lambda x: signature(**{input_name: x})[output_name]


def logit_function(model):
    """A callable ``images -> logits`` for any supported model.

    Args:
        model: one of
            - a Keras model or layer (called with ``training=False``);
            - a path ``load_model`` accepts (a ``.keras`` file, a
              SavedModel directory);
            - a loaded SavedModel: its ``serve`` endpoint (what
              ``model.export()`` writes) or else its ``serving_default``
              signature, whose single output is taken from the result dict;
            - any other callable from float32 images to logits.

    Returns:
        A function from a float32 tensor ``(N, ...)`` to logits ``(N, C)``,
        differentiable with respect to its input.

    Raises:
        TypeError: ``model`` is none of the above.
        ModelSourceError: a path that is not a model.
        ValueError: a SavedModel has no usable endpoint, or a signature has
            several inputs or outputs.
    """
    if isinstance(model, (str, os.PathLike)):
        model = load_model(model)
    if isinstance(model, keras.layers.Layer):
        return lambda x: model(x, training=False)
    if hasattr(model, "serve") and callable(model.serve):
        return _SavedModelLogits(model, model.serve)
    signatures = getattr(model, "signatures", None)
    if signatures is not None:
        if "serving_default" not in signatures:
            raise ValueError(
                "SavedModel has no 'serve' endpoint and no 'serving_default' "
                f"signature (signatures: {sorted(signatures)})"
            )
        return _SavedModelLogits(model, _signature_function(signatures["serving_default"]))
    if callable(model):
        return model
    raise TypeError(
        "model must be a Keras model, a SavedModel, a path to either, or a "
        f"callable from images to logits; got {type(model).__name__}"
    )
