#!/usr/bin/env python3
"""The zoo's write side: trains, evaluates and exports every entry; every number is regenerated.

    python zoo/build.py                       # every entry, resuming where it stopped
    python zoo/build.py chnode_mnist_n4       # some entries
    python zoo/build.py --list                # the entries and their status
    python zoo/build.py --from_seeds          # ship each seed cell's seed chosen on validation
    python zoo/build.py --readme_table        # the README's zoo tables, from zoo/manifest.json
    python zoo/build.py --anchors             # the certified entries against the anchor rows

The entries are zoo/entries.py's table: each is a train.py call and an
evaluation profile. For each entry, resumable stages (a finished one is skipped):

1. train: ``python train.py <the entry's flags> --seed=0 --model_dir=runs/zoo/<name>
   --export`` (train.py itself resumes from its checkpoints after a kill);
2. evaluate, written to ``runs/zoo/<name>/evaluation.json``:
   profile "reference": ``contractive_keras.robustness.evaluate`` on the
   test set: clean accuracy, the reference noise protocol (10 draws), FGSM,
   and on the first ``--pgd_take`` test images PGD (40 steps); certified
   accuracy from the model's certified Lipschitz bound; the clean accuracy on
   the training set. Profile "certified" (zoo/certified_profile.py):
   certified L2 accuracy on the full test set at the dataset's radii with
   ``certify.certified_radius``, and a PGD-L2 falsification check on the first
   ``--pgd_take`` test images that refuses to go on if it breaks a certified point;
3. export: ``zoo/<name>/`` (model.keras, saved_model.tar.gz, README.md model
   card) and the entry of ``zoo/manifest.json`` with sha256 and metrics
   (``zoo/export_entry.py``).

``--stages=card`` rewrites only the model card from the evaluated run.
``--stages=attack`` runs the standard worst-case attack on the exported
entry (``zoo/standard_attack.py``: APGD-CE, APGD-T and Square, with the
gradient-masking checks), writes ``docs/results/standard/<name>.json``, its
manifest metrics and the card's attack section.

With ``--from_seeds`` a seed cell (the nine Table 1 cells and the four NODE
cells) ships the seed chosen on validation data instead of the seed-0 run:
the train stage runs ``zoo/seeds.py --only=<cell>`` (five seeds on the
55,000-image training split), the chosen seed is ``zoo/seed_table.py``'s
(highest validation score; the test set never chooses), and the evaluate
and export stages act on ``runs/seeds/<cell>/seed<K>``.

Models are loaded with ``contractive_keras.robustness.load_model``, the
loader the evaluation command uses.
"""

import argparse
import json
import os
import subprocess
import sys
import time

# NumPy's certificate computations (many small eigen-decompositions) run
# 20-90x slower with multi-threaded OpenBLAS beside TensorFlow's own threads;
# must be set before NumPy is imported.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ZOO_DIR = os.path.join(ROOT, "zoo")
RUNS_DIR = os.path.join(ROOT, "runs", "zoo")
SEED_RUNS_DIR = os.path.join(ROOT, "runs", "seeds")
SEED_RESULTS_DIR = os.path.join(ROOT, "docs", "results", "seeds")
sys.path.insert(0, ROOT)

from zoo import standard_attack  # noqa: E402  (the attack stage)
from zoo import certified_profile  # noqa: E402  (the certified evaluation profile)
from zoo.entries import ENTRIES, TITLES, train_flags  # noqa: E402  (the one entry table)

EPS = (0.05, 0.1, 0.2, 0.3)

_TABLE_KEYS = ("train_accuracy", "test_accuracy", "gaussian_0.05", "gaussian_0.2",
               "salt_pepper_0.05", "salt_pepper_0.2")


def log(message):
    print(f"[zoo/build] {message}", flush=True)


def run_dir(name, selection=None):
    """``runs/zoo/<name>``, or the chosen seed's ``runs/seeds/<cell>/seed<K>`` (``--from_seeds``)."""
    from zoo import seed_table

    if selection is None:
        return os.path.join(RUNS_DIR, name)
    return seed_table.seed_run_dir(SEED_RUNS_DIR, selection["cell"], selection["seed"])


