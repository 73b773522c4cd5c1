"""robustness.evaluation: the table ``evaluate`` fills, row by row equal to the
direct computation, reproducible, with its exports."""

import csv
import io
import json

import keras
import numpy as np
import pytest

from contractive_keras import data, robustness
from contractive_keras.robustness import attacks
from contractive_keras.robustness import RobustnessTable
from tests.robustness.classifiers import mnist_test, tiny_mnist_model

FAST = dict(draws=3, eps=(0.05, 0.1), pgd_steps=5)


@pytest.fixture(scope="module")
def small_table():
    model = tiny_mnist_model(hidden=32)
    x, y = mnist_test(200)
    return robustness.evaluate(model, (x, y), attacks=("fgsm", "pgd", "quick"), lipschitz_constant=40.0,
                               seed=3, diagnostics_take=50, **FAST)


def test_table_has_every_setting_with_mean_and_spread_over_draws(small_table):
    labels = [row.label for row in small_table]
    assert labels == [
        "clean", "gaussian var=0.05", "gaussian var=0.2", "salt_pepper amount=0.05",
        "salt_pepper amount=0.2", "fgsm linf eps=0.05", "fgsm linf eps=0.1",
        "pgd linf eps=0.05", "pgd linf eps=0.1",
        "quick (upper bound) linf eps=0.05", "quick (upper bound) linf eps=0.1",
        "worst_case linf eps=0.05", "worst_case linf eps=0.1",
        "certified linf eps=0.05", "certified linf eps=0.1"]
    for row in small_table:
        expected_draws = 3 if row.kind in ("gaussian", "salt_pepper") else 1
        assert len(row.draws) == expected_draws
        assert row.mean == pytest.approx(np.mean(row.draws))
        assert row.std == pytest.approx(np.std(row.draws, ddof=1) if expected_draws > 1 else 0.0)
        assert all(0 <= a <= 1 for a in row.draws)
    noisy = small_table.lookup("gaussian", 0.2)
    assert noisy.std > 0, "independent draws must differ"
    assert small_table.metadata["n_examples"] == 200


def test_table_rows_equal_direct_computation(small_table):
    model = tiny_mnist_model(hidden=32)
    x, y = mnist_test(200)
    assert small_table.lookup("clean").mean == np.mean(np.argmax(model(x), -1) == y)
    fgsm_adv = attacks.fgsm(model, x, y, 0.1, loss="margin")  # evaluate's default objective
    assert small_table.lookup("fgsm", 0.1).mean == np.mean(np.argmax(model(fgsm_adv), -1) == y)
    certified = robustness.certified_accuracy(model, y, 40.0, 0.05, norm="linf", images=x)
    assert small_table.lookup("certified", 0.05, "linf").mean == certified


def test_suite_rows_are_run_suite_and_masking_checks_are_kept(small_table):
    model = tiny_mnist_model(hidden=32)
    x, y = mnist_test(200)
    for e in (0.05, 0.1):
        direct = robustness.run_suite(model, x, y, e, suite="quick", seed=3)
        assert small_table.lookup("quick", e).mean == direct.accuracy
        assert small_table.lookup("quick", e).mean <= small_table.lookup("pgd", e).mean + 0.02
    masking = robustness.MaskingReport.from_dict(small_table.metadata["masking"])
    names = [c.name for c in masking.checks]
    assert names == ["not_above_clean", "monotone_in_eps", "near_zero_at_large_eps", "more_steps_not_stronger"]
    assert not masking.masked, masking.lines()
    assert [r["eps"] for r in small_table.metadata["suites"]["quick"]] == [0.05, 0.1]


def test_worst_case_is_the_union_of_attacks_over_smaller_radii(small_table):
    for e in (0.05, 0.1):
        worst = small_table.lookup("worst_case", e).mean
        for kind in ("fgsm", "pgd"):
            for smaller in (0.05, 0.1):
                if smaller <= e:
                    assert worst <= small_table.lookup(kind, smaller).mean
    assert small_table.lookup("worst_case", 0.1).mean <= small_table.lookup("worst_case", 0.05).mean


def test_worst_case_equals_per_example_intersection():
    model = tiny_mnist_model(hidden=32)
    x, y = mnist_test(200)
    table = robustness.evaluate(model, (x, y), attacks=("fgsm",), noise=(), eps=(0.02, 0.05))
    ok = [np.argmax(model(attacks.fgsm(model, x, y, e, loss="margin")), -1) == y for e in (0.02, 0.05)]
    assert table.lookup("worst_case", 0.02).mean == np.mean(ok[0])
    assert table.lookup("worst_case", 0.05).mean == np.mean(ok[0] & ok[1])


