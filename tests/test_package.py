"""The package registers its Keras classes on import and exposes its public namespaces."""

import subprocess
import sys

import keras
import pytest

import contractive_keras

ZOO_FILE = "zoo/chnode_mnist_n12/model.keras"


def test_import_registers_every_serializable_class():
    """`import contractive_keras` alone lets Keras load a saved model (fresh process)."""
    code = (
        "import contractive_keras, keras\n"
        f"model = keras.models.load_model({ZOO_FILE!r})\n"
        "print(type(model.layers[3]).__name__)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300, cwd=contractive_keras.__path__[0] + "/..")
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "CHNODE"


@pytest.mark.parametrize("name", [
    "CHNODE", "HDNN", "ResNetODE", "NeuralODE", "StabilizedNODE", "StepwiseIdentity",
    "GammaProjection", "DeltaBarProjection", "SpectralNormClip", "ConvNormClip",
    "PiecewiseSmoothness", "LipschitzMarginCrossEntropy", "MulticlassHingeKR",
])
def test_registered_names_resolve(name):
    assert keras.saving.get_registered_object(f"contractive_keras>{name}") is not None


def test_version_is_pep440_like():
    parts = contractive_keras.__version__.split(".")
    assert len(parts) == 3 and all(p.isdigit() for p in parts)


def test_submodules_resolve_lazily():
    assert contractive_keras.data.DATASETS == ("mnist", "fashion_mnist")
    assert "certify" in dir(contractive_keras)


def test_unknown_attribute_raises_attribute_error():
    with pytest.raises(AttributeError, match="not_a_module"):
        contractive_keras.not_a_module