def seed_selection(name, min_seeds, results_dir=None):
    """``zoo/seed_table.select`` for seed cell ``name``: the seed its validation score chooses.

    Raises:
        ValueError: ``name`` is not a seed cell, or fewer than ``min_seeds``
            of its seeds are finished.
    """
    from zoo import seed_table

    if name not in seed_table.CELLS:
        raise ValueError(f"{name} is not a seed cell of zoo/seeds.py; --from_seeds applies to "
                         f"{', '.join(seed_table.CELLS)}")
    runs = seed_table.load_runs(results_dir or SEED_RESULTS_DIR).get(name, [])
    if len(runs) < min_seeds:
        raise ValueError(f"{name}: {len(runs)} of the {min_seeds} seeds --min_seeds asks for are "
                         f"finished; run python zoo/seeds.py --only={name}")
    return seed_table.select(runs)


def train_command(name):
    return ["train.py", *train_flags(name), "--seed=0", "--export", "--verbose=2", f"--model_dir=runs/zoo/{name}"]


# --- stages --------------------------------------------------------------------


def stage_train(name):
    summary = os.path.join(run_dir(name), "summary.json")
    if os.path.isfile(summary) and os.path.isfile(os.path.join(run_dir(name), "export", "model.keras")):
        log(f"{name}: trained (summary.json present)")
        return
    command = [sys.executable, *train_command(name)]
    log(f"{name}: training: {' '.join(command[1:])}")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
    subprocess.run(command, cwd=ROOT, env=env, check=True)


def stage_train_seeds(name):
    """Every seed of cell ``name``: ``zoo/seeds.py --only=<name>`` (resumable, one process per run)."""
    command = [sys.executable, os.path.join("zoo", "seeds.py"), f"--only={name}"]
    log(f"{name}: training and evaluating its seeds: {' '.join(command[1:])}")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
    subprocess.run(command, cwd=ROOT, env=env, check=True)


def load_trained(name, selection=None):
    """The trained model of an entry, ``<run_dir>/export/model.keras``."""
    from contractive_keras.robustness import load_model

    return load_model(os.path.join(run_dir(name, selection), "export", "model.keras"))


def certificate(model):
    """``(certify.summary(model), certified L2 Lipschitz bound of the logits or None)``.

    The bound is ``certify.lipschitz_bound(model).value``; a model it cannot
    certify gets ``certify_error`` (the first line of the reason) instead.
    """
    from contractive_keras import certify

    values, lipschitz = {}, None
    try:
        values.update(certify.summary(model))
        lipschitz = float(certify.lipschitz_bound(model).value)
    except (ValueError, TypeError, NotImplementedError) as e:
        values["certify_error"] = str(e).splitlines()[0]
    return values, lipschitz


def stage_evaluate(name, pgd_take, draws, selection=None):
    """Writes ``<run_dir>/evaluation.json``; a seed run's train accuracy is on its 55,000 images."""
    path = os.path.join(run_dir(name, selection), "evaluation.json")
    if os.path.isfile(path):
        log(f"{name}: evaluated ({path})")
        return
    from contractive_keras import data, robustness

    entry = ENTRIES[name]
    model = load_trained(name, selection)
    if entry.profile == "certified":
        log(f"{name}: certified radii on the test set, PGD-L2 falsification on the first {pgd_take}")
        t0 = time.perf_counter()
        result = certified_profile.evaluate(name, model, attack_take=pgd_take)
        result["seconds"] = time.perf_counter() - t0
        _write_json(path, result)
        return
    x_test, y_test = data.load_numpy(entry.dataset, "test")
    x_train, y_train = data.load_numpy(entry.dataset, "train")
    if selection is not None:
        from zoo.seeds import TRAIN_SIZE

        x_train, y_train = x_train[:TRAIN_SIZE], y_train[:TRAIN_SIZE]
    certificate_values, lipschitz = certificate(model)
    t0 = time.perf_counter()
    log(f"{name}: noise, FGSM and certified accuracy on {len(y_test)} test images")
    full = robustness.evaluate(model, (x_test, y_test), attacks=("fgsm",), eps=EPS, draws=draws,
                               normalization=robustness.model_normalization(model),
                               lipschitz_constant=lipschitz, verbose=0)
    log(f"{name}: FGSM and PGD (and their union) on the first {pgd_take} test images")
    pgd = robustness.evaluate(model, (x_test[:pgd_take], y_test[:pgd_take]), attacks=("fgsm", "pgd"),
                              eps=EPS, noise=(), draws=1, verbose=0)
    first500 = robustness.evaluate(model, (x_test[:500], y_test[:500]), attacks=(), noise=(), draws=1)
    train_accuracy = robustness.evaluate(model, (x_train, y_train), attacks=(), noise=(), draws=1)
    result = {
        "test": full.to_dict(),
        "pgd_subset": pgd.to_dict(),
        "pgd_take": pgd_take,
        "test_accuracy_first500": first500.lookup("clean", 0.0).mean,
        "train_accuracy": train_accuracy.lookup("clean", 0.0).mean,
        "train_images": len(y_train),
        "certificate": certificate_values,
        "lipschitz_l2": lipschitz,
        "seconds": time.perf_counter() - t0,
    }
    _write_json(path, result)