def test_attacks_and_noise_lower_accuracy_in_the_table(small_table):
    clean = small_table.lookup("clean").mean
    assert clean > 0.85
    assert small_table.lookup("pgd", 0.1).mean < clean - 0.5
    assert small_table.lookup("certified", 0.1).mean <= small_table.lookup("certified", 0.05).mean <= clean
    levels, means, stds = small_table.series("fgsm", "linf")
    np.testing.assert_allclose(levels, [0.05, 0.1])
    assert means[1] <= means[0] and stds.shape == (2,)


def test_evaluate_is_reproducible_for_a_seed_and_batching():
    model = tiny_mnist_model(hidden=0)
    x, y = mnist_test(100)
    kwargs = dict(attacks=("fgsm", "pgd"), eps=(0.05,), draws=2, pgd_steps=3)
    a = robustness.evaluate(model, (x, y), seed=1, **kwargs)
    b = robustness.evaluate(model, data.load("mnist", "test", 500, take=100), seed=1, **kwargs)
    c = robustness.evaluate(model, (x, y), seed=2, **kwargs)
    d = robustness.evaluate(model, (x, y), seed=1, batch_size=40, **kwargs)
    assert [r.draws for r in a] == [r.draws for r in b]
    assert a.lookup("gaussian", 0.2).draws != c.lookup("gaussian", 0.2).draws
    alone = robustness.evaluate(model, (x, y), seed=1, noise=[("gaussian", 0.2)], attacks=(), draws=2)
    assert alone.lookup("gaussian", 0.2).draws == a.lookup("gaussian", 0.2).draws
    for kind in ("clean", "fgsm"):  # deterministic rows do not depend on seed or batching
        assert a.lookup(kind).draws == c.lookup(kind).draws == d.lookup(kind).draws


def test_table_exports_round_trip(small_table, tmp_path):
    restored = RobustnessTable.from_dict(json.loads(small_table.to_json(str(tmp_path / "t.json"))))
    assert restored.rows == small_table.rows
    assert json.load(open(tmp_path / "t.json"))["metadata"]["seed"] == 3
    rows = list(csv.DictReader(io.StringIO(small_table.to_csv(str(tmp_path / "t.csv")))))
    assert [r["kind"] for r in rows] == [r.kind for r in small_table]
    assert float(rows[1]["mean"]) == pytest.approx(small_table.rows[1].mean, abs=1e-6)
    assert len(rows[1]["draws"].split(";")) == 3
    markdown = small_table.to_markdown()
    assert markdown.splitlines()[0] == "| setting | accuracy (%) | draws |"
    assert len(markdown.splitlines()) == 2 + len(small_table)


def test_evaluate_refuses_normalised_images_and_bad_settings():
    model = tiny_mnist_model(hidden=0)
    x, y = mnist_test(10)
    with pytest.raises(ValueError, match=r"pixels in \[0, 1\]"):
        robustness.evaluate(model, ((x - 0.1307) / 0.3081, y))
    with pytest.raises(ValueError, match="unknown attacks"):
        robustness.evaluate(model, (x, y), attacks=("cw",))
    with pytest.raises(ValueError, match="draws must be a positive int"):
        robustness.evaluate(model, (x, y), draws=0)
    with pytest.raises(ValueError, match="noise kind must be one of"):
        robustness.evaluate(model, (x, y), noise=[("speckle", 0.1)])


def test_certified_rows_from_the_models_own_certificate():
    inputs = keras.Input((28, 28, 1))
    h = keras.layers.Rescaling(1 / 0.3081, offset=-0.1307 / 0.3081)(inputs)
    model = keras.Model(inputs, keras.layers.Dense(10)(keras.layers.Flatten()(h)))
    model.layers[-1].set_weights([w * 0.1 for w in tiny_mnist_model(hidden=0).layers[-1].get_weights()])
    x, y = mnist_test(100)
    eps = (0.05, 0.2)
    table = robustness.evaluate(model, (x, y), attacks=(), noise=(), eps=eps, norm="l2",
                                lipschitz_constant="certify")
    expected = robustness.certified_accuracy(model, y, eps=eps, images=x, norm="l2")
    assert [table.lookup("certified", e, "l2").mean for e in eps] == list(expected)
    assert table.metadata["lipschitz_constant"] == "certify"
    with pytest.raises(ValueError, match="'certify' \\(with a Keras model\\)"):
        robustness.evaluate(lambda t: model(t), (x, y), lipschitz_constant="certify")
    with pytest.raises(ValueError, match="must be a number or 'certify'"):
        robustness.evaluate(model, (x, y), lipschitz_constant="auto")
