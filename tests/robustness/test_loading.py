"""robustness.loading: one loader for .keras files and SavedModel directories
(zoo names are the zoo's: tests/test_evaluate.py), one-line errors for every
other path, and logit functions."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from contractive_keras import robustness, saving
from contractive_keras.robustness import loading
from tests.robustness.classifiers import mnist_test, tiny_mnist_model


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """A .keras file and a SavedModel directory of the same trained model."""
    model = tiny_mnist_model(hidden=0)
    root = tmp_path_factory.mktemp("sources")
    model.save(str(root / "model.keras"))
    model.export(str(root / "sm"), verbose=False)
    return model, str(root / "model.keras"), str(root / "sm")


def test_source_kind_names_what_a_source_is(sources):
    _, keras_path, saved_dir = sources
    assert loading.source_kind(keras_path) == "keras_file"
    assert loading.source_kind(saved_dir) == "saved_model_dir"


def test_every_source_loads_to_the_same_logits(sources):
    model, keras_path, saved_dir = sources
    x, _ = mnist_test(16)
    reference = np.asarray(model(x))
    loaded = [robustness.load_model(keras_path), robustness.load_model(saved_dir)]
    assert isinstance(loaded[0], keras.Model) and not isinstance(loaded[1], keras.Model)
    for source in loaded:
        np.testing.assert_allclose(robustness.logit_function(source)(tf.constant(x)), reference, atol=1e-5)


def test_keras_files_are_deserialized_in_one_place(sources, monkeypatch):
    _, keras_path, _ = sources
    calls = []
    original = saving.load_keras_file
    monkeypatch.setattr(saving, "load_keras_file", lambda path: calls.append(path) or original(path))
    robustness.load_model(keras_path)
    robustness.logit_function(keras_path)
    assert calls == [keras_path, keras_path]


def test_load_model_uses_keras_safe_mode(tmp_path):
    inputs = keras.Input((4,))
    keras.Model(inputs, keras.layers.Lambda(lambda t: t * 2)(inputs)).save(str(tmp_path / "lambda.keras"))
    with pytest.raises(robustness.ModelSourceError, match="could not be loaded: ValueError: .*"):
        robustness.load_model(str(tmp_path / "lambda.keras"))


@pytest.mark.parametrize("case,message", [
    ("missing.keras", "is not an existing path"),
    ("text.keras", "is not a .keras file: a .keras file is a zip archive"),
    ("weights.h5", "is a file but not a .keras file"),
    ("empty_dir", "is a directory without saved_model.pb"),
    ("chnode_mnist_n8", "is not an existing path (a zoo name is loaded by zoo.load)"),
])
def test_bad_sources_raise_one_line_errors(tmp_path, monkeypatch, case, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "text.keras").write_text("plain text\n")
    (tmp_path / "weights.h5").write_bytes(b"\x89HDF\r\n")
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(robustness.ModelSourceError) as error:
        robustness.load_model(case)
    assert message in str(error.value) and "\n" not in str(error.value)
    assert isinstance(error.value, ValueError)


def test_logit_function_refuses_what_is_not_a_model(tmp_path):
    with pytest.raises(TypeError, match="must be a Keras model"):
        robustness.logit_function(42)
    with pytest.raises(robustness.ModelSourceError, match="is not an existing path"):
        robustness.logit_function(str(tmp_path / "missing.keras"))