def _write_json(path, result):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".tmp", "w") as f:
        json.dump(result, f, indent=2, default=float)
    os.replace(path + ".tmp", path)


def _rows(table_dict):
    return table_dict["rows"]


def metrics_of(name, selection=None):
    with open(os.path.join(run_dir(name, selection), "evaluation.json")) as f:
        evaluation = json.load(f)
    with open(os.path.join(run_dir(name, selection), "summary.json")) as f:
        summary = json.load(f)
    if evaluation.get("profile") == "certified":
        metrics = dict(evaluation["metrics"])
        _add_timings(metrics, summary)
        return metrics, evaluation, summary
    metrics = {
        "test_accuracy": None,
        "test_accuracy_first500": evaluation["test_accuracy_first500"],
        "train_accuracy": evaluation["train_accuracy"],
    }
    for table in (evaluation["test"], evaluation["pgd_subset"]):
        subset = table is evaluation["pgd_subset"]
        for row in _rows(table):
            kind, level = row["kind"], row["level"]
            if kind == "clean":
                if not subset:
                    metrics["test_accuracy"] = row["mean"]
                continue
            if subset and kind == "fgsm":
                continue  # the full-test-set FGSM row is reported
            key = f"{kind}_{level:g}" if row.get("norm") is None else f"{kind}_{row['norm']}_{level:g}"
            metrics[key] = row["mean"]
            if row.get("std"):
                metrics[key + "_std"] = row["std"]
    if evaluation.get("lipschitz_l2") is not None:
        metrics["lipschitz_l2"] = evaluation["lipschitz_l2"]
    for key, value in evaluation["certificate"].items():
        if isinstance(value, (int, float)):
            metrics[f"certificate/{key}"] = value
    _add_timings(metrics, summary)
    if selection is not None:
        metrics.update({"seed": selection["seed"], "seeds_finished": selection["n"],
                        "selection_validation_score": selection["validation_score"],
                        "selection_test_rank": selection["rank"]})
    return metrics, evaluation, summary


def _add_timings(metrics, summary):
    """``train_seconds`` (the epochs' sum) and ``examples_per_second`` from train.py's summary."""
    metrics["train_seconds"] = sum(r.get("seconds", 0.0) for r in summary.get("history", []))
    speed = summary.get("timings", {}).get("examples_per_second")
    if speed:
        metrics["examples_per_second"] = speed


def selection_lines(selection):
    """The card's account of a seed chosen on validation (``seed_selection``)."""
    run, score = selection["run"], selection["score"]
    return [
        "## How this entry was chosen",
        "",
        f"Seed {selection['seed']}, chosen among the {selection['n']} finished seeds of this recipe "
        f"by the highest validation score: {run['selection_rule']}, on the 5,000 validation "
        f"images, {100 * selection['validation_score']:.2f} %. The test set was not used to choose.",
        f"On the test set the same quantity ({score}) is {100 * selection['test_score']:.2f} % for "
        f"this seed: rank {selection['rank']} of {selection['n']} (test min / median / max over the "
        f"seeds: {100 * selection['test_min']:.2f} / {100 * selection['test_median']:.2f} / "
        f"{100 * selection['test_max']:.2f} %).",
        f"Every seed's numbers: docs/results/seeds/{selection['cell']}_seed*.json "
        "(`python zoo/seed_table.py`).",
        "",
    ]


