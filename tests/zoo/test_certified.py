"""zoo/certified.py: the bar of issue 15 (dominance over the anchor rows) and the
radii its entries are certified at."""

import importlib

import pytest

from contractive_keras import data


@pytest.fixture(scope="module")
def certified():
    return importlib.import_module("zoo.certified")


def metrics_of(row, delta=0.0):
    """Manifest-style metrics equal to an anchor row, shifted by ``delta``."""
    return {("test_accuracy" if r == 0 else f"certified_l2_{r:g}"): v + delta
            for r, v in row.items()}


def test_evaluation_radii_add_the_anchors_radii(certified):
    radii = certified.evaluation_radii("mnist")
    assert set(data.CERTIFIED_RADII["mnist"]) < set(radii)
    assert 0.25 in radii and list(radii) == sorted(radii)
    assert certified.evaluation_radii("fashion_mnist") == data.CERTIFIED_RADII["fashion_mnist"]


def test_equal_or_better_everywhere_dominates(certified):
    row = certified.ANCHORS["mnist"]["deel-torchlip tau-CE tau = 1"]
    assert certified._shortfalls(metrics_of(row), row) == {}
    assert certified._shortfalls(metrics_of(row, 0.01), row) == {}


def test_one_radius_below_or_unmeasured_is_a_shortfall(certified):
    row = certified.ANCHORS["mnist"]["deel-torchlip tau-CE tau = 1"]
    metrics = metrics_of(row, 0.01)
    metrics["certified_l2_1"] = row[1.0] - 1e-4
    del metrics["certified_l2_0.25"]
    short = certified._shortfalls(metrics, row)
    assert set(short) == {1.0, 0.25}
    assert short[0.25] == (None, row[0.25])
    metrics = metrics_of(row)
    metrics["test_accuracy"] -= 1e-4
    assert set(certified._shortfalls(metrics, row)) == {0}


def test_every_entry_names_a_certified_preset_and_its_study_dataset(certified):
    from contractive_keras import models

    for name, (preset, dataset, run, flags, _) in certified.ENTRIES.items():
        assert preset in models.CERTIFIED, name
        assert dataset in certified.ANCHORS, name
        study_dataset = "fashion_mnist" if "--dataset=fashion_mnist" in flags else "mnist"
        assert study_dataset == dataset, name


def test_train_py_command_carries_the_study_run_options(certified, tmp_path, monkeypatch):
    import json

    monkeypatch.setitem(certified.ENTRIES, "tmp_entry", (
        "stable_node_certified", "mnist", "tmp_run", "", "test entry"))
    monkeypatch.setattr(certified, "RESULTS_DIR", str(tmp_path))
    for temperature, tail in ((1.0, ""), (0.1, " --temperature=0.1")):
        (tmp_path / "tmp_run.json").write_text(json.dumps(
            {"args": {"train_eps": 0.1, "temperature": temperature, "dense": 256,
                      "kernels": "orthonormal"}}))
        assert certified._train_py_command("tmp_entry") == (
            "python train.py --model=stable_node_certified --dataset=mnist "
            "--train_eps=0.1 --dense=256" + tail)


def test_build_options_are_the_study_run_options_off_the_recipe(certified, tmp_path, monkeypatch):
    import json

    monkeypatch.setitem(certified.ENTRIES, "tmp_entry", (
        "chnode_certified", "mnist", "tmp_run", "", "test entry"))
    monkeypatch.setattr(certified, "RESULTS_DIR", str(tmp_path))
    run = tmp_path / "tmp_run.json"
    run.write_text(json.dumps({"args": {"dense": 128, "kernels": "orthonormal"}}))
    assert certified.build_options("tmp_entry") == {}
    run.write_text(json.dumps({"args": {"dense": 64, "kernels": "clipped", "train_eps": 0.3}}))
    assert certified.build_options("tmp_entry") == {"dense": 64, "kernels": "clipped"}
    assert certified._build_call("tmp_entry") == '"chnode_certified", dense=64, kernels=\'clipped\''


def test_a_run_with_a_validation_split_says_so(certified, tmp_path, monkeypatch):
    import json

    monkeypatch.setitem(certified.ENTRIES, "tmp_entry", (
        "stable_node_certified", "fashion_mnist", "tmp_run", "", "test entry"))
    monkeypatch.setattr(certified, "RESULTS_DIR", str(tmp_path))
    run = {"args": {"train_eps": 0.1, "temperature": 1.0, "validation_size": 5000},
           "validation": {"clean_accuracy": 0.9, "certified_accuracy_pairwise": {"0.1": 0.8}}}
    (tmp_path / "tmp_run.json").write_text(json.dumps(run))
    assert certified._train_py_command("tmp_entry").endswith(" --validation_size=5000")
    [line] = certified._validation_lines("tmp_entry")
    assert line.startswith("Trained on the first 55,000 training images; the last 5,000")
    assert line.endswith("There: 90.00 % clean, 80.00 % at 0.1 certified.")
    run["args"]["validation_size"] = 0
    (tmp_path / "tmp_run.json").write_text(json.dumps(run))
    assert certified._validation_lines("tmp_entry") == []
    assert "validation_size" not in certified._train_py_command("tmp_entry")
