"""robustness.noise: the reference noise against skimage, its pixel-space form,
and the normalisation read from a model."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf
from scipy import stats
from skimage.util import random_noise

from contractive_keras import data, models, robustness
from tests.robustness.classifiers import mnist_test

MEAN, STD = robustness.REFERENCE_NORMALIZATION


@pytest.fixture(scope="module")
def normalised_digits():
    x, _ = mnist_test(100)
    return ((x - MEAN) / STD).astype(np.float32)


def binomial_close(p_ours, p_ref, n, sigmas=5):
    """Two frequencies over n trials agree within `sigmas` standard errors."""
    p = (p_ours + p_ref) / 2
    return abs(p_ours - p_ref) <= sigmas * math.sqrt(2 * p * (1 - p) / n) + 1e-12


@pytest.mark.parametrize("var", [0.05, 0.2])
def test_gaussian_noise_matches_skimage_in_distribution(normalised_digits, var):
    z = normalised_digits
    ours = robustness.gaussian_noise(z, var, seed=1).numpy().ravel()
    reference = random_noise(z, "gaussian", rng=1, var=var).ravel()
    assert stats.ks_2samp(ours, reference).pvalue > 1e-3
    # The comparison is sharp: reading var as a standard deviation is rejected.
    wrong = random_noise(z, "gaussian", rng=2, var=var**2).ravel()
    assert stats.ks_2samp(ours, wrong).pvalue < 1e-12
    for value in (1.0, -1.0):  # the clipped masses
        assert binomial_close(np.mean(ours == value), np.mean(reference == value), ours.size)


@pytest.mark.parametrize("amount", [0.05, 0.2])
def test_salt_and_pepper_matches_skimage_frequencies(normalised_digits, amount):
    z = normalised_digits
    ours = robustness.salt_and_pepper_noise(z, amount, seed=1).numpy().ravel()
    reference = random_noise(z, "s&p", rng=1, amount=amount).ravel()
    clipped = np.clip(z.ravel(), -1, 1)
    for out in (ours, reference):
        changed = out != clipped
        # Every changed value is salt (1) or pepper (-1); the rest is clip(z).
        assert set(np.unique(out[changed])) <= {1.0, -1.0}
    for value in (1.0, -1.0):
        assert binomial_close(np.mean(ours == value), np.mean(reference == value), ours.size)
    # Pepper lands on a fraction amount/2 of the values that were not -1 already.
    assert binomial_close(np.mean(ours == -1.0), amount / 2, ours.size)


@pytest.mark.parametrize("kind,level", [("gaussian", 0.2), ("salt_pepper", 0.2)])
def test_noise_range_and_sign_rule_follow_skimage(kind, level):
    x, _ = mnist_test(50)  # non-negative pixels: skimage's unsigned branch
    noise = robustness.gaussian_noise if kind == "gaussian" else robustness.salt_and_pepper_noise
    mode, key = ("gaussian", "var") if kind == "gaussian" else ("s&p", "amount")
    reference = random_noise(x, mode, rng=0, **{key: level})
    ours = noise(x, level, seed=0).numpy()
    assert ours.min() >= 0 and ours.max() <= 1 and reference.min() >= 0
    assert binomial_close(np.mean(ours == 0), np.mean(reference == 0), x.size)
    signed = noise(x - 0.5, level, seed=0).numpy()  # has negative values
    assert signed.min() == -1.0 and signed.max() <= 1.0
    unclipped = noise(x - 0.5, level, seed=0, clip=False).numpy()
    if kind == "gaussian":
        assert unclipped.min() < -1.0 and unclipped.max() > 1.0


def test_noise_is_reproducible_and_seed_dependent(normalised_digits):
    z = normalised_digits
    for noise, level in ((robustness.gaussian_noise, 0.05), (robustness.salt_and_pepper_noise, 0.05)):
        a, b = noise(z, level, seed=3), noise(z, level, seed=3)
        c = noise(z, level, seed=tf.constant([3, 1]))
        np.testing.assert_array_equal(a, b)
        assert np.mean(np.asarray(a) != np.asarray(c)) > 0.01


@pytest.mark.parametrize("kind,level", [("gaussian", 0.05), ("salt_pepper", 0.2)])
def test_pixel_space_noise_gives_the_model_exactly_the_reference_tensor(kind, level):
    x, _ = mnist_test(20)
    normalise = keras.layers.Normalization(mean=MEAN, variance=STD**2)
    seen_by_model = normalise(robustness.reference_noise(x, kind, level, seed=5)).numpy()
    noise = robustness.gaussian_noise if kind == "gaussian" else robustness.salt_and_pepper_noise
    reference_tensor = noise((x - MEAN) / STD, level, seed=5).numpy()
    np.testing.assert_allclose(seen_by_model, reference_tensor, atol=2e-6)
    assert seen_by_model.min() >= -1 - 2e-6 and seen_by_model.max() <= 1 + 2e-6
    pixels = robustness.reference_noise(x, kind, level, seed=5).numpy()
    assert pixels.min() >= MEAN - STD - 1e-6 and pixels.max() <= MEAN + STD + 1e-6


def test_bad_noise_levels_are_refused():
    with pytest.raises(ValueError, match="var must be >= 0"):
        robustness.gaussian_noise(np.zeros((1, 4)), -0.1, seed=0)
    with pytest.raises(ValueError, match=r"amount must be in \[0, 1\]"):
        robustness.salt_and_pepper_noise(np.zeros((1, 4)), 1.5, seed=0)
    with pytest.raises(ValueError, match="noise kind must be one of"):
        robustness.reference_noise(np.zeros((1, 4)), "speckle", 0.1, seed=0)


def test_reference_normalization_is_the_mnist_entry_of_data():
    assert robustness.REFERENCE_NORMALIZATION == data.NORMALIZATION["mnist"] == (0.1307, 0.3081)


def test_model_normalization_reads_the_models_rescaling_layer():
    mean, std = robustness.model_normalization(models.build("resnet", depth=1))
    assert mean == pytest.approx(0.1307, rel=1e-6) and std == pytest.approx(0.3081, rel=1e-6)
    plain = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(10)])
    assert robustness.model_normalization(plain, default=(0.5, 0.25)) == (0.5, 0.25)
