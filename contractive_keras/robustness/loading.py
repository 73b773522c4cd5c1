"""The one model loader of evaluation, attacks and the zoo build script.

``load_model(source)`` turns a model *source* into a model:

- a path to a ``.keras`` file: ``zoo.load_keras_file`` (the package's classes
  registered, ``safe_mode=True``);
- a path to a SavedModel directory (one holding ``saved_model.pb``):
  ``tf.saved_model.load``;
- a zoo name: ``zoo.load`` (``format="keras"``) or ``zoo.load_saved_model``
  (``format="saved_model"``), both sha256-verified.

A source that is none of these raises ``ModelSourceError`` with a one-line
message naming the source and what is wrong with it (missing, a file that is
not a zip archive, a directory without ``saved_model.pb``, an unknown zoo
name, a file that fails to deserialize). ``python -m contractive_keras.evaluate``
prints that line and exits with status 2.

``logit_function(model)`` turns a loaded model (or a source) into a callable
``images -> logits`` that ``attacks`` can differentiate through.
"""

import os
import zipfile

import keras
import tensorflow as tf

from contractive_keras import zoo

__all__ = ["FORMATS", "ModelSourceError", "load_model", "logit_function", "source_kind"]

#: Which file of a zoo entry ``load_model`` reads.
FORMATS = ("keras", "saved_model")


class ModelSourceError(ValueError):
    """A model source cannot be loaded; the message is one line."""


def _first_line(error):
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0] if text else ''}"


def source_kind(source):
    """"keras_file", "saved_model_dir" or "zoo": what ``source`` names.

    Raises:
        ModelSourceError: the source is none of them (the message says why).
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
    try:
        available = zoo.list_models()
    except zoo.ManifestError as e:
        raise ModelSourceError(f"{path} is not an existing path, and the zoo manifest is "
                               f"unreadable: {_first_line(e)}") from e
    if path not in available:
        raise ModelSourceError(f"{path} is neither an existing path nor a zoo model; "
                               f"zoo models: {sorted(available) or 'none'}")
    return "zoo"


def load_model(source, *, format="keras"):
    """The model a source names: a ``.keras`` file, a SavedModel directory or a zoo name.

    Args:
        source: a path (str or ``os.PathLike``) or a zoo name.
        format: for zoo names only, "keras" (a Keras model) or "saved_model"
            (the restored SavedModel, whose ``serve`` endpoint gives logits).

    Returns:
        A Keras model, or a ``tf.saved_model.load`` object.

    Raises:
        ModelSourceError: the source is not a model (one-line message).
        zoo.VerificationError: a zoo file does not match its sha256.

    Example:
        >>> model = load_model("chnode_mnist_n8")            # doctest: +SKIP
        >>> model = load_model("runs/zoo/x/export/model.keras")  # doctest: +SKIP
    """
    if format not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {format!r}")
    path = os.fspath(source)
    kind = source_kind(path)
    if kind == "zoo":
        try:
            return zoo.load(path) if format == "keras" else zoo.load_saved_model(path)
        except zoo.ZooFileNotFoundError as e:
            raise ModelSourceError(" ".join(str(e).split())) from e
    try:
        if kind == "keras_file":
            return zoo.load_keras_file(path)
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
            - a source ``load_model`` accepts (a ``.keras`` path, a
              SavedModel directory, a zoo name);
            - a loaded SavedModel: its ``serve`` endpoint (what
              ``model.export()`` writes) or else its ``serving_default``
              signature, whose single output is taken from the result dict;
            - any other callable from float32 images to logits.

    Returns:
        A function from a float32 tensor ``(N, ...)`` to logits ``(N, C)``,
        differentiable with respect to its input.

    Raises:
        TypeError: ``model`` is none of the above.
        ModelSourceError: a path or name that is not a model.
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
        "model must be a Keras model, a SavedModel, a path to either, a zoo name, or a "
        f"callable from images to logits; got {type(model).__name__}"
    )
