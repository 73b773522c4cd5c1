"""robustness.standard and robustness.masking: the worst case is per image, the suite
breaks a model built to mask gradients where PGD with the cross-entropy fails, and
the masking checks flag a masked model and pass an honest one."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from contractive_keras import robustness
from contractive_keras.robustness import masking, standard
from tests.robustness.classifiers import mnist_test, tiny_mnist_model

# A small suite with the standard one's structure (two gradient attacks, then
# the gradient-free one), sized for tests.
SMALL_SUITE = (
    standard.AttackSpec("apgd-ce", "apgd", (("loss", "ce"), ("steps", 20))),
    standard.AttackSpec("apgd-t", "apgd_targeted", (("steps", 20), ("target_classes", 3))),
    standard.AttackSpec("square", "square", (("queries", 300), ("p_init", 0.8)), gradient_free=True),
)


def _accuracy(model, x, y):
    return float(np.mean(np.argmax(np.asarray(model(x)), -1) == y))


def _scaled(model, scale):
    """The same classifier with logits times ``scale``: float32 softmax saturates, CE gradients vanish."""
    inputs = keras.Input(model.input_shape[1:])
    return keras.Model(inputs, model(inputs) * scale)


@tf.custom_gradient
def _zero_gradient(x):
    return tf.identity(x), lambda dy: tf.zeros_like(dy)


class ZeroGradient(keras.layers.Layer):
    """Identity whose gradient is zero: every gradient attack is blind through it."""

    def call(self, x):
        return _zero_gradient(x)


def _zero_gradient_model(model):
    inputs = keras.Input(model.input_shape[1:])
    return keras.Model(inputs, model(ZeroGradient()(inputs)))


@pytest.fixture(scope="module")
def honest():
    return tiny_mnist_model(hidden=32)


def test_suite_accuracy_is_the_per_image_conjunction_of_clean_and_every_attack(honest):
    x, y = mnist_test(100)
    result = standard.run_suite(honest, x, y, 0.08, suite=SMALL_SUITE, seed=0)
    expected = result.clean.copy()
    for name in result.attacks:
        assert not np.any(result.robust_after[name] & ~expected), name  # cumulative: never revived
        expected = result.robust_after[name]
    assert result.accuracy == pytest.approx(result.robust.mean())
    assert result.accuracy <= result.accuracy_after("apgd-ce") <= result.clean_accuracy
    assert result.clean_accuracy == pytest.approx(_accuracy(honest, x, y))
    # Each attack's contribution adds up to the gap between clean and worst case.
    total = sum(result.broken_only_by(a) for a in result.attacks)
    assert total == pytest.approx(result.clean_accuracy - result.accuracy)


@pytest.mark.slow
def test_suite_lowers_accuracy_more_than_any_single_attack_of_it(honest):
    x, y = mnist_test(100)
    result = standard.run_suite(honest, x, y, 0.08, suite=SMALL_SUITE, seed=0)
    assert result.accuracy < result.clean_accuracy - 0.3
    for spec in SMALL_SUITE:
        alone = standard.run_suite(honest, x, y, 0.08, suite=(spec,), seed=0)
        assert result.accuracy <= alone.accuracy


@pytest.mark.slow
def test_suite_is_reproducible_with_a_seed(honest):
    x, y = mnist_test(60)
    a = standard.run_suite(honest, x, y, 1.0, norm="l2", suite=SMALL_SUITE, seed=3)
    b = standard.run_suite(honest, x, y, 1.0, norm="l2", suite=SMALL_SUITE, seed=3)
    for name in a.attacks:
        np.testing.assert_array_equal(a.robust_after[name], b.robust_after[name])


def test_suite_breaks_a_saturated_model_where_pgd_with_cross_entropy_fails(honest):
    """Logits scaled by 1e4: PGD-CE sees zero gradients at correct points and
    breaks almost nothing; the suite (DLR is scale invariant, Square needs no
    gradient) breaks as much as on the unscaled model."""
    x, y = mnist_test(100)
    masked = _scaled(honest, 1e4)
    pgd_ce = _accuracy(masked, np.asarray(robustness.pgd(masked, x, y, 0.08, loss="ce", steps=20, seed=0)), y)
    suite = standard.run_suite(masked, x, y, 0.08, suite=SMALL_SUITE, seed=0)
    unscaled = standard.run_suite(honest, x, y, 0.08, suite=SMALL_SUITE, seed=0)
    assert pgd_ce >= suite.clean_accuracy - 0.05  # the CE attack failed
    assert suite.accuracy <= unscaled.accuracy + 0.05
    assert suite.accuracy < suite.clean_accuracy - 0.3


def test_masking_checks_flag_a_zero_gradient_model_and_pass_an_honest_one(honest):
    x, y = mnist_test(100)
    blind = _zero_gradient_model(honest)
    reports = {}
    for name, model in (("honest", honest), ("blind", blind)):
        results = [standard.run_suite(model, x, y, e, suite=SMALL_SUITE, seed=0) for e in (0.05, 0.1)]
        large = standard.run_suite(model, x, y, 1.0, suite=SMALL_SUITE, seed=0)
        reports[name] = masking.diagnose(results, large_eps=large)
    assert not reports["honest"].masked, reports["honest"].lines()
    assert reports["blind"].masked
    failed = {c.name for c in reports["blind"].checks if not c.passed}
    assert "gradient_free_not_stronger" in failed
    assert reports["blind"].verdict == masking.MASKED


def test_masking_checks_flag_an_attack_above_clean_and_accuracy_rising_with_eps():
    def result(eps, robust):
        robust = np.asarray(robust, bool)
        return standard.SuiteResult("custom", eps, "linf", ("a",), (False,), np.ones_like(robust),
                                    {"a": robust}, {"a": 0.0})

    rising = [result(0.05, [1, 0, 0, 0]), result(0.1, [1, 1, 1, 0])]
    report = masking.diagnose(rising, attack_rows=[("pgd linf eps 0.1", 0.9, 0.8)])
    failed = {c.name for c in report.checks if not c.passed}
    assert failed == {"not_above_clean", "monotone_in_eps"}
    assert "pgd linf eps 0.1: 90.00 % > clean 80.00 %" in report.checks[0].evidence
    falling = [result(0.05, [1, 1, 0, 0]), result(0.1, [1, 0, 0, 0])]
    assert not masking.diagnose(falling, attack_rows=[("pgd", 0.5, 0.8)]).masked


def test_masking_report_round_trips_through_a_dict():
    report = masking.MaskingReport((masking.Check("a", True, "x"), masking.Check("b", False, "y")))
    again = masking.MaskingReport.from_dict(report.to_dict())
    assert again == report and again.masked and report.to_dict()["verdict"] == masking.MASKED


def test_stronger_suite_doubles_steps_and_restarts_of_the_gradient_attacks():
    specs = standard.stronger_suite("standard")
    assert [s.name for s in specs] == ["apgd-ce", "apgd-t"]
    assert [dict(s.options)["steps"] for s in specs] == [200, 200]
    assert all(dict(s.options)["restarts"] == 2 for s in specs)


@pytest.mark.parametrize("kwargs,message", [
    ({"suite": "autoattack"}, "suite must be one of"),
    ({"suite": ()}, "custom suite"),
    ({"eps": -0.1}, "eps must be a non-negative"),
    ({"norm": "l1"}, "norm must be one of"),
    ({"batch_size": 0}, "batch_size"),
])
def test_bad_suite_arguments_are_refused_with_clear_errors(honest, kwargs, message):
    x, y = mnist_test(4)
    kwargs = {"eps": 0.1, **kwargs}
    with pytest.raises(ValueError, match=message):
        standard.run_suite(honest, x, y, **kwargs)


def test_an_attack_returning_a_point_outside_the_ball_is_an_error(honest, monkeypatch):
    x, y = mnist_test(8)
    monkeypatch.setitem(standard._METHODS, "apgd", lambda model, xb, yb, eps, **kw: xb * 0.0)
    with pytest.raises(RuntimeError, match="outside the linf ball"):
        standard.run_suite(honest, x, y, 0.01, suite=(standard.SUITES["quick"][0],))
