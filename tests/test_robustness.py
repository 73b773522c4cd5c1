"""Reference noise against skimage, its pixel-space form, and certified accuracy."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf
from scipy import stats
from skimage.util import random_noise

from contractive_keras import attacks, data, robustness
from tests.test_attacks import mnist_test, tiny_mnist_model

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


def test_certified_accuracy_uses_the_lipschitz_margin_formula():
    logits = np.array([[3.0, 1.0, 0.0], [0.0, 2.0, 1.0], [5.0, 0.0, 4.0]])
    labels = np.array([0, 0, 2])  # margins 2, -2 (misclassified), -1
    np.testing.assert_allclose(robustness.margins(logits, labels), [2.0, -2.0, -1.0])
    # certified at L2 radius eps iff margin > sqrt(2) * L * eps: 2 > sqrt(2) * eps
    accuracy = robustness.certified_accuracy(logits, labels, 1.0, [0.0, 1.414, 1.4143])
    np.testing.assert_allclose(accuracy, [1 / 3, 1 / 3, 0.0])
    # L-inf radius eps sits in the L2 ball of radius sqrt(d) eps (d = 4 here).
    assert robustness.certified_accuracy(logits, labels, 1.0, 0.707, norm="linf", input_dim=4) == 1 / 3
    assert robustness.certified_accuracy(logits, labels, 1.0, 0.7072, norm="linf", input_dim=4) == 0.0
    np.testing.assert_allclose(robustness.certified_radius(logits, labels, 2.0), [2 / (2 * math.sqrt(2)), 0, 0])


def test_certified_accuracy_refuses_bad_arguments():
    logits, labels = np.eye(3), np.arange(3)
    with pytest.raises(ValueError, match="lipschitz_constant must be a finite number > 0"):
        robustness.certified_accuracy(logits, labels, 0.0, 0.1)
    with pytest.raises(ValueError, match="needs the input dimension"):
        robustness.certified_accuracy(logits, labels, 1.0, 0.1, norm="linf")
    with pytest.raises(ValueError, match="eps must be a radius >= 0"):
        robustness.certified_accuracy(logits, labels, 1.0, -0.1)


def lipschitz_upper_bound(model):
    """Exact-arithmetic bound for Normalization -> Dense(relu) -> Dense: the
    product of the layers' spectral norms (ReLU is 1-Lipschitz) over std."""
    bound = 1.0 / STD
    for layer in model.layers:
        if isinstance(layer, keras.layers.Dense):
            bound *= np.linalg.norm(layer.kernel.numpy().astype(np.float64), 2)
    return bound


@pytest.fixture(scope="module")
def certified_setting():
    model = tiny_mnist_model(hidden=32)
    x, y = mnist_test(300)
    return model, x, y, lipschitz_upper_bound(model), model(x).numpy()


def broken_by_pgd(model, x, y, eps, norm):
    x_adv = attacks.pgd(model, x, y, eps, norm=norm, steps=50, restarts=2, seed=11,
                        step_size=eps / 10)
    return np.argmax(model(x_adv), -1) != y


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_no_certified_point_is_broken_by_pgd_within_the_radius(certified_setting, norm):
    model, x, y, lipschitz, logits = certified_setting
    d = x[0].size
    radii = robustness.certified_radius(logits, y, lipschitz, norm=norm, input_dim=d)
    assert np.mean(radii > 0) > 0.85
    for eps in np.quantile(radii[radii > 0], [0.25, 0.5, 0.9]):
        certified = robustness.margins(logits, y) > math.sqrt(2) * lipschitz * eps * (
            math.sqrt(d) if norm == "linf" else 1.0)
        assert certified.sum() > 10
        assert robustness.certified_accuracy(model, y, lipschitz, eps, norm=norm, images=x) == certified.mean()
        assert not np.any(certified & broken_by_pgd(model, x, y, eps, norm))


def test_a_false_lipschitz_constant_is_caught_by_the_attack(certified_setting):
    # The check above has teeth: with a constant only 3x too small, PGD breaks
    # points that the (false) certificate claims.
    model, x, y, lipschitz, logits = certified_setting
    fake = lipschitz / 3
    radii = robustness.certified_radius(logits, y, fake)
    eps = float(np.median(radii[radii > 0]))
    certified = robustness.margins(logits, y) > math.sqrt(2) * fake * eps
    assert np.any(certified & broken_by_pgd(model, x, y, eps, "l2"))


def test_model_normalization_reads_the_models_rescaling_layer():
    import keras

    from contractive_keras import models

    mean, std = robustness.model_normalization(models.build("resnet", depth=1))
    assert mean == pytest.approx(0.1307, rel=1e-6) and std == pytest.approx(0.3081, rel=1e-6)
    plain = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(10)])
    assert robustness.model_normalization(plain, default=(0.5, 0.25)) == (0.5, 0.25)
