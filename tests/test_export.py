"""contractive_keras.export: a .keras file and a SavedModel, each written
atomically (a failed write leaves the previous one intact and no temporary)."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from contractive_keras import export


def tiny_classifier(seed):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((28, 28, 1))
    outputs = keras.layers.Dense(10)(keras.layers.Flatten()(inputs))
    return keras.Model(inputs, outputs)


def images(n=4):
    return np.random.default_rng(0).integers(0, 256, size=(n, 28, 28, 1)).astype("uint8")


def test_export_classifier_writes_both_formats_with_the_model_s_logits(tmp_path):
    model = tiny_classifier(0)
    paths = export.export_classifier(model, str(tmp_path / "export"))
    x = images()
    expected = model.predict(x / 255.0, verbose=0)
    loaded = keras.models.load_model(paths["keras"])
    np.testing.assert_allclose(loaded.predict(x / 255.0, verbose=0), expected, rtol=1e-6, atol=1e-6)
    served = tf.saved_model.load(paths["saved_model"])
    np.testing.assert_allclose(served.serve(tf.constant(x / 255.0, tf.float32)).numpy(), expected,
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(served.serve_uint8(tf.constant(x)).numpy(), expected, rtol=1e-5, atol=1e-5)
    assert sorted(os.listdir(tmp_path / "export")) == ["model.keras", "saved_model"]


def test_a_second_export_replaces_the_first(tmp_path):
    directory = str(tmp_path / "export")
    export.export_classifier(tiny_classifier(0), directory)
    second = tiny_classifier(1)
    paths = export.export_classifier(second, directory)
    x = images() / 255.0
    expected = second.predict(x, verbose=0)
    np.testing.assert_allclose(keras.models.load_model(paths["keras"]).predict(x, verbose=0), expected,
                               rtol=1e-6, atol=1e-6)
    served = tf.saved_model.load(paths["saved_model"])
    np.testing.assert_allclose(served.serve(tf.constant(x, tf.float32)).numpy(), expected, rtol=1e-5, atol=1e-5)


class FailingSave(RuntimeError):
    pass


def test_a_failed_save_keeps_the_previous_files_and_leaves_no_temporary(tmp_path, monkeypatch):
    directory = str(tmp_path / "export")
    first = tiny_classifier(0)
    paths = export.export_classifier(first, directory)
    before = {name: os.path.getmtime(os.path.join(directory, name)) for name in os.listdir(directory)}

    def half_written(self, path, *args, **kwargs):
        with open(path, "wb") as f:
            f.write(b"partial")
        raise FailingSave("killed mid-write")

    monkeypatch.setattr(keras.Model, "save", half_written)
    with pytest.raises(FailingSave):
        export.save_keras(tiny_classifier(1), paths["keras"])

    def half_written_dir(self, path, *args, **kwargs):
        with open(os.path.join(path, "saved_model.pb"), "wb") as f:
            f.write(b"partial")
        raise FailingSave("killed mid-write")

    archive_class = type(keras.export.ExportArchive())     # the backend's own subclass
    monkeypatch.setattr(archive_class, "write_out", half_written_dir)
    with pytest.raises(FailingSave):
        export.export_saved_model(tiny_classifier(1), paths["saved_model"])
    monkeypatch.undo()
    after = {name: os.path.getmtime(os.path.join(directory, name)) for name in os.listdir(directory)}
    assert after == before, "a temporary was left behind or a previous file was touched"
    x = images() / 255.0
    np.testing.assert_allclose(keras.models.load_model(paths["keras"]).predict(x, verbose=0),
                               first.predict(x, verbose=0), rtol=1e-6, atol=1e-6)
