"""zoo/seed_table.py: the seed tables of issue 17 (summaries, validation-only
selection, CH-NODE margins, markdown, CLI), on synthetic run JSONs."""

import importlib
import json
import os

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NOISE = ("gaussian_0.05", "gaussian_0.2", "salt_pepper_0.05", "salt_pepper_0.2")


@pytest.fixture(scope="module")
def table():
    return importlib.import_module("zoo.seed_table")


def block(base):
    """A validation / test block whose numbers derive from ``base``."""
    b = {k: base + 0.01 * i for i, k in enumerate(NOISE)}
    b.update({f"{k}_std": 0.004 for k in NOISE}, clean=base + 0.1, **{"fgsm_linf_0.05": base - 0.05})
    b["noise_mean"] = float(np.mean([b[k] for k in NOISE]))
    return b


def run(cell, seed, val=0.5, test=0.5, train=0.9):
    """A run JSON like zoo/seeds.py writes, with its selection score from validation."""
    hamiltonian = "_n" in cell
    validation = block(val)
    return {"cell": cell, "seed": seed, "model": cell.split("_mnist")[0].split("_fashion")[0],
            "selection_score": validation["noise_mean" if hamiltonian else "fgsm_linf_0.05"],
            "validation": validation, "test": block(test), "train_accuracy": train,
            "train_seconds": 1.0, "code_commit": "0" * 40}


def write(directory, r, name=None):
    with open(os.path.join(directory, name or f"{r['cell']}_seed{r['seed']}.json"), "w") as f:
        json.dump(r, f)


def test_cells_are_the_seed_cells_of_the_entry_table(table):
    from zoo import entries, seeds

    seed_cells = [n for n, e in entries.ENTRIES.items() if e.seed_cell]
    assert list(table.CELLS) == list(seeds.CELLS) and set(table.CELLS) == set(seed_cells)
    assert all(seeds.CELLS[c] == entries.ENTRIES[c].flags for c in seed_cells)
    assert set(table.HAMILTONIAN_CELLS) | set(table.NODE_CELLS) == set(table.CELLS)
    assert {entries.ENTRIES[c].model for c in table.HAMILTONIAN_CELLS} == set(entries.HAMILTONIAN_MODELS)


def test_summary_is_mean_and_sample_std(table, tmp_path):
    trains, tests = [0.91, 0.95, 0.88], [0.60, 0.72, 0.65]
    for seed, (tr, te) in enumerate(zip(trains, tests)):
        write(tmp_path, run("chnode_mnist_n4", seed, test=te, train=tr))
    runs = table.load_runs(tmp_path)
    assert [r["seed"] for r in runs["chnode_mnist_n4"]] == [0, 1, 2]
    s = table.cell_summary(runs["chnode_mnist_n4"])
    assert s["train"] == {"mean": np.mean(trains), "std": np.std(trains, ddof=1), "n": 3}
    clean = np.array(tests) + 0.1
    assert s["test"]["mean"] == pytest.approx(np.mean(clean), abs=0, rel=1e-15)
    assert s["test"]["std"] == pytest.approx(np.std(clean, ddof=1), rel=1e-12)
    fgsm = np.array(tests) - 0.05
    assert s["FGSM 0.05"]["std"] == pytest.approx(np.std(fgsm, ddof=1), rel=1e-12)
    assert s["noise mean"]["n"] == 3


def test_one_seed_has_no_std(table):
    s = table.cell_summary([run("node_mnist", 0)])
    assert all(q["std"] is None and q["n"] == 1 for q in s.values())


def test_selection_depends_on_validation_only(table):
    runs = [run("resnet_mnist_n8", k, val=v, test=t)
            for k, (v, t) in enumerate([(0.40, 0.30), (0.45, 0.35), (0.42, 0.50)])]
    assert table.select(runs)["seed"] == 1
    runs[0]["test"] = block(0.99)  # test numbers move: the choice does not
    runs[2]["test"]["noise_mean"] = 0.999
    assert table.select(runs)["seed"] == 1
    runs[2]["selection_score"] = 0.5  # validation score moves: the choice does
    assert table.select(runs)["seed"] == 2
    runs[0]["selection_score"] = runs[1]["selection_score"] = runs[2]["selection_score"]
    assert table.select(runs)["seed"] == 0  # ties: lowest seed


def test_rank_and_test_spread(table):
    """Hamiltonian cells rank by test noise_mean, NODE cells by test FGSM 0.05."""
    runs = [run("hdnn_mnist_n4", k, val=v, test=t)
            for k, (v, t) in enumerate([(0.1, 0.50), (0.9, 0.40), (0.2, 0.60), (0.3, 0.30)])]
    s = table.select(runs)
    noise = [r["test"]["noise_mean"] for r in runs]
    assert (s["seed"], s["rank"], s["n"], s["score"]) == (1, 3, 4, "noise_mean")
    assert s["test_score"] == runs[1]["test"]["noise_mean"]
    assert (s["test_min"], s["test_median"], s["test_max"]) == (min(noise), np.median(noise), max(noise))
    node = [run("stable_node_fashion_mnist", k, val=v, test=t)
            for k, (v, t) in enumerate([(0.5, 0.2), (0.4, 0.3), (0.3, 0.1)])]
    s = table.select(node)
    assert (s["seed"], s["rank"], s["score"]) == (0, 2, "fgsm_linf_0.05")
    assert s["test_median"] == pytest.approx(0.2 - 0.05)


