"""contractive_keras.export and the zoo on the backend in use: the .keras file
is written (and reloads with the same logits) on every backend; the SavedModel,
a TensorFlow graph, is written under TensorFlow and refused in one line elsewhere."""

import os

import keras
import numpy as np
import pytest

from contractive_keras import backend, export, zoo

pytestmark = pytest.mark.backends


def tiny_classifier():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((28, 28, 1))
    outputs = keras.layers.Dense(10)(keras.layers.Flatten()(inputs))
    return keras.Model(inputs, outputs)


def test_export_classifier_auto_writes_what_the_backend_can(tmp_path):
    model = tiny_classifier()
    paths = export.export_classifier(model, str(tmp_path / "export"))
    x = np.random.default_rng(0).uniform(size=(3, 28, 28, 1)).astype("float32")
    reloaded = keras.saving.load_model(paths["keras"])
    np.testing.assert_allclose(keras.ops.convert_to_numpy(reloaded(x)),
                               keras.ops.convert_to_numpy(model(x)), rtol=0, atol=0)
    assert ("saved_model" in paths) == backend.is_tensorflow()
    assert sorted(os.listdir(tmp_path / "export")) == sorted(
        ["model.keras"] + (["saved_model"] if backend.is_tensorflow() else []))


@pytest.mark.skipif(backend.is_tensorflow(), reason="the refusal is for the other backends")
def test_the_saved_model_is_refused_in_one_line_off_tensorflow(tmp_path):
    message = (rf"the SavedModel export needs Keras's TensorFlow backend; this process uses the "
               rf"'{backend.name()}' backend: use .* on this backend, or set KERAS_BACKEND=tensorflow\.$")
    with pytest.raises(NotImplementedError, match=message):
        export.export_saved_model(tiny_classifier(), str(tmp_path / "saved_model"))
    with pytest.raises(NotImplementedError, match=message):
        export.export_classifier(tiny_classifier(), str(tmp_path / "export"), saved_model=True)
    assert not (tmp_path / "saved_model").exists()
    with pytest.raises(NotImplementedError, match=r"zoo.load_saved_model .*zoo.load\('chnode_mnist_n4'\)"):
        zoo.load_saved_model("chnode_mnist_n4")


def test_export_classifier_rejects_an_unknown_saved_model_choice(tmp_path):
    with pytest.raises(ValueError, match="saved_model must be True, False or 'auto', got 'yes'"):
        export.export_classifier(tiny_classifier(), str(tmp_path), saved_model="yes")
