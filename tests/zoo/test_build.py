"""zoo/build.py: trained models load through robustness.load_model, and the
certificate it records is certify's (summary and whole-model bound)."""

import importlib
import json
import os

import keras
import numpy as np
import pytest

from contractive_keras import certify


@pytest.fixture(scope="module")
def build():
    return importlib.import_module("zoo.build")


def chain_model(square=False):
    inputs = keras.Input((28, 28, 1))
    h = keras.layers.Flatten()(keras.layers.Rescaling(1 / 0.3081, offset=-0.1307 / 0.3081)(inputs))
    if square:  # a layer certify does not know
        h = keras.layers.Lambda(lambda t: t * t)(h)
    return keras.Model(inputs, keras.layers.Dense(10)(h))


def test_certificate_is_certify_summary_and_lipschitz_bound(build):
    model = chain_model()
    values, lipschitz = build.certificate(model)
    assert values == certify.summary(model)
    assert lipschitz == pytest.approx(certify.lipschitz_bound(model).value)
    expected = np.linalg.norm(model.layers[-1].kernel.numpy().astype(np.float64), 2) / 0.3081
    assert lipschitz == pytest.approx(expected, rel=1e-6)


def test_a_model_certify_refuses_records_the_reason(build):
    values, lipschitz = build.certificate(chain_model(square=True))
    assert lipschitz is None
    assert values["certify_error"] and "\n" not in values["certify_error"]


def test_trained_models_load_through_the_shared_loader(build, tmp_path, monkeypatch):
    model = chain_model()
    os.makedirs(tmp_path / "entry" / "export")
    model.save(str(tmp_path / "entry" / "export" / "model.keras"))
    monkeypatch.setattr(build, "RUNS_DIR", str(tmp_path))
    loaded = build.load_trained("entry")
    x = np.random.default_rng(0).random((4, 28, 28, 1)).astype("float32")
    np.testing.assert_allclose(loaded(x), model(x), atol=1e-6)


def write_seed_runs(directory, cell, validation_scores, test_scores):
    """Minimal seed result JSONs of ``cell`` (as zoo/seeds.py writes them) for the selection."""
    import json

    for seed, (val, test) in enumerate(zip(validation_scores, test_scores)):
        run = {"cell": cell, "seed": seed, "selection_score": val,
               "selection_rule": "validation noise_mean (mean accuracy over the four reference "
                                 "noise settings)",
               "validation": {"noise_mean": val}, "test": {"noise_mean": test},
               "train_command": f"python train.py --model=chnode --depth=4 --seed={seed} "
                                "--data_dir=runs/seeds/data"}
        with open(os.path.join(directory, f"{cell}_seed{seed}.json"), "w") as f:
            json.dump(run, f)


def test_from_seeds_ships_the_seed_validation_chooses(build, tmp_path):
    write_seed_runs(tmp_path, "chnode_mnist_n4", [0.70, 0.75, 0.72], [0.80, 0.60, 0.70])
    selection = build.seed_selection("chnode_mnist_n4", 3, results_dir=str(tmp_path))
    assert selection["seed"] == 1  # the validation maximum, though it is the worst on test
    assert (selection["rank"], selection["n"]) == (3, 3)
    assert build.run_dir("chnode_mnist_n4", selection) == os.path.join(
        build.SEED_RUNS_DIR, "chnode_mnist_n4", "seed1")
    assert build.run_dir("chnode_mnist_n4") == os.path.join(build.RUNS_DIR, "chnode_mnist_n4")


def test_from_seeds_refuses_unfinished_cells_and_non_cells(build, tmp_path):
    write_seed_runs(tmp_path, "chnode_mnist_n4", [0.70, 0.75], [0.80, 0.60])
    with pytest.raises(ValueError, match="2 of the 5 seeds"):
        build.seed_selection("chnode_mnist_n4", 5, results_dir=str(tmp_path))
    with pytest.raises(ValueError, match="not a seed cell"):
        build.seed_selection("chnode_mnist_n12_certified", 1, results_dir=str(tmp_path))


def test_a_seed_entry_s_card_says_how_it_was_chosen(build, tmp_path):
    write_seed_runs(tmp_path, "chnode_mnist_n4", [0.70, 0.75, 0.72], [0.80, 0.60, 0.70])
    selection = build.seed_selection("chnode_mnist_n4", 3, results_dir=str(tmp_path))
    evaluation = {"test": {"rows": [{"kind": "clean", "level": 0.0, "mean": 0.9}]},
                  "pgd_subset": {"rows": []}, "pgd_take": 1000, "certificate": {},
                  "train_images": 55000}
    card = build.model_card("chnode_mnist_n4", {"train_accuracy": 0.91, "train_seconds": 10.0},
                            evaluation, {"flags": {"seed": 1}}, selection)
    assert "    python train.py --model=chnode --depth=4 --seed=1 --data_dir=runs/seeds/data" in card
    assert "Seed 1, chosen among the 3 finished seeds" in card
    assert "75.00 %. The test set was not used to choose." in card
    assert "rank 3 of 3" in card and "60.00 / 70.00 / 80.00 %" in card
    assert "first 55,000 official training images" in card
    assert "| train (55,000 images) | 0.9100 |" in card
    assert "python zoo/build.py --from_seeds chnode_mnist_n4" in card
    plain = build.model_card("chnode_mnist_n4", {"train_accuracy": 0.91, "train_seconds": 10.0},
                             dict(evaluation, train_images=60000), {"flags": {}})
    assert "chosen" not in plain and "official 60,000 / 10,000 split" in plain


