"""Reading ``.keras`` files: the one place such a file becomes a model.

``load_keras_file`` registers the package's Keras classes, then deserializes
with ``safe_mode=True``; it verifies no hash (``zoo.load`` checks the zoo's
files before it calls this). ``robustness.load_model`` and ``zoo.load`` both
use it.

Example:

>>> from contractive_keras import saving
>>> model = saving.load_keras_file("runs/x/export/model.keras")   # doctest: +SKIP
"""

import importlib
import pkgutil

import keras

from contractive_keras import layers

__all__ = ["load_keras_file", "register_custom_objects"]


def register_custom_objects():
    """Imports every module that registers contractive_keras Keras objects.

    ``.keras`` files name registered classes (``contractive_keras>CHNODE``);
    call this before ``keras.saving.load_model`` of a file holding them.
    """
    modules = ["contractive_keras.constraints", "contractive_keras.regularizers"]
    modules += [f"{layers.__name__}.{m.name}" for m in pkgutil.iter_modules(layers.__path__)]
    for module in modules:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name != module:  # a missing dependency, not an absent module
                raise


def load_keras_file(path):
    """Deserializes a ``.keras`` file: the package's classes registered, ``safe_mode=True``."""
    register_custom_objects()
    return keras.saving.load_model(path, safe_mode=True)
