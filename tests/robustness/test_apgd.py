"""robustness.apgd: APGD-CE, APGD-DLR and APGD-T stay in the eps-ball and pixel
range, are at least as strong as PGD, are seeded, trace in tf.function, and the
DLR losses and the checkpoint schedule match the paper (Croce & Hein 2020)."""

import math

import numpy as np
import pytest
import tensorflow as tf

from contractive_keras.robustness import attacks
from contractive_keras.robustness.apgd import (
    LOSSES, apgd, apgd_targeted, checkpoints, dlr_loss, targeted_dlr_loss)
from tests.robustness.classifiers import mnist_test, tiny_mnist_model
from tests.robustness.test_attacks import _saturated_linear_model


def accuracy(model, x, y):
    return float(np.mean(np.argmax(model(x, training=False), -1) == y))


def distance(x_adv, x, norm):
    delta = (np.asarray(x_adv) - x).reshape(len(x), -1)
    return np.abs(delta).max(1) if norm == "linf" else np.linalg.norm(delta, axis=1)


@pytest.mark.parametrize("norm,eps", [("linf", 0.1), ("l2", 1.5)])
def test_adversarial_images_stay_in_eps_ball_and_pixel_range(norm, eps):
    model = tiny_mnist_model(hidden=32)
    x, y = mnist_test(64)  # real digits: many pixels sit exactly at 0 and 1
    for x_adv in (apgd(model, x, y, eps, norm=norm, loss="dlr", steps=8, seed=1),
                  apgd_targeted(model, x, y, eps, norm=norm, steps=8, target_classes=2, seed=1)):
        x_adv = np.asarray(x_adv)
        assert x_adv.shape == x.shape and x_adv.dtype == np.float32
        assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
        # float32 rounding of x + delta may overshoot the radius by an ulp or so.
        assert np.all(distance(x_adv, x, norm) <= eps * (1 + 1e-5) + 1e-6)
        assert np.median(distance(x_adv, x, norm)) > 0.5 * eps  # it moved


@pytest.mark.parametrize("norm,eps", [("linf", 0.05), ("l2", 1.0)])
def test_apgd_lowers_accuracy_and_is_at_least_as_strong_as_pgd(norm, eps):
    model = tiny_mnist_model(hidden=32)
    x, y = mnist_test(200)
    clean = accuracy(model, x, y)
    pgd_acc = accuracy(model, attacks.pgd(model, x, y, eps, norm=norm, steps=20, seed=0), y)
    ce_acc = accuracy(model, apgd(model, x, y, eps, norm=norm, steps=20, seed=0), y)
    t_acc = accuracy(model, apgd_targeted(model, x, y, eps, norm=norm, steps=20, target_classes=3,
                                          seed=0), y)
    assert clean > 0.85
    assert ce_acc < clean - 0.3 and t_acc < clean - 0.3
    assert ce_acc <= pgd_acc + 1 / len(x)  # slack: one example


def test_zero_radius_returns_the_clean_images():
    model = tiny_mnist_model(hidden=32)
    x, y = mnist_test(16)
    np.testing.assert_array_equal(apgd(model, x, y, 0.0, steps=3), x)
    np.testing.assert_array_equal(apgd_targeted(model, x, y, 0.0, norm="l2", steps=3, target_classes=1), x)


def test_apgd_is_reproducible_with_a_seed_and_random_start_depends_on_it():
    model = tiny_mnist_model(hidden=32)
    x, y = mnist_test(32)
    for norm, eps in (("linf", 0.03), ("l2", 0.5)):  # small: few points found at the start
        a = apgd(model, x, y, eps, norm=norm, steps=3, seed=3)
        b = apgd(model, x, y, eps, norm=norm, steps=3, seed=3)
        c = apgd(model, x, y, eps, norm=norm, steps=3, seed=4)
        np.testing.assert_array_equal(a, b)
        assert np.abs(np.asarray(a) - np.asarray(c)).max() > 0
    t1 = apgd_targeted(model, x, y, 0.03, steps=3, target_classes=2, seed=[5, 6])
    t2 = apgd_targeted(model, x, y, 0.03, steps=3, target_classes=2, seed=[5, 6])
    np.testing.assert_array_equal(t1, t2)


def test_apgd_inside_tf_function_matches_eager():
    model = tiny_mnist_model(hidden=32)
    x, y = mnist_test(32)
    seed = tf.constant([1, 2])
    kwargs = dict(norm="l2", loss="dlr", steps=6, restarts=2, seed=seed)
    graph = tf.function(lambda x, y: apgd(model, x, y, 1.0, **kwargs))
    np.testing.assert_allclose(graph(tf.constant(x), tf.constant(y)), apgd(model, x, y, 1.0, **kwargs),
                               atol=1e-6)
    kwargs = dict(steps=4, target_classes=2, seed=seed)
    graph = tf.function(lambda x, y: apgd_targeted(model, x, y, 0.05, **kwargs))
    np.testing.assert_allclose(graph(tf.constant(x), tf.constant(y)),
                               apgd_targeted(model, x, y, 0.05, **kwargs), atol=1e-6)


