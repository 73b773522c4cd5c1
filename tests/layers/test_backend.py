"""The ODE layers and the trainer run on Keras's TensorFlow backend only for
now: on another backend they refuse at once, naming the backend and the fix,
instead of failing deep inside a TensorFlow op."""

import keras
import pytest

from contractive_keras import training
from contractive_keras.layers import CHNODE, HDNN, NeuralODE, ResNetODE, StabilizedNODE


@pytest.fixture
def jax_backend(monkeypatch):
    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")


@pytest.mark.parametrize("make", [
    lambda: CHNODE(), lambda: HDNN(), lambda: ResNetODE(), lambda: StabilizedNODE(delta_bar=0.0),
    lambda: NeuralODE(vector_field=keras.layers.Dense(3)),
], ids=["CHNODE", "HDNN", "ResNetODE", "StabilizedNODE", "NeuralODE"])
def test_an_ode_layer_refuses_another_backend_in_one_line(jax_backend, make):
    with pytest.raises(NotImplementedError, match=r"TensorFlow backend only .* 'jax' backend\. "
                                                  r"Set KERAS_BACKEND=tensorflow\.$"):
        make()


def test_the_trainer_refuses_another_backend_before_touching_anything(jax_backend, tmp_path):
    config = training.make_config("resnet", depth=2, model_dir=str(tmp_path / "run"))
    with pytest.raises(ValueError, match="'jax' backend. Set KERAS_BACKEND=tensorflow"):
        training.Trainer(config)
    assert not (tmp_path / "run").exists()


def test_on_tensorflow_the_layers_build():
    assert keras.backend.backend() == "tensorflow"
    assert StabilizedNODE(delta_bar=0.0).solver_spec.method == "euler"
