"""Smoke tests of docs/figures.py: every figure function runs on tiny inputs.

The toy figures train for one epoch on a few dozen points (``size="quick"``);
the accuracy figures read synthetic ``evaluation.json`` files written here in
a temporary directory (never the committed figures' data).
"""

import importlib.util
import json
import os

import numpy as np
import pytest

pytest.importorskip("matplotlib", reason="docs/figures.py needs the 'plots' extra (matplotlib)")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def figures():
    spec = importlib.util.spec_from_file_location(
        "docs_figures", os.path.join(ROOT, "docs", "figures.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def assert_png(path):
    assert os.path.getsize(path) > 10_000, f"{path} is suspiciously small"
    with open(path, "rb") as f:
        assert f.read(8) == PNG_SIGNATURE


def test_list_names_every_figure(figures, capsys):
    assert figures.main(["--list"]) == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert listed == list(figures.FIGURES)
    assert {"toy_trajectories", "bsm_training", "accuracy_vs_noise",
            "accuracy_vs_attack"} <= set(listed)


def test_double_circles_lift_zero_pads_the_middle_coordinates(figures):
    points, labels = figures.double_circles(40, seed=0)
    radius = np.linalg.norm(points, axis=1)
    for ring_radius, label in figures.RINGS:
        assert np.all(np.abs(radius[labels == label] - ring_radius) <= 0.3 * np.sqrt(2) + 1e-6)
    state = figures.lift(points)
    assert state.shape == (40, figures.STATE_SIZE)
    np.testing.assert_array_equal(state[:, 1:-1], 0.0)
    np.testing.assert_array_equal(state[:, [0, -1]], points)


def test_toy_figures_write_pngs(figures, tmp_path):
    values = figures.toy_trajectories(str(tmp_path / "toy.png"), size="quick")
    assert_png(tmp_path / "toy.png")
    # The CH-NODE block is certified non-expansive, so no measured ratio exceeds the bound.
    assert values["chnode/certified_lipschitz_bound"] <= 1.0
    assert values["chnode/ratio_p100"] <= values["chnode/certified_lipschitz_bound"] * (1 + 1e-4)
    values = figures.bsm_training(str(tmp_path / "bsm.png"), size="quick")
    assert_png(tmp_path / "bsm.png")
    assert values["chnode/max_bsm"] <= 1.0 + 1e-5


def test_stabilized_figure_measured_ratios_stay_below_the_certificate(figures, tmp_path):
    values = figures.lipschitz_vs_delta_bar(str(tmp_path / "lip.png"), size="quick")
    assert_png(tmp_path / "lip.png")
    for delta_bar in figures.STABILIZED["quick"]["delta_bars"]:
        tag = f"delta_bar={delta_bar:g}"
        certified = values[f"{tag}/certified_map"]
        assert certified <= values[f"{tag}/design_bound"] * (1 + 1e-6)
        assert values[f"{tag}/adversarial_pairs"] <= certified * (1 + 1e-4)
        assert values[f"{tag}/random_pairs"] <= certified * (1 + 1e-4)


def synthetic_metrics(accuracy_drop, **extra):
    """zoo/manifest.json metrics in zoo/build.py's format: accuracy falls linearly."""
    metrics = {"test_accuracy": 0.95}
    for kind in ("gaussian", "salt_pepper"):
        for level in (0.05, 0.2):
            metrics[f"{kind}_{level:g}"] = 0.95 - accuracy_drop * level
            metrics[f"{kind}_{level:g}_std"] = 0.01
    metrics["standard_clean"] = 0.96
    for norm, scale in (("linf", 1.0), ("l2", 0.1)):
        for eps in (0.05, 0.1) if norm == "linf" else (1.0, 1.58):
            metrics[f"standard_{norm}_{eps:g}"] = max(0.0, 0.96 - accuracy_drop * scale * eps)
    metrics["masking"] = "no gradient masking detected"
    return dict(metrics, **extra)


def write_manifest(path, models):
    path.write_text(json.dumps({"format_version": 1, "models": {
        name: {"metrics": metrics} for name, metrics in models.items()}}))
    return str(path)


def test_accuracy_figures_plot_the_manifest_s_metrics(figures, tmp_path):
    manifest = write_manifest(tmp_path / "manifest.json", {
        "chnode_mnist_n4": synthetic_metrics(0.5),
        "resnet_mnist_n8": synthetic_metrics(2.0, seed=3, seeds_finished=5),
        "stable_node_fashion_mnist": synthetic_metrics(1.0),
        "stable_node_certified_mnist_eps1_d256": {"test_accuracy": 0.9, "certified_l2_1": 0.5}})
    assert sorted(figures.zoo_metrics(manifest)) == [
        "chnode_mnist_n4", "resnet_mnist_n8", "stable_node_fashion_mnist"]
    values = figures.accuracy_vs_noise(str(tmp_path / "noise.png"), manifest=manifest)
    assert_png(tmp_path / "noise.png")
    assert values["resnet_mnist_n8/gaussian_0.2"] == pytest.approx(0.95 - 2.0 * 0.2)
    assert values["chnode_mnist_n4/salt_pepper_0"] == pytest.approx(0.95)
    values = figures.accuracy_vs_attack(str(tmp_path / "attack.png"), manifest=manifest)
    assert_png(tmp_path / "attack.png")
    assert values["resnet_mnist_n8/standard_linf_0"] == pytest.approx(0.96)  # clean, attacked images
    assert values["resnet_mnist_n8/standard_linf_0.1"] == pytest.approx(0.96 - 2.0 * 0.1)
    assert values["chnode_mnist_n4/standard_l2_1.58"] == pytest.approx(0.96 - 0.5 * 0.1 * 1.58)


def test_metric_series_gives_levels_means_and_draw_stds(figures):
    levels, means, stds = figures.metric_series(synthetic_metrics(1.0), "gaussian")
    np.testing.assert_allclose(levels, [0.0, 0.05, 0.2])
    np.testing.assert_allclose(means, [0.95, 0.90, 0.75])
    np.testing.assert_allclose(stds, [0.0, 0.01, 0.01])
    levels, _, _ = figures.metric_series({"standard_clean": 0.9, "standard_linf_0.1": 0.5}, "standard_linf")
    np.testing.assert_allclose(levels, [0.0, 0.1])


def test_the_accuracy_figures_plot_every_reference_entry_the_zoo_ships(figures):
    from zoo import entries

    with open(figures.MANIFEST) as f:
        shipped = set(json.load(f)["models"]) & {n for n, e in entries.ENTRIES.items() if e.profile == "reference"}
    assert shipped and set(figures.zoo_metrics()) == shipped


def test_accuracy_figures_explain_a_missing_manifest(figures, tmp_path):
    with pytest.raises(FileNotFoundError, match="zoo/build.py"):
        figures.accuracy_vs_noise(str(tmp_path / "noise.png"), manifest=str(tmp_path / "none.json"))
    empty = write_manifest(tmp_path / "manifest.json", {"x": {"test_accuracy": 0.9}})
    with pytest.raises(FileNotFoundError, match="zoo/build.py"):
        figures.accuracy_vs_attack(str(tmp_path / "attack.png"), manifest=empty)


def test_certified_l2_figure_reads_zoo_tables_and_skips_others(figures, tmp_path):
    from contractive_keras.robustness import RobustnessTable, Row

    results = tmp_path / "l2"
    results.mkdir()
    for name, certified in (("stable_node_mnist", 0.7), ("not_a_zoo_model", 0.9)):
        rows = [Row.from_draws("clean", 0.0, None, [0.96])]
        for eps in (0.1, 0.25):
            rows.append(Row.from_draws("worst_case", eps, "l2", [0.9 - eps]))
            rows.append(Row.from_draws("certified", eps, "l2", [certified - eps]))
        (results / f"{name}.json").write_text(json.dumps(RobustnessTable(rows).to_dict()))
    values = figures.certified_accuracy_l2(str(tmp_path / "l2.png"), results_dir=str(results))
    assert_png(tmp_path / "l2.png")
    assert values["stable_node_mnist/certified_0.25"] == pytest.approx(0.45)
    assert values["stable_node_mnist/worst_case_0"] == pytest.approx(0.96)
    assert not any(key.startswith("not_a_zoo_model") for key in values)
    with pytest.raises(FileNotFoundError, match="reproduction.md"):
        figures.certified_accuracy_l2(str(tmp_path / "x.png"), results_dir=str(tmp_path / "none"))


def write_seed_run(directory, cell, seed, clean, noise_drop, curve=None):
    """A per-seed result JSON with what the seed figure reads (zoo/seeds.py's format)."""
    hamiltonian = "_n" in cell
    block = {"clean": clean, "fgsm_linf_0.05": clean - 0.3}
    for kind in ("gaussian", "salt_pepper"):
        for level in (0.05, 0.2):
            block[f"{kind}_{level:g}"] = clean - noise_drop * level
    block["noise_mean"] = float(np.mean([block[k] for k in block if "_0." in k and "fgsm" not in k]))
    run = {"cell": cell, "seed": seed, "validation": block, "test": block,
           "selection_score": block["noise_mean" if hamiltonian else "fgsm_linf_0.05"]}
    if curve is not None:
        run["test_fgsm_curve"] = curve
    with open(os.path.join(directory, f"{cell}_seed{seed}.json"), "w") as f:
        json.dump(run, f)


def test_seed_figure_is_the_mean_and_sample_std_over_seeds(figures, tmp_path):
    for seed, clean in enumerate((0.90, 0.94)):
        write_seed_run(tmp_path, "chnode_mnist_n4", seed, clean, noise_drop=1.0)
        write_seed_run(tmp_path, "node_mnist", seed, clean, noise_drop=0.5,
                       curve={"0.01": clean - 0.05, "0.1": clean - 0.5})
    write_seed_run(tmp_path, "node_fashion_mnist", 0, 0.85, noise_drop=0.5)  # no curve yet
    values = figures.seed_spread(str(tmp_path / "seeds.png"), seeds_dir=str(tmp_path))
    assert_png(tmp_path / "seeds.png")
    assert values["chnode_mnist_n4/gaussian_0.2"] == pytest.approx(0.92 - 0.2)
    assert values["chnode_mnist_n4/gaussian_0.2_std"] == pytest.approx(np.std([0.9, 0.94], ddof=1))
    assert values["node_mnist/fgsm_0.1"] == pytest.approx(0.42)
    assert values["node_mnist/fgsm_0_std"] == pytest.approx(np.std([0.9, 0.94], ddof=1))
    assert not any(key.startswith("node_fashion_mnist/") for key in values)
    with pytest.raises(FileNotFoundError, match="zoo/seeds.py"):
        figures.seed_spread(str(tmp_path / "none.png"), seeds_dir=str(tmp_path / "missing"))


def test_accuracy_table_rows_follow_the_legend_order(figures, tmp_path):
    manifest = write_manifest(tmp_path / "manifest.json", {
        "resnet_mnist_n8": synthetic_metrics(2.0), "chnode_mnist_n4": synthetic_metrics(0.5)})
    lines = figures.accuracy_table(manifest).splitlines()
    assert [line.split(" | ")[0] for line in lines[2:]] == ["| chnode_mnist_n4", "| resnet_mnist_n8"]
    assert lines[3] == ("| resnet_mnist_n8 | 95.00 | 85.00 ± 1.00 | 55.00 ± 1.00 | 85.00 ± 1.00 | "
                        "55.00 ± 1.00 | 86.0 / 76.0 | 76.0 / 64.4 | ok |")


def test_figures_md_quotes_the_accuracy_table(figures):
    with open(os.path.join(os.path.dirname(figures.MANIFEST), "..", "docs", "figures.md")) as f:
        assert figures.accuracy_table() in f.read(), "regenerate: python docs/figures.py --accuracy_table"
