"""L2NormPooling2D: window L2 norms, 1-Lipschitz, shapes, serializable."""

import keras
import numpy as np
import pytest

from contractive_keras.layers.l2_norm_pooling import L2NormPooling2D


def _reference(x, ph, pw, padding):
    b, h, w, c = x.shape
    if padding == "same":
        ph_total, pw_total = (-h) % ph, (-w) % pw
        x = np.pad(x, [(0, 0), (ph_total // 2, ph_total - ph_total // 2),
                       (pw_total // 2, pw_total - pw_total // 2), (0, 0)])
        h, w = x.shape[1:3]
    h, w = h // ph, w // pw
    x = x[:, :h * ph, :w * pw]
    windows = x.reshape(b, h, ph, w, pw, c)
    return np.sqrt(np.sum(windows ** 2, axis=(2, 4)))


@pytest.mark.parametrize("pool,padding,shape", [((2, 2), "valid", (3, 8, 8, 4)),
                                                ((2, 2), "valid", (3, 7, 9, 2)),
                                                ((2, 3), "same", (3, 7, 8, 2)),
                                                ((3, 3), "same", (2, 28, 28, 1))])
def test_matches_window_norms(pool, padding, shape):
    x = np.random.default_rng(0).normal(size=shape).astype("float32")
    layer = L2NormPooling2D(pool, padding=padding)
    out = layer(x).numpy()
    np.testing.assert_allclose(out, _reference(x, *pool, padding), rtol=1e-5, atol=1e-5)
    assert out.shape == tuple(layer.compute_output_shape(shape))


@pytest.mark.parametrize("padding", ["valid", "same"])
def test_is_1_lipschitz_on_random_and_close_pairs(padding):
    rng = np.random.default_rng(1)
    layer = L2NormPooling2D(2, padding=padding, dtype="float64")
    x = rng.normal(size=(500, 7, 7, 3))
    x[::3] *= 1e-3                           # windows near zero, where sqrt bends most
    for scale in (1.0, 1e-3):
        y = x + scale * rng.normal(size=x.shape)
        num = np.linalg.norm((layer(x).numpy() - layer(y).numpy()).reshape(500, -1), axis=1)
        den = np.linalg.norm((x - y).reshape(500, -1), axis=1)
        assert np.all(num <= den * (1 + 1e-9))
    # Norm preserving along rays (windows scale together): equality.
    num = np.linalg.norm((layer(2 * x).numpy() - layer(x).numpy()).reshape(500, -1), axis=1)
    den = np.linalg.norm(_reference(x, 2, 2, padding).reshape(500, -1), axis=1)
    np.testing.assert_allclose(num, den, rtol=1e-4)


def test_gradient_is_finite_at_zero():
    import tensorflow as tf

    x = tf.zeros((1, 4, 4, 2))
    with tf.GradientTape() as tape:
        tape.watch(x)
        out = tf.reduce_sum(L2NormPooling2D(2)(x))
    assert np.all(np.isfinite(tape.gradient(out, x).numpy()))


def test_config_and_keras_file_round_trip(tmp_path):
    layer = L2NormPooling2D((2, 3), padding="same", name="pool")
    rebuilt = L2NormPooling2D.from_config(layer.get_config())
    assert (rebuilt.pool_size, rebuilt.padding, rebuilt.floor) == ((2, 3), "same", 1e-12)
    model = keras.Sequential([keras.Input((6, 7, 2)), layer])
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    x = np.random.default_rng(2).normal(size=(2, 6, 7, 2)).astype("float32")
    np.testing.assert_allclose(loaded(x).numpy(), model(x).numpy())


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="pool_size"):
        L2NormPooling2D(0)
    with pytest.raises(ValueError, match="padding"):
        L2NormPooling2D(2, padding="full")
    with pytest.raises(ValueError, match="floor"):
        L2NormPooling2D(2, floor=-1.0)
