"""zoo/entries.py, the one entry table: every entry is a train.py call the
trainer accepts, the certified entries' recipes are the study runs their
weights come from, and the shipped zoo is exactly the table, with no
superseded entry."""

import json
import os

import pytest

from contractive_keras import training, zoo
from zoo import entries

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def manifest_models():
    return zoo.read_manifest(os.path.join(ROOT, "zoo", zoo.MANIFEST))["models"]


def study_args(run):
    with open(os.path.join(ROOT, "docs", "results", "certified", f"{run}.json")) as f:
        return json.load(f)["args"]


@pytest.mark.parametrize("name", list(entries.ENTRIES))
def test_every_entry_is_a_run_train_py_accepts(name):
    entry = entries.ENTRIES[name]
    values = {k: v for k, v in entry.flags.items() if k != "model"}
    config = training.make_config(entry.model, **values)
    for key, value in values.items():
        assert getattr(config, key) == value, (name, key)
    assert entry.profile in entries.PROFILES
    assert all(flag.startswith("--") and "=" in flag for flag in entries.train_flags(name))


#: The study's per-pixel ODE block (``--ode``) of each certified preset.
STUDY_ODE = {"chnode_certified": "chnode", "stable_node_certified": "stable_conv"}


@pytest.mark.parametrize("name", [n for n, e in entries.ENTRIES.items() if e.study_run])
def test_a_certified_entry_s_recipe_is_its_study_run_s(name):
    """The shipped weights were trained by the retired study script: the
    entry's train.py flags, filled in from the preset's recipe, must be the
    settings that run used, or retraining the entry is another experiment."""
    entry = entries.ENTRIES[name]
    args = study_args(entry.study_run)
    config = training.make_config(entry.model, **{k: v for k, v in entry.flags.items() if k != "model"})
    assert args["ode"] == STUDY_ODE[entry.model]
    assert args["dataset"] == config.dataset
    assert args["loss"] == "lmce" and config.loss == "lipschitz_margin"
    assert args["bound"] == "exact" and config.loss_bound == "exact"
    pairs = {"train_eps": config.train_eps, "temperature": config.temperature, "dense": config.dense or 128,
             "kernels": config.kernels, "epochs": config.epochs, "batch_size": config.batch_size,
             "lr": config.learning_rate, "lr_final": config.final_learning_rate}
    for key, ours in pairs.items():
        assert args[key] == ours, (name, key, args[key], ours)
    assert config.lr_decay == 1.0 and not args.get("validation_size") and config.validation_size == 0
    assert args["ode_steps"] == 4 and args["ode_t1"] == 1.0 and not args.get("train_size")


def test_the_shipped_zoo_is_the_table():
    models = manifest_models()
    assert set(models) == set(entries.ENTRIES)
    for name, entry in models.items():
        assert entry["dataset"] == entries.ENTRIES[name].dataset, name
        assert entry["family"] == entries.ENTRIES[name].family, name
        assert entry["certified"] == entries.ENTRIES[name].certified, name
        assert os.path.isfile(os.path.join(ROOT, "zoo", entry["card"])), name


def test_no_shipped_entry_is_superseded():
    assert zoo.superseded(manifest_models()) == {}


def test_each_retired_entry_was_superseded_by_the_entry_named():
    """The retired entries' last manifest metrics are their study runs' results: the
    entry named must beat them within the tolerance at every radius."""
    models = manifest_models()
    retired_runs = {"stable_node_certified_mnist_eps0p8": "ortho_stableconv_mnist_lmce08",
                    "stable_node_certified_fashion_mnist_eps0p05_t0p1_d256":
                        "ortho_stableconv_fashion_lmce005_T01_d256"}
    assert set(retired_runs) == set(entries.RETIRED)
    for name, run in retired_runs.items():
        with open(os.path.join(ROOT, "docs", "results", "certified", f"{run}.json")) as f:
            result = json.load(f)
        metrics = {"test_accuracy": result["clean_accuracy"],
                   **{f"certified_l2_{float(r):g}": v for r, v in result["certified_accuracy_pairwise"].items()}}
        by = entries.RETIRED[name]
        retired = {"family": models[by]["family"], "dataset": models[by]["dataset"], "metrics": metrics}
        assert zoo.superseded({name: retired, by: models[by]}) == {name: by}


def test_certified_radii_cover_the_anchor_rows():
    from zoo import certified_profile

    for dataset, rows in certified_profile.ANCHORS.items():
        for row in rows.values():
            assert {r for r in row if r} <= set(entries.CERTIFIED_RADII[dataset]), dataset


def test_an_anchor_shortfall_is_any_radius_below_or_unmeasured():
    from zoo import certified_profile

    row = {0: 0.9, 0.5: 0.6, 1.0: 0.3}
    even = {"test_accuracy": 0.9, "certified_l2_0.5": 0.6, "certified_l2_1": 0.3}
    assert certified_profile.shortfalls(even, row) == {}
    assert certified_profile.shortfalls(dict(even, certified_l2_1=0.2999), row) == {1.0: (0.2999, 0.3)}
    del even["certified_l2_0.5"]
    assert certified_profile.shortfalls(even, row) == {0.5: (None, 0.6)}