def failed_attacks(evaluation):
    """The card's attack rows at or above the clean accuracy of the images they attacked.

    An attack that leaves at least as many images correct as no attack has
    failed, not been resisted (gradient masking: the saturated logits of the
    recipe CH-NODEs give useless gradients; docs/reproduction.md, "Gradient
    masking"). Returns (label, accuracy, clean accuracy) per such row: FGSM
    and PGD on the test set against its clean accuracy, PGD on the attacked
    subset against the subset's (a set without a clean row is skipped).
    """
    failed = []
    for table, where in ((evaluation["test"], "test set"),
                         (evaluation["pgd_subset"], f"first {evaluation['pgd_take']} test images")):
        rows = _rows(table)
        clean = next((r["mean"] for r in rows if r["kind"] == "clean"), None)
        subset = table is evaluation["pgd_subset"]
        for row in rows:
            attack = row["kind"] == "pgd" or (row["kind"] == "fgsm" and not subset)
            if clean is not None and attack and row["mean"] >= clean:
                label = f"{row['kind']} {row['level']:g}" + (f" ({row['norm']})" if row.get("norm") else "")
                failed.append((f"{label}, {where}", row["mean"], clean))
    return failed


def failed_attack_lines(evaluation):
    """The card's warning about ``failed_attacks``; no lines when every attack lowered the accuracy."""
    failed = failed_attacks(evaluation)
    if not failed:
        return []
    return [
        "**These attacks failed on this model** (gradient masking, not robustness): each leaves at",
        "least as many images correct as no attack. Their rows, and the worst_case rows built from",
        "them, are upper bounds that say nothing about the model's robustness; a stronger attack",
        "may break far more (docs/reproduction.md, \"Gradient masking\").",
        "",
        *(f"- {label}: {accuracy:.4f} (clean {clean:.4f})" for label, accuracy, clean in failed),
        "",
    ]


