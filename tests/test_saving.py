"""saving: a .keras file holding the package's layers loads (classes registered,
safe_mode=True), and a file needing unsafe deserialization is refused, on
every Keras backend."""

import keras
import numpy as np
import pytest

from contractive_keras import saving
from contractive_keras.layers import GroupSort

pytestmark = pytest.mark.backends


def test_a_keras_file_with_package_layers_round_trips(tmp_path):
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(2)(GroupSort()(keras.layers.Dense(4)(inputs))))
    model.save(str(tmp_path / "m.keras"))
    loaded = saving.load_keras_file(str(tmp_path / "m.keras"))
    assert any(isinstance(layer, GroupSort) for layer in loaded.layers)
    x = np.random.default_rng(0).normal(size=(3, 4)).astype("float32")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loaded(x)),
                               keras.ops.convert_to_numpy(model(x)), atol=1e-6)


def test_unsafe_files_are_refused(tmp_path):
    inputs = keras.Input((4,))
    keras.Model(inputs, keras.layers.Lambda(lambda t: t * 2)(inputs)).save(str(tmp_path / "l.keras"))
    with pytest.raises(ValueError, match="unsafe|safe_mode"):
        saving.load_keras_file(str(tmp_path / "l.keras"))