def test_dlr_loss_matches_hand_computed_values():
    logits = tf.constant([[1.0, 5.0, 2.0, 0.0], [0.5, -1.0, 3.0, 2.5], [4.0, 1.0, 1.0, 3.0]])
    labels = tf.constant([1, 0, 0])
    # sorted: [5, 2, 1, 0]; y=1 is the top class: -(5 - 2) / (5 - 1).
    # sorted: [3, 2.5, .5, -1]; y=0: -(0.5 - 3) / (3 - 0.5).
    # sorted: [4, 3, 1, 1]; y=0: -(4 - 3) / (4 - 1).
    np.testing.assert_allclose(dlr_loss(logits, labels), [-3 / 4, 2.5 / 2.5, -1 / 3], rtol=1e-6)
    targets = tf.constant([3, 3, 1])
    # denominators z_pi1 - (z_pi3 + z_pi4) / 2: 5 - 0.5, 3 + 0.25, 4 - 1.
    np.testing.assert_allclose(targeted_dlr_loss(logits, labels, targets),
                               [-(5 - 0) / 4.5, -(0.5 - 2.5) / 3.25, -(4 - 1) / 3.0], rtol=1e-6)


def test_dlr_losses_are_invariant_to_scaling_and_shifting_the_logits():
    logits = np.random.default_rng(0).normal(size=(50, 10)).astype("float32")
    labels = np.arange(50) % 10
    targets = (labels + 3) % 10
    for scaled in (logits * 1e4, logits * 0.5 + 3.0):
        np.testing.assert_allclose(dlr_loss(scaled, labels), dlr_loss(logits, labels), rtol=1e-4)
        np.testing.assert_allclose(targeted_dlr_loss(scaled, labels, targets),
                                   targeted_dlr_loss(logits, labels, targets), rtol=1e-4)


def test_dlr_attacks_where_saturated_cross_entropy_is_blind():
    """Huge logits make the float32 softmax one-hot: the CE gradient vanishes at
    correctly classified points, the scale-invariant DLR loss's does not."""
    model = _saturated_linear_model(1e4)
    x = np.random.default_rng(1).random((64, 28, 28, 1)).astype("float32")
    y = np.asarray(model(x)).argmax(1)  # every point "correct"
    eps = 0.03  # small enough that the random start alone flips few points
    ce = accuracy(model, apgd(model, x, y, eps, loss="ce", steps=10, seed=0), y)
    dlr = accuracy(model, apgd(model, x, y, eps, loss="dlr", steps=10, seed=0), y)
    targeted = accuracy(model, apgd_targeted(model, x, y, eps, steps=10, target_classes=2, seed=0), y)
    assert ce > 0.5
    assert dlr < 0.5 and targeted < 0.5


def test_checkpoints_follow_the_papers_recurrence():
    p = [0.0, 0.22]
    while p[-1] + max(p[-1] - p[-2] - 0.03, 0.06) <= 1.0:
        p.append(p[-1] + max(p[-1] - p[-2] - 0.03, 0.06))
    np.testing.assert_allclose(p, [0, .22, .41, .57, .70, .80, .87, .93, .99], atol=1e-9)
    assert checkpoints(100) == [math.ceil(v * 100 - 1e-9) for v in p] == [0, 22, 41, 57, 70, 80, 87, 93, 99]
    for steps in (1, 5, 20, 37):
        w = checkpoints(steps)
        assert w[0] == 0 and w == sorted(set(w)) and w[-1] <= steps
        assert set(w) == {math.ceil(v * steps - 1e-9) for v in p}


@pytest.mark.parametrize("kwargs,message", [
    (dict(norm="l1"), "norm must be one of"),
    (dict(loss="margin"), r"loss must be one of \('ce', 'dlr'\)"),
    (dict(eps=-0.1), "eps must be a non-negative number"),
    (dict(steps=0), "steps must be a positive int"),
    (dict(steps=2.5), "steps must be a positive int"),
    (dict(restarts=0), "restarts must be a positive int"),
    (dict(rho=1.5), r"rho must be a number in \[0, 1\]"),
    (dict(seed=[1, 2, 3]), "seed must be an int or a shape-"),
    (dict(target_classes=0), "target_classes must be a positive int"),
    (dict(target_classes=10), "must be at most the number of classes, 10"),
    (dict(target_classes=2, first_target=10), "must be at most the number of classes"),
    (dict(first_target=1), "first_target must be an int >= 2"),
])
def test_bad_arguments_are_refused_with_clear_errors(kwargs, message):
    model = tiny_mnist_model(hidden=32)
    x, y = mnist_test(4)
    kwargs = {"eps": 0.1, "steps": 2, **kwargs}
    attack = apgd_targeted if {"target_classes", "first_target"} & set(kwargs) else apgd
    if attack is apgd_targeted:
        kwargs.pop("loss", None)
    with pytest.raises(ValueError, match=message):
        attack(model, x, y, **kwargs)
    if attack is apgd and "loss" not in kwargs:  # the shared checks hold for APGD-T too
        with pytest.raises(ValueError, match=message):
            apgd_targeted(model, x, y, **kwargs)


def test_dlr_losses_need_enough_classes():
    assert LOSSES == ("ce", "dlr")
    with pytest.raises(ValueError, match="at least 3 classes"):
        dlr_loss(tf.zeros((2, 2)), [0, 1])
    with pytest.raises(ValueError, match="at least 4 classes"):
        targeted_dlr_loss(tf.zeros((2, 3)), [0, 1], [1, 2])


def test_apgd_targeted_one_target_at_a_time_finds_what_all_targets_at_once_find():
    """run_suite calls APGD-T once per target rank on the images still robust."""
    model = tiny_mnist_model(hidden=32)
    x, y = mnist_test(60)
    correct = lambda images: np.argmax(np.asarray(model(images)), -1) == y  # noqa: E731
    together = correct(apgd_targeted(model, x, y, 0.05, steps=8, target_classes=3, seed=4))
    apart = np.ones_like(together)
    for k in (2, 3, 4):
        apart &= correct(apgd_targeted(model, x, y, 0.05, steps=8, target_classes=1, first_target=k, seed=4))
    np.testing.assert_array_equal(together, apart)