def model_card(name, metrics, evaluation, summary, selection=None):
    entry = ENTRIES[name]
    flags, description = entry.flags, entry.description
    hardware = summary.get("hardware", {})
    used = summary.get("flags", {})
    if selection is None:
        command = "python " + " ".join(train_command(name))
        regenerate = f"python zoo/build.py {name}"
        data_line = f"Data: {flags['dataset']}, official 60,000 / 10,000 split."
    else:
        command = selection["run"]["train_command"]
        regenerate = f"python zoo/build.py --from_seeds {name}"
        data_line = (f"Data: {flags['dataset']}; trained on the first 55,000 official training "
                     "images, the last 5,000 are the validation split the seed was chosen on; "
                     "tested on the official 10,000.")
    lines = [
        f"# {name}",
        "",
        description + ".",
        "",
        "Input: float32 images in [0, 1], shape (N, 28, 28, 1); output: logits (N, 10).",
        ("No normalisation layer (it would multiply every certified bound by 1 / std); the "
         f"architecture is `{certified_profile.build_call(name)}`." if entry.profile == "certified"
         else "Normalisation is a layer inside the model."),
        "",
        "## Training",
        "",
        "    " + command,
        "",
        f"Regenerate this entry (training, evaluation, export): `{regenerate}`.",
        "",
        "Settings used: " + ", ".join(
            f"{k}={used[k]}" for k in ("model", "depth", "dataset", "epochs", "batch_size", "learning_rate",
                                       "lr_decay", "weight_decay", "smoothness", "step_size", "gamma",
                                       "eps", "L_scale", "lift_max_norm", "readout_max_norm",
                                       "delta_bar", "min_slope", "alpha", *_CERTIFIED_SETTINGS, "seed")
            if used.get(k) is not None and (entry.profile == "certified" or k not in _CERTIFIED_SETTINGS)) + ".",
        data_line,
        f"Training time: {metrics['train_seconds']:.0f} s on {hardware.get('cpu', '?')} "
        f"({hardware.get('cpu_count', '?')} cores, {hardware.get('strategy', '?')}, "
        f"{', '.join(hardware.get('gpus', [])) or 'no GPU'}).",
        "",
        *(selection_lines(selection) if selection is not None else []),
        *_study_lines(entry),
    ]
    if entry.profile == "certified":
        return _with_attack_section(name, "\n".join(lines + certified_profile.card_sections(name, evaluation)))
    lines += [
        "## Accuracy (measured by contractive_keras.robustness)",
        "",
        "| setting | accuracy (mean ± std over draws) |",
        "| --- | --- |",
        f"| train ({evaluation.get('train_images', 60000):,} images) | {metrics['train_accuracy']:.4f} |",
    ]
    for table, where in ((evaluation["test"], "test set"),
                         (evaluation["pgd_subset"], f"first {evaluation['pgd_take']} test images")):
        for row in _rows(table):
            if row["kind"] in ("clean", "fgsm") and table is evaluation["pgd_subset"]:
                continue
            label = "clean" if row["kind"] == "clean" else f"{row['kind']} {row['level']:g}"
            if row.get("norm"):
                label += f" ({row['norm']})"
            std = f" ± {row['std']:.4f}" if row.get("std") else ""
            lines.append(f"| {label}, {where} | {row['mean']:.4f}{std} |")
    lines += [
        "",
        "Noise follows the reference protocol on normalised images (Gaussian variance, salt & pepper",
        "amount; clipped to [-1, 1]); FGSM / PGD (40 steps, random start) act on [0, 1] pixels with",
        "the L-inf radius given and the margin objective max_{i!=y} z_i - z_y (the cross-entropy",
        "saturates on these models' huge logits); worst_case counts an image as robust only if no",
        "attack broke it at any radius <= eps. Certified rows count test images whose logit margin",
        "exceeds sqrt(2) * L * sqrt(784) * eps with L the certified L2 Lipschitz bound below.",
        "",
        *failed_attack_lines(evaluation),
        "## Certificate",
        "",
    ]
    if metrics.get("lipschitz_l2") is not None:
        lines.append(f"- certified L2 Lipschitz bound of the logits: {metrics['lipschitz_l2']:.6g}")
    for key, value in evaluation["certificate"].items():
        lines.append(f"- {key}: {value:.6g}" if isinstance(value, (int, float)) else f"- {key}: {value}")
    lines.append("")
    return _with_attack_section(name, "\n".join(lines))


#: The settings the certified cards list beside the common ones.
_CERTIFIED_SETTINGS = ("final_learning_rate", "loss", "train_eps", "temperature", "kernels", "dense")


def _with_attack_section(name, card):
    """The card with the standard-attack section when zoo/standard_attack.py has results for it."""
    if os.path.isfile(standard_attack.results_path(name)):
        card = standard_attack.card_with_section(card, standard_attack.load_results(name))
    return card


def _study_lines(entry):
    """The card's comparison with the retired certified study run the recipe comes from, if any."""
    if entry.study_run is None and entry.profile != "certified":
        return []
    lines = []
    run = entry.study_run or REPRODUCED.get(entry.name)
    path = os.path.join(ROOT, "docs", "results", "certified", f"{run}.json") if run else None
    if path and os.path.isfile(path):
        with open(path) as f:
            study = json.load(f)
        certified = study.get("certified_accuracy_pairwise", {})
        figures = ", ".join(f"{100 * v:.2f} % at {float(r):g}" for r, v in certified.items())
        lines.append(f"The same recipe in the retired certified-study script (run `{run}`, "
                     f"docs/results/certified/{run}.json): {100 * study['clean_accuracy']:.2f} % clean; "
                     f"certified {figures}.")
    return lines + [""] if lines else []


#: Certified entries whose shipped weights were retrained through train.py,
#: and the study run they reproduce.
REPRODUCED = {"stable_node_certified_mnist": "ortho_stableconv_mnist_lmce158"}


def stage_export(name, selection=None):
    from zoo.export_entry import add_to_manifest, export_model

    metrics, evaluation, summary = metrics_of(name, selection)
    description = ENTRIES[name].description
    if selection is not None:
        description += (f"; seed {selection['seed']} of {selection['n']}, chosen on validation "
                        "data (5,000 held-out training images)")
    model = load_trained(name, selection)
    card = model_card(name, metrics, evaluation, summary, selection)
    entry = export_model(model, name, ZOO_DIR, description=description, dataset=ENTRIES[name].dataset,
                         metrics=metrics, card_text=card, family=ENTRIES[name].family,
                         certified=ENTRIES[name].certified)
    add_to_manifest(ZOO_DIR, name, entry)
    log(f"{name}: exported to zoo/{name}/ (test accuracy {metrics['test_accuracy']:.4f})")