def test_readme_table_is_the_manifest_s_entries_in_entries_order(build, tmp_path):
    metrics = {"test_accuracy": 0.9643, "gaussian_0.2": 0.90038, "standard_linf_0.05": 0.4887,
               "masking": "no gradient masking detected"}
    models = {"stable_node_mnist": {"metrics": dict(metrics, seed=2, seeds_finished=5)},
              "chnode_mnist_n4": {"metrics": dict(metrics, masking="gradient masking detected")},
              "not_an_entry_of_build": {"metrics": metrics},
              "stable_node_certified_fashion_mnist": {"metrics": {
                  "test_accuracy": 0.8083, "certified_l2_0.1": 0.787, "certified_l2_0.5": 0.6851,
                  "certified_l2_1": 0.5229}}}
    with open(tmp_path / "manifest.json", "w") as f:
        json.dump({"format_version": 1, "models": models}, f)
    lines = build.readme_table(str(tmp_path)).splitlines()
    assert lines[0] == "| model | seed | test | Gaussian 0.2 | standard attack L-inf 0.05 | masking |"
    assert lines[2:4] == ["| `chnode_mnist_n4` | 0 | 96.43 | 90.04 | 48.87 | masked |",
                          "| `stable_node_mnist` | 2 of 5, chosen on validation | 96.43 | 90.04 | 48.87 | ok |"]
    fashion = lines[lines.index("fashion_mnist: clean and certified accuracy (%) at L2 radius, full test set"):]
    assert fashion[2] == "| model | clean | 0.1 | 0.25 | 0.5 | 1 |"
    assert fashion[4:] == ["| `stable_node_certified_fashion_mnist` | 80.8 | 78.7 | - | 68.5 | 52.3 |"]
    mnist = lines[lines.index("mnist: clean and certified accuracy (%) at L2 radius, full test set"):]
    assert mnist[4] == ""    # no certified MNIST entry in this manifest


def test_standard_cells_mark_missing_radii_and_the_masking_verdict(build):
    assert build.standard_cells({}) == ["-", "-", "-", "-", "-"]
    cells = build.standard_cells({"standard_linf_0.05": 0.5, "standard_l2_1.58": 0.125,
                                  "masking": "gradient masking detected"})
    assert cells == ["50.00", "-", "-", "12.50", "masked"]


def test_the_card_warns_of_attacks_at_or_above_clean_accuracy(build, tmp_path, monkeypatch):
    """Without a standard-attack result the card keeps its single-attack rows and warns of
    the failed ones; with one they give way to the standard attack (test_standard_attack)."""
    monkeypatch.setattr(build.standard_attack, "RESULTS_DIR", str(tmp_path))
    row = lambda kind, level, mean: {"kind": kind, "level": level, "norm": "linf", "mean": mean}  # noqa: E731
    evaluation = {"test": {"rows": [{"kind": "clean", "level": 0.0, "mean": 0.85},
                                    row("fgsm", 0.05, 0.80), row("fgsm", 0.1, 0.89)]},
                  "pgd_subset": {"rows": [{"kind": "clean", "level": 0.0, "mean": 0.83},
                                          row("fgsm", 0.1, 0.95),  # not a card row: not flagged
                                          row("pgd", 0.05, 0.83), row("pgd", 0.1, 0.50)]},
                  "pgd_take": 1000, "certificate": {}, "train_images": 60000}
    assert build.failed_attacks(evaluation) == [
        ("fgsm 0.1 (linf), test set", 0.89, 0.85),
        ("pgd 0.05 (linf), first 1000 test images", 0.83, 0.83)]
    card = build.model_card("chnode_mnist_n8", {"train_accuracy": 0.9, "train_seconds": 1.0},
                            evaluation, {"flags": {}})
    assert "**These attacks failed on this model**" in card
    assert "- fgsm 0.1 (linf), test set: 0.8900 (clean 0.8500)" in card
    assert "- pgd 0.05 (linf), first 1000 test images: 0.8300 (clean 0.8300)" in card
    assert "pgd 0.1 (linf), first 1000 test images: 0.5000 (clean" not in card
    evaluation["test"]["rows"][2]["mean"] = 0.84
    evaluation["pgd_subset"]["rows"][2]["mean"] = 0.82
    assert build.failed_attacks(evaluation) == []
    assert "failed" not in build.model_card("chnode_mnist_n8", {"train_accuracy": 0.9, "train_seconds": 1.0},
                                            evaluation, {"flags": {}})


def test_unknown_stage_is_refused_with_the_allowed_ones(build, capsys):
    with pytest.raises(SystemExit):
        build.main(["--stages=train,paint", "chnode_mnist_n4"])
    assert "allowed: train, evaluate, export, card" in capsys.readouterr().err
