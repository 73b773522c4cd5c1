"""GroupSort: sorts groups, 1-Lipschitz, gradient-norm preserving, serializable."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from contractive_keras.layers.group_sort import GroupSort


@pytest.mark.parametrize("group_size", [2, 3, 6])
def test_sorts_each_group_ascending(group_size):
    x = np.random.default_rng(0).normal(size=(5, 4, 12)).astype("float32")
    out = GroupSort(group_size)(x).numpy()
    expected = np.sort(x.reshape(5, 4, 12 // group_size, group_size), axis=-1).reshape(x.shape)
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("group_size", [2, 4])
def test_is_1_lipschitz_on_random_and_close_pairs(group_size):
    rng = np.random.default_rng(1)
    layer = GroupSort(group_size, dtype="float64")
    x = rng.normal(size=(2000, 16))
    for scale in (1.0, 1e-2):               # far pairs and pairs that swap few entries
        y = x + scale * rng.normal(size=x.shape)
        num = np.linalg.norm(layer(x).numpy() - layer(y).numpy(), axis=1)
        den = np.linalg.norm(x - y, axis=1)
        assert np.all(num <= den * (1 + 1e-12))
    # Equality (an isometry) when no group changes its order: x and x + t x.
    num = np.linalg.norm(layer(1.5 * x).numpy() - layer(x).numpy(), axis=1)
    np.testing.assert_allclose(num, 0.5 * np.linalg.norm(x, axis=1), rtol=1e-5)


def test_vector_jacobian_products_keep_their_norm():
    rng = np.random.default_rng(2)
    x = tf.constant(rng.normal(size=(64, 10)).astype("float32"))
    v = tf.constant(rng.normal(size=(64, 10)).astype("float32"))
    with tf.GradientTape() as tape:
        tape.watch(x)
        out = GroupSort(2)(x)
    g = tape.gradient(out, x, output_gradients=v).numpy()
    np.testing.assert_allclose(np.linalg.norm(g, axis=1), np.linalg.norm(v.numpy(), axis=1),
                               rtol=1e-6)


def test_config_and_keras_file_round_trip(tmp_path):
    layer = GroupSort(4, name="gs")
    assert GroupSort.from_config(layer.get_config()).group_size == 4
    model = keras.Sequential([keras.Input((3, 8)), layer])
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    x = np.random.default_rng(3).normal(size=(2, 3, 8)).astype("float32")
    np.testing.assert_array_equal(loaded(x).numpy(), model(x).numpy())
    assert isinstance(loaded.layers[-1], GroupSort)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="group_size"):
        GroupSort(1)
    with pytest.raises(ValueError, match="divisible"):
        GroupSort(2)(np.zeros((1, 3), "float32"))