def stage_card(name, selection=None):
    """Rewrites only ``zoo/<name>/README.md`` from the evaluated run (the model files stay)."""
    metrics, evaluation, summary = metrics_of(name, selection)
    with open(os.path.join(ZOO_DIR, name, "README.md"), "w", encoding="utf-8") as f:
        f.write(model_card(name, metrics, evaluation, summary, selection))
    log(f"{name}: card rewritten (zoo/{name}/README.md)")


#: The standard-attack columns of the zoo tables: (header, manifest metric).
STANDARD_COLUMNS = (("std L-inf .05", "standard_linf_0.05"), ("std L-inf .1", "standard_linf_0.1"),
                    ("std L2 1", "standard_l2_1"), ("std L2 1.58", "standard_l2_1.58"))


def standard_cells(metrics, keys=tuple(k for _, k in STANDARD_COLUMNS)):
    """Table cells of the standard worst-case attack (zoo/standard_attack.py), in %, then its verdict.

    "-" where the entry was not evaluated at that radius; the verdict is "masked"
    when the masking checks failed (single-attack numbers of it would be upper
    bounds), else "ok".
    """
    cells = [f"{100 * metrics[k]:.2f}" if k in metrics else "-" for k in keys]
    verdict = metrics.get("masking")
    cells.append("-" if verdict is None else ("masked" if verdict.startswith("gradient masking") else "ok"))
    return cells


def reproduction_table():
    """Markdown: the Table 1 models the zoo ships (one seed per cell), with the standard attack.

    Per depth and model, the shipped entry's seed, train and test accuracy, the
    four reference noise columns, the clean accuracy of the attacked images,
    the standard worst-case attack (APGD-CE, APGD-T, Square) at L-inf 0.05 /
    0.1 and L2 1 / 1.58, and the gradient-masking verdict, in %
    (zoo/manifest.json). The published numbers and ours over all seeds are
    Table 1 (``python zoo/seed_table.py --published``).
    """
    from zoo import seed_table

    with open(os.path.join(ZOO_DIR, "manifest.json")) as f:
        models = json.load(f)["models"]
    head = ("| N | model | seed | train | test | G 0.05 | G 0.2 | s&p 0.05 | s&p 0.2 | attacked, clean | "
            + " | ".join(h for h, _ in STANDARD_COLUMNS) + " | masking |")
    lines = [head, "|" + "---|" * (11 + len(STANDARD_COLUMNS))]
    for depth in (4, 8, 12):
        for model in ("resnet", "hdnn", "chnode"):
            name = f"{model}_mnist_n{depth}"
            if name not in models:
                continue
            m = models[name]["metrics"]
            chosen = seed_table.shipped_seed(m)
            seed = "0 (60k images)" if chosen is None else f"{chosen} of {m['seeds_finished']}"
            ours = [f"{100 * m[k]:.2f}" for k in _TABLE_KEYS]
            ours.append(f"{100 * m['standard_clean']:.2f}" if "standard_clean" in m else "-")
            lines.append(f"| {depth} | {TITLES[model]} | {seed} | "
                         + " | ".join(ours + standard_cells(m)) + " |")
    return "\n".join(lines)


def _manifest_models(zoo_dir=None):
    with open(os.path.join(zoo_dir or ZOO_DIR, "manifest.json")) as f:
        return json.load(f)["models"]


