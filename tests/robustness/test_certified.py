"""robustness.certified: certified accuracy over radii from certify.certified_radius
(the Lipschitz-margin test on logits, certify's own bound for a model), and
certificates that PGD cannot break."""

import math

import keras
import numpy as np
import pytest

from contractive_keras import certify, robustness
from contractive_keras.robustness import attacks
from contractive_keras.robustness.norms import l2_radius_factor
from tests.robustness.classifiers import MEAN, STD, mnist_test, tiny_mnist_model


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
    np.testing.assert_allclose(robustness.certified_radius(logits=logits, labels=labels, lipschitz_constant=2.0).radius,
                               [2 / (2 * math.sqrt(2)), 0, 0])
    assert robustness.certified_radius is certify.certified_radius


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
    radii = certify.certified_radius(logits=logits, labels=y, lipschitz_constant=lipschitz).radius
    radii = radii / l2_radius_factor(norm, d)
    assert np.mean(radii > 0) > 0.85
    # Radii midway between two points' radii near the quartiles: a radius equal to a
    # point's own radius puts it on the threshold, where the model's float32 logits
    # (certified_accuracy runs the model itself, in other batches) may differ by an ulp.
    positive = np.unique(radii[radii > 0])
    for i in (int(q * (len(positive) - 1)) for q in (0.25, 0.5, 0.9)):
        eps = (positive[i] + positive[i + 1]) / 2
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
    radii = certify.certified_radius(logits=logits, labels=y, lipschitz_constant=fake).radius
    eps = float(np.median(radii[radii > 0]))
    certified = robustness.margins(logits, y) > math.sqrt(2) * fake * eps
    assert np.any(certified & broken_by_pgd(model, x, y, eps, "l2"))


def test_certified_accuracy_of_a_model_without_a_constant_delegates_to_certify(monkeypatch):
    x, y = mnist_test(6)
    model = tiny_mnist_model(hidden=0)
    calls = []

    def fake_certified_radius(m, inputs, labels=None):
        calls.append((m, np.shape(inputs), np.asarray(labels).tolist()))
        return np.array([0.0, 0.1, 0.2, 0.3, 0.4, 0.5]), np.array([False, True, True, True, True, True])

    monkeypatch.setattr(certify, "certified_radius", fake_certified_radius)
    accuracy = robustness.certified_accuracy(model, y, eps=[0.0, 0.15, 0.45], images=x)
    np.testing.assert_allclose(accuracy, [5 / 6, 4 / 6, 1 / 6])
    assert calls == [(model, x.shape, y.tolist())]
    # L-inf: the certified L2 radius must exceed sqrt(d) eps.
    d = x[0].size
    assert robustness.certified_accuracy(model, y, eps=0.35 / math.sqrt(d), norm="linf", images=x) == 2 / 6


def test_certified_accuracy_without_a_constant_needs_a_model():
    with pytest.raises(ValueError, match="lipschitz_constant is required with logits"):
        robustness.certified_accuracy(np.eye(3), np.arange(3), None, 0.1)
    with pytest.raises(ValueError, match="images= is required"):
        robustness.certified_accuracy(tiny_mnist_model(hidden=0), np.arange(3), 1.0, 0.1)


def test_certified_accuracy_of_a_chain_model_agrees_with_certify():
    # The softmax regression's logits / 10, as a chain certify can bound.
    inputs = keras.Input((28, 28, 1))
    h = keras.layers.Rescaling(1 / STD, offset=-MEAN / STD)(inputs)
    model = keras.Model(inputs, keras.layers.Dense(10)(keras.layers.Flatten()(h)))
    model.layers[-1].set_weights([w * 0.1 for w in tiny_mnist_model(hidden=0).layers[-1].get_weights()])
    x, y = mnist_test(100)
    radius, correct = certify.certified_radius(model, x, y)
    ordered = np.sort(radius[correct])
    eps = float(ordered[len(ordered) // 2] + ordered[len(ordered) // 2 + 1]) / 2  # between two radii
    expected = np.mean(correct & (radius > eps))
    assert 0 < expected < np.mean(correct)
    assert robustness.certified_accuracy(model, y, eps=eps, images=x) == expected
    bound = certify.lipschitz_bound(model).value
    # The constant form (margin > sqrt(2) L eps) never certifies more than certify's own radius.
    assert robustness.certified_accuracy(model, y, bound, eps, images=x) <= expected
