"""Every entry of the real zoo/manifest.json loads both ways and reproduces its
recorded test accuracy (first 500 test images here; the full 10k set under
``-m slow``). With an empty manifest the entry tests are parametrized over
nothing and only the manifest's own validity is checked."""

import json
import os

import keras
import numpy as np
import pytest

from contractive_keras import data, zoo

REAL_MANIFEST = os.path.join(zoo.SOURCE_ZOO, zoo.MANIFEST)
SUBSET = 500
# Prediction flips allowed against the recorded accuracy (float round-off of
# borderline logits on another machine/backend): 2 of 500, 10 of 10,000.
MAX_FLIPS = {SUBSET: 2, 10000: 10}


def real_entries():
    with open(REAL_MANIFEST, encoding="utf-8") as f:
        return sorted(json.load(f)["models"])


def test_real_manifest_is_valid():
    manifest = zoo.read_manifest(REAL_MANIFEST)
    assert manifest["format_version"] == zoo.FORMAT_VERSION
    for entry in manifest["models"].values():
        assert "test_accuracy_first500" in entry["metrics"], "the fast check needs the subset accuracy"
        assert os.path.isfile(os.path.join(zoo.SOURCE_ZOO, entry["card"]))


def predictions(model_fn, images, batch_size=500):
    return np.concatenate([np.argmax(np.asarray(model_fn(images[i:i + batch_size])), -1)
                           for i in range(0, len(images), batch_size)])


def check_entry_loads_both_ways(name):
    """Loads an entry as .keras, SavedModel and TFSMLayer; returns the logits fns."""
    info = zoo.info(name)
    x, _ = data.load_numpy(info["dataset"], "test")
    images = (x[:64, ..., None] / 255.0).astype(np.float32)
    model = zoo.load(name)
    saved = zoo.load_saved_model(name)
    wrapped = keras.Sequential([keras.Input((28, 28, 1)),
                                keras.layers.TFSMLayer(zoo.saved_model_path(name), call_endpoint="serve")])
    logits = np.asarray(model(images, training=False))
    assert logits.shape == (64, 10) and logits.dtype == np.float32
    # The graph (SavedModel) and eager (Keras) programs round differently, and
    # the reference-recipe CH-NODE amplifies round-off by up to its discrete
    # Lipschitz bound (1e15 and more, see the model cards): its logits agree to
    # about 1e-4 of their scale, not 1e-7. Predictions must agree wherever the
    # top-two margin exceeds that tolerance.
    atol = 1e-3 * np.abs(logits).max()
    top2 = np.sort(logits, axis=1)[:, -2:]
    decided = top2[:, 1] - top2[:, 0] > 2 * atol
    for served in (np.asarray(saved.serve(images)), np.asarray(wrapped(images))):
        np.testing.assert_allclose(served, logits, rtol=0, atol=atol)
        np.testing.assert_array_equal(served.argmax(1)[decided], logits.argmax(1)[decided])
    return model, saved


def check_recorded_accuracy(name, n):
    """Accuracy of both formats on the first n test images equals the record."""
    info = zoo.info(name)
    recorded = info["test_accuracy_first500"] if n == SUBSET else info["test_accuracy"]
    x, y = data.load_numpy(info["dataset"], "test")
    images = (x[:n, ..., None] / 255.0).astype(np.float32)
    model = zoo.load(name)
    saved = zoo.load_saved_model(name)
    for fn in (lambda b: model(b, training=False), saved.serve):
        accuracy = np.mean(predictions(fn, images) == y[:n])
        assert abs(accuracy - recorded) <= MAX_FLIPS[n] / n, (name, accuracy, recorded)


@pytest.mark.parametrize("name", real_entries())
def test_zoo_entry_loads_as_keras_savedmodel_and_tfsmlayer(name):
    check_entry_loads_both_ways(name)


@pytest.mark.parametrize("name", real_entries())
def test_zoo_entry_reproduces_recorded_accuracy_on_first_500(name):
    check_recorded_accuracy(name, SUBSET)


@pytest.mark.slow
@pytest.mark.parametrize("name", real_entries())
def test_zoo_entry_reproduces_recorded_accuracy_on_full_test_set(name):
    check_recorded_accuracy(name, 10000)