def readme_table(zoo_dir=None):
    """Markdown: the README's zoo tables, from zoo/manifest.json.

    First the reference-profile entries in ``ENTRIES`` order: how each was
    chosen (a seed cell's seed chosen on validation, or the seed-0 run), test
    accuracy, Gaussian noise of variance 0.2 (mean of the draws), and the
    standard worst-case attack at L-inf 0.05 on the attacked test images (the
    card says how many) with its masking verdict, in %. Then the certified
    entries' clean and certified accuracy (``certified_profile.readme_table``).
    """
    from zoo import seed_table

    models = _manifest_models(zoo_dir)
    lines = ["| model | seed | test | Gaussian 0.2 | standard attack L-inf 0.05 | masking |",
             "|---|---|--:|--:|--:|---|"]
    for name, entry in ENTRIES.items():
        if name not in models or entry.profile != "reference":
            continue
        m = models[name]["metrics"]
        chosen = seed_table.shipped_seed(m)
        seed = "0" if chosen is None else f"{chosen} of {m['seeds_finished']}, chosen on validation"
        values = " | ".join([f"{100 * m[k]:.2f}" for k in ("test_accuracy", "gaussian_0.2")]
                            + standard_cells(m, ("standard_linf_0.05",)))
        lines.append(f"| `{name}` | {seed} | {values} |")
    return "\n".join(lines) + "\n" + certified_profile.readme_table(models)


def status(name):
    done = []
    if os.path.isfile(os.path.join(run_dir(name), "summary.json")):
        done.append("trained")
    if os.path.isfile(os.path.join(run_dir(name), "evaluation.json")):
        done.append("evaluated")
    manifest = os.path.join(ZOO_DIR, "manifest.json")
    if os.path.isfile(manifest):
        with open(manifest) as f:
            if name in json.load(f).get("models", {}):
                done.append("exported")
    return ", ".join(done) or "not started"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"entries (default: all): {', '.join(ENTRIES)}")
    parser.add_argument("--list", action="store_true", help="list the entries and their status")
    parser.add_argument("--table", action="store_true",
                        help="print docs/reproduction.md's table of the shipped Table 1 models, with "
                             "attack columns (Table 1 itself: zoo/seed_table.py --published)")
    parser.add_argument("--readme_table", action="store_true",
                        help="print the README's zoo tables from zoo/manifest.json")
    parser.add_argument("--anchors", action="store_true",
                        help="print which certified entries meet each anchor row (1-Lipschitz CNNs)")
    parser.add_argument("--stages", default="train,evaluate,export",
                        help="comma-separated stages to run (card: rewrite only the model card)")
    parser.add_argument("--pgd_take", type=int, default=1000,
                        help="test images attacked with PGD (the certified profile's falsification check too)")
    parser.add_argument("--draws", type=int, default=10, help="noise draws over the test set")
    parser.add_argument("--from_seeds", action="store_true",
                        help="seed cells: train every seed (zoo/seeds.py) and ship the one chosen "
                             "on validation data (issue 17)")
    parser.add_argument("--min_seeds", type=int, default=5,
                        help="with --from_seeds: finished seeds a cell needs before it is shipped")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in ENTRIES]
    if unknown:
        parser.error(f"unknown entries {unknown}; known: {', '.join(ENTRIES)}")
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    bad = set(stages) - {"train", "evaluate", "export", "card", "attack"}
    if bad:
        parser.error(f"unknown stages {sorted(bad)}; allowed: train, evaluate, export, card, attack")
    names = args.names or list(ENTRIES)
    if args.table:
        print(reproduction_table())
        return 0
    if args.readme_table:
        print(readme_table())
        return 0
    if args.anchors:
        print(certified_profile.anchor_report(_manifest_models()))
        return 0
    if args.list:
        for name in names:
            print(f"{name:28s} {status(name)}")
        return 0
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if args.from_seeds:
        from zoo import seed_table

        names = [n for n in names if n in seed_table.CELLS] if not args.names else names
    for name in names:
        selection = None
        if args.from_seeds:
            if "train" in stages:
                stage_train_seeds(name)
            try:
                selection = seed_selection(name, args.min_seeds)
            except ValueError as error:
                parser.error(str(error))
            log(f"{name}: seed {selection['seed']} chosen on validation "
                f"({selection['n']} seeds finished)")
        elif "train" in stages:
            stage_train(name)
        if "evaluate" in stages:
            stage_evaluate(name, args.pgd_take, args.draws, selection)
        if "export" in stages:
            stage_export(name, selection)
        elif "card" in stages:
            stage_card(name, selection)
        if "attack" in stages:
            standard_attack.stage_attack(name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