def test_margins_against_the_better_baseline(table):
    def selected(cell, test):
        return table.select([run(cell, 0, test=test)])

    sel = {"chnode_mnist_n4": selected("chnode_mnist_n4", 0.80), "hdnn_mnist_n4": selected("hdnn_mnist_n4", 0.40),
           "resnet_mnist_n4": selected("resnet_mnist_n4", 0.70), "chnode_mnist_n8": selected("chnode_mnist_n8", 0.9),
           "hdnn_mnist_n8": selected("hdnn_mnist_n8", 0.3)}
    margins = table.chnode_margins(sel)
    assert margins[4] == pytest.approx(0.10)
    assert margins[8] is None and margins[12] is None
    assert "N = 4: +10.0 points (meets >= 5)" in "\n".join(table.margin_lines(margins))


def test_mislabelled_or_duplicate_file_is_refused(table, tmp_path):
    write(tmp_path, run("hdnn_mnist_n8", 1), name="hdnn_mnist_n8_seed2.json")
    with pytest.raises(ValueError, match="hdnn_mnist_n8_seed2.json"):
        table.load_runs(tmp_path)
    os.remove(tmp_path / "hdnn_mnist_n8_seed2.json")
    write(tmp_path, run("hdnn_mnist_n8", 1), name="resnet_mnist_n8_seed1.json")
    with pytest.raises(ValueError, match="resnet_mnist_n8_seed1.json"):
        table.load_runs(tmp_path)
    with pytest.raises(ValueError, match="b.json: duplicate of a.json"):
        table.group_by_cell([("a.json", run("node_mnist", 0)), ("b.json", run("node_mnist", 0))])


def test_selection_score_must_be_the_validation_rule(table, tmp_path):
    r = run("node_mnist", 0)
    r["selection_score"] = r["test"]["fgsm_linf_0.05"] + 0.01
    write(tmp_path, r)
    with pytest.raises(ValueError, match="node_mnist_seed0.json"):
        table.load_runs(tmp_path)


def test_markdown_has_mean_std_cells_and_missing_rows(table, tmp_path):
    for seed in range(2):
        write(tmp_path, run("chnode_mnist_n12", seed, val=0.4 + 0.1 * seed, test=0.5 + 0.1 * seed))
    write(tmp_path, run("node_fashion_mnist", 0, test=0.6))
    runs = table.load_runs(tmp_path)
    text = table.markdown_tables({c: table.cell_summary(r) for c, r in runs.items()},
                                 {c: table.select(r) for c, r in runs.items()})
    assert "| CH-NODE | 12 | 2 | 90.0 ± 0.0 | 65.0 ± 7.1 |" in text
    assert "| NODE | Fashion-MNIST | 1 | 90.0 | 70.0 |" in text
    assert "| H-DNN | 12 | 0 | missing |" in text
    assert "| chnode_mnist_n12 | noise_mean | 1 | " in text and "| 1 / 2 |" in text
    assert "| resnet_mnist_n4 | noise_mean | missing |" in text


def test_cli_on_the_repository_results(table, capsys):
    assert table.main([f"--results_dir={os.path.join(ROOT, 'docs', 'results', 'seeds')}"]) == 0
    out = capsys.readouterr().out
    assert "Table 1" in out and "Selection (validation only)" in out and "CH-NODE margin" in out


def test_fgsm_at_clean_accuracy_is_flagged_as_masking(table):
    masked = run("chnode_mnist_n4", 0)
    masked["test"]["fgsm_linf_0.05"] = masked["test"]["clean"] - 0.005
    honest = run("hdnn_mnist_n4", 0)  # FGSM 15 points below clean (block())
    runs = {"chnode_mnist_n4": [masked], "hdnn_mnist_n4": [honest]}
    assert table.masking_suspects(runs) == [masked]
    [head, line] = table.masking_lines(runs)
    assert "gradient masking" in head and line.startswith("  chnode_mnist_n4 seed 0: FGSM 59.5 vs clean 60.0")
    assert table.masking_lines({"hdnn_mnist_n4": [honest]})[0].startswith("No run")


def test_fgsm_curves_are_mean_and_sample_std_over_the_seeds_that_have_one(table):
    runs = {"node_mnist": [dict(run("node_mnist", 0), test_fgsm_curve={"0.01": 0.9, "0.1": 0.2}),
                           dict(run("node_mnist", 1), test_fgsm_curve={"0.01": 0.8, "0.1": 0.4}),
                           run("node_mnist", 2)]}
    lines = table.fgsm_curve_table(runs)
    assert lines[2] == "| model | dataset | seeds n | FGSM 0.01 | FGSM 0.1 |"
    row = next(line for line in lines if line.startswith("| NODE | MNIST |"))
    assert row == f"| NODE | MNIST | 2 | 85.0 ± {100 * np.std([0.9, 0.8], ddof=1):.1f} | 30.0 ± 14.1 |"
    assert "| stable NODE | Fashion-MNIST | 0 | missing | missing |" in lines


