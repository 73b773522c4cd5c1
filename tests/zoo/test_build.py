"""zoo/build.py: trained models load through robustness.load_model, and the
certificate it records is certify's (summary and whole-model bound)."""

import importlib
import os

import keras
import numpy as np
import pytest

from contractive_keras import certify


@pytest.fixture(scope="module")
def build():
    return importlib.import_module("zoo.build")


def chain_model(square=False):
    inputs = keras.Input((28, 28, 1))
    h = keras.layers.Flatten()(keras.layers.Rescaling(1 / 0.3081, offset=-0.1307 / 0.3081)(inputs))
    if square:  # a layer certify does not know
        h = keras.layers.Lambda(lambda t: t * t)(h)
    return keras.Model(inputs, keras.layers.Dense(10)(h))


def test_certificate_is_certify_summary_and_lipschitz_bound(build):
    model = chain_model()
    values, lipschitz = build.certificate(model)
    assert values == certify.summary(model)
    assert lipschitz == pytest.approx(certify.lipschitz_bound(model).value)
    expected = np.linalg.norm(model.layers[-1].kernel.numpy().astype(np.float64), 2) / 0.3081
    assert lipschitz == pytest.approx(expected, rel=1e-6)


def test_a_model_certify_refuses_records_the_reason(build):
    values, lipschitz = build.certificate(chain_model(square=True))
    assert lipschitz is None
    assert values["certify_error"] and "\n" not in values["certify_error"]


def test_trained_models_load_through_the_shared_loader(build, tmp_path, monkeypatch):
    model = chain_model()
    os.makedirs(tmp_path / "entry" / "export")
    model.save(str(tmp_path / "entry" / "export" / "model.keras"))
    monkeypatch.setattr(build, "RUNS_DIR", str(tmp_path))
    loaded = build.load_trained("entry")
    x = np.random.default_rng(0).random((4, 28, 28, 1)).astype("float32")
    np.testing.assert_allclose(loaded(x), model(x), atol=1e-6)