def test_time_lines_add_training_and_evaluation_wall_time(table, tmp_path):
    write(tmp_path, dict(run("chnode_mnist_n4", 0), train_wall_seconds=3000.0, eval_seconds=600.0))
    write(tmp_path, dict(run("chnode_mnist_n4", 1), eval_seconds=1799.0))  # no wall time: train_seconds
    write(tmp_path, dict(run("node_mnist", 0), train_wall_seconds=3600.0))
    lines = table.time_lines(table.load_runs(tmp_path))
    assert "  chnode_mnist_n4: 2 runs, 1.50 h" in lines
    assert "  node_mnist: 1 runs, 1.00 h" in lines
    assert lines[-1] == "  all: 3 runs, 2.50 h"


def test_shipped_seed_is_the_seed_of_a_seed_chosen_entry_only(table):
    assert table.shipped_seed({"seed": 3, "seeds_finished": 5, "test_accuracy": 0.9}) == 3
    assert table.shipped_seed({"seed": 0, "test_accuracy": 0.9}) is None
    assert table.shipped_seed({}) is None


def test_build_s_seed_run_directory_is_seed_table_s(table):
    build = importlib.import_module("zoo.build")
    assert build.run_dir("x", {"cell": "resnet_mnist_n8", "seed": 3}) == table.seed_run_dir(
        build.SEED_RUNS_DIR, "resnet_mnist_n8", 3) == os.path.join(build.SEED_RUNS_DIR, "resnet_mnist_n8", "seed3")


def test_published_table_puts_ours_over_seeds_beside_each_published_row(table, tmp_path):
    for seed in range(2):
        write(tmp_path, run("hdnn_mnist_n8", seed, test=0.5 + 0.1 * seed, train=0.9))
    write(tmp_path, run("chnode_mnist_n4", 0, test=0.6, train=0.95))
    runs = table.load_runs(tmp_path)
    standard = {"chnode_mnist_n4": {"standard_linf_0.05": 0.165, "masking": "gradient masking detected"}}
    lines = table.published_table({c: table.cell_summary(r) for c, r in runs.items()}, standard).splitlines()
    # header, rule, then a published and an ours row per cell, in the paper's order
    assert len(lines) == 2 + 2 * len(table.HAMILTONIAN_CELLS)
    assert lines[2].startswith("| 4 | ResNet-ODE | published | 98.91 | 97.01 | 63.00 |") and lines[2].endswith("| - | - |")
    assert lines[3] == "| 4 | ResNet-ODE | ours | " + " | ".join(["missing"] * 8) + " |"
    assert "| 4 | CH-NODE | ours, 1 seed | 95.0 | 70.0 | 60.0 | 61.0 | 62.0 | 63.0 | 16.5 | masked |" in lines
    hdnn = next(line for line in lines if line.startswith("| 8 | H-DNN | ours, 2 seeds |"))
    assert hdnn.endswith("| - | - |")  # no shipped entry: no attack cells
    # two seeds: mean ± sample std (test clean 60 and 70 -> 65.0 ± 7.1)
    assert "| 8 | H-DNN | ours, 2 seeds | 90.0 ± 0.0 | 65.0 ± 7.1 |" in "\n".join(lines)
    assert all(line.count("|") == lines[0].count("|") for line in lines)


def test_published_cli_prints_only_table_1(table, capsys):
    assert table.main(["--published"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("| N | model |") and "Selection" not in out


def test_per_seed_table_bolds_the_validation_choice_not_the_test_best(table, tmp_path):
    # seed 1 wins on validation, seed 0 on test: the bold goes to seed 1
    write(tmp_path, run("chnode_mnist_n8", 0, val=0.40, test=0.80))
    write(tmp_path, run("chnode_mnist_n8", 1, val=0.70, test=0.60))
    write(tmp_path, run("hdnn_mnist_n4", 2, val=0.5, test=0.5))
    runs = table.load_runs(tmp_path)
    text = table.per_seed_table(runs, {c: table.select(r) for c, r in runs.items()})
    lines = text.splitlines()
    assert lines[0] == "| N | model | seed 0 | seed 1 | seed 2 | chosen on validation |"
    noise_mean = lambda base: 100 * block(base)["noise_mean"]  # noqa: E731
    assert f"| 8 | CH-NODE | {noise_mean(0.80):.1f} | **{noise_mean(0.60):.1f}** | - | seed 1 |" in lines
    assert "| 4 | H-DNN | - | - | **51.5** | seed 2 |" in lines
    assert "| 12 | ResNet-ODE | - | - | - | - |" in lines
