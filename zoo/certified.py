#!/usr/bin/env python3
"""The zoo's certified entries (issue 15): train, evaluate, export, card.

    python zoo/certified.py                        # every certified entry, resuming
    python zoo/certified.py chnode_certified_mnist # some entries
    python zoo/certified.py --list
    python zoo/certified.py --table                # the README's table, from the manifest
    python zoo/certified.py --bar                  # which entries meet issue 15's bar

Each entry is a model of the certified family of ``contractive_keras.models``
(the skeleton of ``contractive_keras.lipschitz_cnn``: [0, 1] pixels,
norm-bounded convolutions, GroupSort, L2-norm pooling, an ODE block per
pixel) trained against its own certificate. Three resumable stages:

1. train: ``scripts/certified_study.py`` (10 epochs, Lipschitz-margin
   cross-entropy at the dataset's training radius with the exact body bound;
   it also checks, before writing its result, that PGD-L2 breaks no
   certified test point). The study builds the same layers, with the same
   names, as ``models.build(<preset>)``; its learning rate decays linearly
   per step from 1e-3 to 1e-4, where train.py's recipe decays it per epoch.
2. evaluate, on the full test set unless stated: clean accuracy; certified
   accuracy at the dataset's L2 radii (``data.CERTIFIED_RADII``) with
   ``certify.certified_radius`` and the pairwise read-out bound (and the
   sqrt(2) L form, for comparison); on the first ``--attack_take`` test
   images, PGD-L2 (50 steps) at the same radii and PGD-L-inf (40 steps) at
   0.05 and 0.1 from Foolbox (an outside toolbox), with a refusal to export
   if an attack breaks a point certified at its radius; the whole-model
   bound with its factors (``certify.lipschitz_bound``);
   ``runs/zoo/<name>/certified_evaluation.json``.
3. export: ``zoo/<name>/`` and its manifest entry (``zoo/export_entry.py``).

Foolbox comes with ``pip install -e '.[attacks]'``.
"""

import argparse
import functools
import json
import os
import subprocess
import sys

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402

from contractive_keras import data  # noqa: E402

#: name -> (models preset, dataset, study run name, study flags, description)
ENTRIES = {
    "chnode_certified_mnist": (
        "chnode_certified", "mnist", "ortho_chnode_mnist_lmce158",
        "--ode=chnode --kernels=orthonormal --threads=1",
        "Certified CH-NODE (per pixel, gamma = 2 fixed, 4 Euler steps, non-expansive by "
        "construction) in a 1-Lipschitz CNN with orthonormal kernels, trained against its "
        "certificate at L2 1.58, MNIST"),
    "stable_node_certified_mnist": (
        "stable_node_certified", "mnist", "ortho_stableconv_mnist_lmce158",
        "--ode=stable_conv --kernels=orthonormal --threads=1",
        "Certified stabilized NODE (per pixel, delta_bar = 0 on its Euler map) in a "
        "1-Lipschitz CNN with orthonormal kernels, trained against its certificate at L2 "
        "1.58, MNIST"),
    "stable_node_certified_mnist_eps0p8": (
        "stable_node_certified", "mnist", "ortho_stableconv_mnist_lmce08",
        "--ode=stable_conv --train_eps=0.8 --kernels=orthonormal --threads=1",
        "Certified stabilized NODE (per pixel, delta_bar = 0 on its Euler map) in a "
        "1-Lipschitz CNN with orthonormal kernels, trained against its certificate at L2 "
        "0.8, MNIST"),
    "stable_node_certified_mnist_eps1_d256": (
        "stable_node_certified", "mnist", "ortho_stableconv_mnist_lmce10_d256",
        "--ode=stable_conv --train_eps=1.0 --kernels=orthonormal --dense=256 --threads=1",
        "Certified stabilized NODE (per pixel, delta_bar = 0 on its Euler map) in a "
        "1-Lipschitz CNN with orthonormal kernels and a 256-wide dense layer, trained against "
        "its certificate at L2 1.0, MNIST"),
    "stable_node_certified_mnist_eps0p1_t0p1_d256": (
        "stable_node_certified", "mnist", "ortho_stableconv_mnist_lmce01_T01_d256",
        "--ode=stable_conv --train_eps=0.1 --temperature=0.1 --kernels=orthonormal --dense=256 "
        "--threads=1",
        "Certified stabilized NODE (per pixel, delta_bar = 0 on its Euler map) in a "
        "1-Lipschitz CNN with orthonormal kernels and a 256-wide dense layer, trained against "
        "its certificate at L2 0.1 with softmax temperature 0.1 (tau = 10), MNIST"),
    "chnode_certified_mnist_eps1_d256": (
        "chnode_certified", "mnist", "ortho_chnode_mnist_lmce10_d256",
        "--ode=chnode --train_eps=1.0 --kernels=orthonormal --dense=256 --threads=1",
        "Certified CH-NODE (per pixel, gamma = 2 fixed, 4 Euler steps, non-expansive by "
        "construction) in a 1-Lipschitz CNN with orthonormal kernels and a 256-wide dense "
        "layer, trained against its certificate at L2 1.0 (the recipe of "
        "stable_node_certified_mnist_eps1_d256), MNIST"),
    "chnode_certified_fashion_mnist": (
        "chnode_certified", "fashion_mnist", "ortho_chnode_fashion_lmce04",
        "--dataset=fashion_mnist --ode=chnode --train_eps=0.4 --kernels=orthonormal "
        "--threads=1",
        "Certified CH-NODE (per pixel, gamma = 2 fixed, 4 Euler steps, non-expansive by "
        "construction) in a 1-Lipschitz CNN with orthonormal kernels, trained against its "
        "certificate at L2 0.4, Fashion-MNIST"),
    "stable_node_certified_fashion_mnist": (
        "stable_node_certified", "fashion_mnist", "ortho_stableconv_fashion_lmce05",
        "--dataset=fashion_mnist --ode=stable_conv --kernels=orthonormal --train_eps=0.5 "
        "--threads=1",
        "Certified stabilized NODE (per pixel, delta_bar = 0 on its Euler map) in a "
        "1-Lipschitz CNN with orthonormal kernels, trained against its certificate at L2 "
        "0.5, Fashion-MNIST"),
    "stable_node_certified_fashion_mnist_eps0p45_d256": (
        "stable_node_certified", "fashion_mnist", "ortho_stableconv_fashion_lmce045_d256",
        "--dataset=fashion_mnist --ode=stable_conv --train_eps=0.45 --kernels=orthonormal "
        "--dense=256 --threads=1",
        "Certified stabilized NODE (per pixel, delta_bar = 0 on its Euler map) in a "
        "1-Lipschitz CNN with orthonormal kernels and a 256-wide dense layer, trained against "
        "its certificate at L2 0.45, Fashion-MNIST"),
    "stable_node_certified_fashion_mnist_eps0p05_t0p1_d256": (
        "stable_node_certified", "fashion_mnist", "ortho_stableconv_fashion_lmce005_T01_d256",
        "--dataset=fashion_mnist --ode=stable_conv --train_eps=0.05 --temperature=0.1 "
        "--kernels=orthonormal --dense=256 --threads=1",
        "Certified stabilized NODE (per pixel, delta_bar = 0 on its Euler map) in a "
        "1-Lipschitz CNN with orthonormal kernels and a 256-wide dense layer, trained against "
        "its certificate at L2 0.05 with softmax temperature 0.1 (tau = 10), Fashion-MNIST"),
    "stable_node_certified_fashion_mnist_eps0p06_t0p1_d256": (
        "stable_node_certified", "fashion_mnist", "ortho_stableconv_fashion_lmce006_T01_d256",
        "--dataset=fashion_mnist --ode=stable_conv --train_eps=0.06 --temperature=0.1 "
        "--kernels=orthonormal --dense=256 --threads=1",
        "Certified stabilized NODE (per pixel, delta_bar = 0 on its Euler map) in a "
        "1-Lipschitz CNN with orthonormal kernels and a 256-wide dense layer, trained against "
        "its certificate at L2 0.06 with softmax temperature 0.1 (tau = 10; the training radius "
        "chosen on a validation split), Fashion-MNIST"),
    "stable_node_certified_mnist_eps0p3_d256": (
        "stable_node_certified", "mnist", "ortho_stableconv_mnist_lmce03_d256",
        "--ode=stable_conv --train_eps=0.3 --kernels=orthonormal --dense=256 --threads=1",
        "Certified stabilized NODE (per pixel, delta_bar = 0 on its Euler map) in a "
        "1-Lipschitz CNN with orthonormal kernels and a 256-wide dense layer, trained against "
        "its certificate at L2 0.3 (the training radius chosen on a validation split), MNIST"),
}
#: The skeleton options a study run may set (scripts/certified_study.py flags of
#: the same names); an entry's build options are those that differ from its
#: preset's recipe. The clipped-kernel models the orthonormal entries replaced
#: are in docs/results/certified/*conv_*_lmce*.json.
SKELETON_OPTIONS = ("dense", "kernels")
LINF_EPS = (0.05, 0.1)
#: The bar of issue 15: the 1-Lipschitz CNN rows (deel-torchlip 1.0.5, two 3x3
#: spectral convolutions of 16 and 32 channels, GroupSort2, L2-norm pooling, two
#: spectral dense layers, 10 epochs), trained on this machine for the issue and
#: certified with the Lipschitz margin on the full test set. dataset -> row ->
#: {L2 radius: accuracy}; radius 0 is the clean accuracy.
ANCHORS = {
    "mnist": {
        "deel-torchlip tau-CE tau = 10": {0: 0.9910, 0.1: 0.9791, 0.25: 0.9313, 0.3: 0.9042,
                                          0.5: 0.6535, 1.0: 0.0089, 1.58: 0.0},
        "deel-torchlip tau-CE tau = 1": {0: 0.9392, 0.1: 0.9245, 0.25: 0.9000, 0.3: 0.8902,
                                         0.5: 0.8360, 1.0: 0.6480, 1.58: 0.3569},
        "deel-torchlip hinge-KR margin 2.25": {0: 0.9567, 0.1: 0.9447, 0.25: 0.9207,
                                               0.3: 0.9105, 0.5: 0.8605, 1.0: 0.6339,
                                               1.58: 0.2586},
    },
    "fashion_mnist": {
        "deel-torchlip tau-CE tau = 10": {0: 0.9026, 0.1: 0.7881, 0.25: 0.5553, 0.5: 0.2297,
                                          1.0: 0.0046},
        "deel-torchlip tau-CE tau = 1": {0: 0.8176, 0.1: 0.7876, 0.25: 0.7420, 0.5: 0.6590,
                                         1.0: 0.4876},
    },
}
STUDY_DIR = os.path.join(ROOT, "runs", "certified_study", "full")
RESULTS_DIR = os.path.join(ROOT, "docs", "results", "certified")


def log(message):
    print(f"[zoo/certified] {message}", flush=True)


def study_command(name):
    _, _, run, flags, _ = ENTRIES[name]
    return f"python scripts/certified_study.py --name={run} {flags}"


def study_result(name):
    """The results JSON of the entry's study run (``scripts/certified_study.py``)."""
    with open(os.path.join(RESULTS_DIR, f"{ENTRIES[name][2]}.json")) as f:
        return json.load(f)


def study_args(name):
    """The argparse namespace (as a dict) of the entry's study run."""
    return study_result(name)["args"]


def build_options(name):
    """Options of ``models.build(<preset>)`` that rebuild the study run's layers.

    The skeleton options (``SKELETON_OPTIONS``) the run used where they differ
    from the preset's recipe, read from the run's results JSON so an entry
    cannot be rebuilt with other widths or kernels than it was trained with.
    """
    from contractive_keras import models

    recipe = models.REFERENCE_HPARAMS[ENTRIES[name][0]]
    args = study_args(name)
    return {k: args[k] for k in SKELETON_OPTIONS if k in args and args[k] != recipe[k]}


def stage_train(name):
    run = ENTRIES[name][2]
    if os.path.isfile(os.path.join(RESULTS_DIR, f"{run}.json")):
        log(f"{name}: trained ({run}.json present)")
        return
    command = [sys.executable, *study_command(name).split()[1:]]
    log(f"{name}: training: {' '.join(command[1:])}")
    subprocess.run(command, cwd=ROOT, check=True,
                   env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1"))


@functools.lru_cache(maxsize=1)
def load_trained(name):
    """The study's trained weights in ``models.build(<preset>)`` (same layers, same names).

    Cached for the last entry: its evaluation and its export use one model.
    """
    import keras

    from contractive_keras import models

    preset, _, run, _, _ = ENTRIES[name]
    source = keras.models.load_model(os.path.join(STUDY_DIR, run, "model.keras"), compile=False)
    model = models.build(preset, **build_options(name))
    mine = [(w.path.split("/", 1)[-1], tuple(w.shape)) for w in model.weights]
    theirs = [(w.path.split("/", 1)[-1], tuple(w.shape)) for w in source.weights]
    if [s for _, s in mine] != [s for _, s in theirs]:
        raise ValueError(f"{name}: the study model's weights {theirs} do not match {preset}'s {mine}")
    kinds = lambda m: [type(layer).__name__ for layer in m.layers]
    if kinds(model) != kinds(source):
        raise ValueError(f"{name}: the study model's layers {kinds(source)} differ from "
                         f"{preset}'s {kinds(model)} (build_options)")
    model.set_weights(source.get_weights())
    return model


def _test_set(dataset):
    x, y = data.load_numpy(dataset, "test")
    return (x.astype("float32") / 255.0)[..., None], y.astype("int64")


def foolbox_robust(model, x, y, attack, epsilons, batch=500):
    """Per-radius boolean arrays: True where Foolbox's attack did not flip the prediction."""
    import foolbox
    import tensorflow as tf

    fmodel = foolbox.TensorFlowModel(model, bounds=(0.0, 1.0))
    robust = [[] for _ in epsilons]
    for i in range(0, len(x), batch):
        images, labels = tf.constant(x[i:i + batch]), tf.constant(y[i:i + batch])
        _, _, success = attack(fmodel, images, labels, epsilons=list(epsilons))
        for k, s in enumerate(success):
            robust[k].append(~np.asarray(s))
    return [np.concatenate(r) for r in robust]


def evaluation_radii(dataset):
    """The dataset's card radii and the anchors' (MNIST's 0.25), sorted."""
    anchor_radii = {r for row in ANCHORS[dataset].values() for r in row if r > 0}
    return tuple(sorted(set(data.CERTIFIED_RADII[dataset]) | anchor_radii))


def _certified_full(name):
    """Certified accuracy on the full test set at every evaluation radius (both bounds)."""
    from contractive_keras import certify

    dataset = ENTRIES[name][1]
    x, y = _test_set(dataset)
    model = load_trained(name)
    radius, _ = certify.certified_radius(model, x, y, bound="pairwise")
    radius_global, _ = certify.certified_radius(model, x, y, bound="global")
    return _certified_metrics(radius, radius_global, dataset)


def _certified_metrics(radius, radius_global, dataset):
    """``certified_l2_<r>`` (pairwise) and ``..._global_bound`` at every evaluation radius."""
    metrics = {}
    for r in evaluation_radii(dataset):
        metrics[f"certified_l2_{r:g}"] = float(np.mean(radius > r))
        metrics[f"certified_l2_{r:g}_global_bound"] = float(np.mean(radius_global > r))
    return metrics


def _certified_first(name, take):
    """Certified accuracy on the attacked images (the first ``take``), per radius."""
    from contractive_keras import certify

    dataset = ENTRIES[name][1]
    x, y = _test_set(dataset)
    radius, _ = certify.certified_radius(load_trained(name), x[:take], y[:take])
    return {f"{r:g}": float(np.mean(radius > r)) for r in data.CERTIFIED_RADII[dataset]}


def stage_evaluate(name, attack_take):
    import foolbox

    from contractive_keras import certify

    path = os.path.join(ROOT, "runs", "zoo", name, "certified_evaluation.json")
    cached = None
    if os.path.isfile(path):
        with open(path) as f:
            cached = json.load(f)
        if cached.get("study_run") != ENTRIES[name][2]:
            log(f"{name}: {os.path.relpath(path, ROOT)} evaluated study run "
                f"{cached.get('study_run')!r}, not {ENTRIES[name][2]!r}: evaluating again")
            cached = None
    if cached is not None:
        log(f"{name}: evaluated ({os.path.relpath(path, ROOT)} present)")
        evaluation = cached
        missing = [r for r in evaluation_radii(evaluation["dataset"])
                   if f"certified_l2_{r:g}" not in evaluation["metrics"]]
        if missing:
            log(f"{name}: certifying at the anchors' radii {missing} too")
            evaluation["metrics"].update(_certified_full(name))
        first_missing = "certified_first" not in evaluation
        if first_missing:
            evaluation["certified_first"] = _certified_first(name, evaluation["attack_images"])
        if missing or first_missing:
            with open(path, "w") as f:
                json.dump(evaluation, f, indent=1)
        return evaluation
    preset, dataset, run, _, _ = ENTRIES[name]
    model = load_trained(name)
    x, y = _test_set(dataset)
    radii = data.CERTIFIED_RADII[dataset]
    log(f"{name}: certified radii on {len(y)} test images")
    radius, correct = certify.certified_radius(model, x, y, bound="pairwise")
    radius_global, _ = certify.certified_radius(model, x, y, bound="global")
    whole = certify.lipschitz_bound(model)
    body, _ = certify.body_and_readout(model)
    metrics = {"test_accuracy": float(np.mean(correct)),
               "test_accuracy_first500": float(np.mean(correct[:500]))}
    metrics.update(_certified_metrics(radius, radius_global, dataset))
    metrics["mean_certified_radius_l2"] = float(np.mean(radius))
    take = slice(0, attack_take)
    log(f"{name}: Foolbox PGD-L2 and PGD-L-inf on the first {attack_take} test images")
    l2 = foolbox_robust(model, x[take], y[take], foolbox.attacks.L2PGD(steps=50), radii)
    for r, robust in zip(radii, l2):
        broken = int(np.sum((radius[take] > r) & ~robust))
        if broken:
            raise AssertionError(f"{name}: PGD-L2 broke {broken} points certified at {r}: "
                                 "the certificate is wrong; nothing exported.")
        metrics[f"pgd_l2_{r:g}"] = float(np.mean(robust & correct[take]))
    linf = foolbox_robust(model, x[take], y[take], foolbox.attacks.LinfPGD(steps=40), LINF_EPS)
    for e, robust in zip(LINF_EPS, linf):
        metrics[f"pgd_linf_{e:g}"] = float(np.mean(robust & correct[take]))
    metrics["train_seconds"] = float(study_result(name)["train_seconds"])
    metrics["lipschitz_l2"] = float(whole.value)
    metrics["body_lipschitz_l2"] = float(body.value)
    evaluation = {"name": name, "preset": preset, "dataset": dataset, "metrics": metrics,
                  "attack_images": attack_take, "radii": list(radii),
                  "factors": [[f.name, f.kind, f.value] for f in whole.factors],
                  "certified_first": {f"{r:g}": float(np.mean(radius[take] > r)) for r in radii},
                  "study_command": study_command(name), "study_run": run}
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(evaluation, f, indent=1)
    return evaluation


def card(name, evaluation):
    preset, dataset, _, _, description = ENTRIES[name]
    m, radii = evaluation["metrics"], evaluation["radii"]
    take = evaluation["attack_images"]
    lines = [f"# {name}", "", f"{description}.", "",
             "Input: float32 images in [0, 1], shape (N, 28, 28, 1), no normalisation layer; "
             "output: logits (N, 10).", "",
             f"Architecture: `models.build({_build_call(name)})` (contractive_keras.lipschitz_cnn).",
             "",
             "## Training", "", f"    {evaluation['study_command']}", "",
             f"Training time: {m['train_seconds'] / 60:.0f} min on 2 shared CPU cores (no GPU). "
             "Regenerate this entry: `python zoo/certified.py " + name + "`.",
             "The same recipe through train.py (learning rate decayed per epoch instead of per "
             f"step): `{_train_py_command(name)}`.", *_validation_lines(name), "",
             "## Certified and attacked accuracy", "",
             "| L2 radius | certified (pairwise bound, full test set) | certified (sqrt(2) L form) "
             f"| certified, first {take} | PGD-L2 50 steps, first {take} |",
             "| --- | --- | --- | --- | --- |",
             f"| 0 (clean) | {m['test_accuracy']:.4f} | | | |"]
    first = evaluation["certified_first"]
    for r in evaluation_radii(dataset):
        attacked = (f"{first[f'{r:g}']:.4f} | {m[f'pgd_l2_{r:g}']:.4f}" if r in radii
                    else "- | - (an anchor's radius, not attacked)")
        lines.append(f"| {r:g} | {m[f'certified_l2_{r:g}']:.4f} | "
                     f"{m[f'certified_l2_{r:g}_global_bound']:.4f} | {attacked} |")
    lines += ["", f"PGD-L-inf, 40 steps, first {take} test images: "
              + ", ".join(f"{m[f'pgd_linf_{e:g}']:.4f} at {e:g}" for e in LINF_EPS) + ".", "",
              "Certified: the prediction is correct and min over j != y of "
              "(z_y - z_j) / (L_body ||w_y - w_j||_2) exceeds the radius "
              "(`certify.certified_radius`, bound=\"pairwise\"). Attacks: Foolbox 3 L2PGD / "
              "LinfPGD on [0, 1] pixels; export is refused if an attack breaks a certified point.",
              "", "## Certificate", "",
              f"- certified L2 Lipschitz bound of the logits: {m['lipschitz_l2']:.6g}",
              f"- of the body (input to the read-out): {m['body_lipschitz_l2']:.6g}", "",
              "| layer | kind | factor |", "| --- | --- | --- |"]
    lines += [f"| {n} | {k} | {v:.6g} |" for n, k, v in evaluation["factors"]]
    return "\n".join(lines) + "\n"


def _train_py_command(name):
    """The train.py call with the entry's model, dataset, training radius and build options."""
    preset, dataset, _, _, _ = ENTRIES[name]
    study = study_args(name)
    options = "".join(f" --{k}={v}" for k, v in sorted(build_options(name).items()))
    temperature = study.get("temperature", 1.0)
    if temperature != 1.0:
        options += f" --temperature={temperature:g}"
    if study.get("validation_size"):
        options += f" --validation_size={study['validation_size']}"
    return (f"python train.py --model={preset} --dataset={dataset} "
            f"--train_eps={study['train_eps']:g}" + options)


def _validation_lines(name):
    """The card's note on a run trained with a held-out validation split (none without one)."""
    result = study_result(name)
    held = result["args"].get("validation_size") or 0
    if not held:
        return []
    validation = result.get("validation", {})
    clean = validation.get("clean_accuracy")
    certified = validation.get("certified_accuracy_pairwise", {})
    figures = "" if clean is None else (
        f" There: {100 * clean:.2f} % clean, " + ", ".join(
            f"{100 * v:.2f} % at {r}" for r, v in certified.items()) + " certified.")
    trained = data.NUM_EXAMPLES["train"] - held
    return [f"Trained on the first {trained:,} training images; the last "
            f"{held:,} are a validation split, never trained on, by which this run was chosen "
            f"(docs/certified.md).{figures}"]


def _build_call(name):
    """The arguments of models.build that rebuild the entry, as Python source."""
    options = "".join(f", {k}={v!r}" for k, v in sorted(build_options(name).items()))
    return f'"{ENTRIES[name][0]}"{options}'


def stage_export(name, evaluation):
    from zoo.export_entry import add_to_manifest, export_model

    model = load_trained(name)
    entry = export_model(model, name, os.path.join(ROOT, "zoo"), description=ENTRIES[name][4],
                         dataset=ENTRIES[name][1], metrics=evaluation["metrics"],
                         card_text=card(name, evaluation))
    add_to_manifest(os.path.join(ROOT, "zoo"), name, entry)
    log(f"{name}: exported to zoo/{name}/")


def readme_table():
    """The README's table of the certified entries, from zoo/manifest.json."""
    with open(os.path.join(ROOT, "zoo", "manifest.json")) as f:
        manifest = json.load(f)["models"]
    lines = []
    for dataset in ("mnist", "fashion_mnist"):
        radii = evaluation_radii(dataset)
        lines += ["", f"{dataset}: clean and certified accuracy (%) at L2 radius, full test set",
                  "", "| model | clean | " + " | ".join(f"{r:g}" for r in radii)
                  + " | bound of the logits | train min |",
                  "|---" * (4 + len(radii)) + "|"]
        for name, (_, entry_dataset, _, _, _) in ENTRIES.items():
            if entry_dataset != dataset or name not in manifest:
                continue
            m = manifest[name]["metrics"]
            cells = " | ".join(f"{100 * m[f'certified_l2_{r:g}']:.1f}"
                               if f"certified_l2_{r:g}" in m else "-" for r in radii)
            lines.append(f"| `{name}` | {100 * m['test_accuracy']:.1f} | {cells} | "
                         f"{m['lipschitz_l2']:.3g} | {m['train_seconds'] / 60:.0f} |")
    return "\n".join(lines)


def _shortfalls(metrics, row):
    """{radius: (ours, anchor's)} where ``metrics`` is below the anchor row (or unmeasured)."""
    short = {}
    for r, theirs in row.items():
        key = "test_accuracy" if r == 0 else f"certified_l2_{r:g}"
        ours = metrics.get(key)
        if ours is None or ours < theirs:
            short[r] = (ours, theirs)
    return short


def bar_report():
    """Which zoo entries dominate each anchor row (``ANCHORS``), from zoo/manifest.json.

    An entry dominates a row when its clean accuracy and its certified
    accuracy at every radius of the row are equal or better (issue 15's bar).
    Where none does, the report names the entry with the fewest shortfalls.
    """
    with open(os.path.join(ROOT, "zoo", "manifest.json")) as f:
        manifest = json.load(f)["models"]
    lines = []
    for dataset, rows in ANCHORS.items():
        entries = [n for n, e in ENTRIES.items() if e[1] == dataset and n in manifest]
        for row_name, row in rows.items():
            short = {n: _shortfalls(manifest[n]["metrics"], row) for n in entries}
            winners = [n for n in entries if not short[n]]
            if winners:
                lines.append(f"{dataset}, {row_name}: met by {', '.join(winners)}")
                continue
            closest = min(entries, key=lambda n: (len(short[n]), sum(
                t - (o or 0.0) for o, t in short[n].values())))
            gaps = ", ".join(
                f"{'clean' if r == 0 else f'L2 {r:g}'} "
                + ("unmeasured" if o is None else f"{100 * o:.2f} < {100 * t:.2f}")
                for r, (o, t) in sorted(short[closest].items()))
            lines.append(f"{dataset}, {row_name}: NOT met; closest {closest} ({gaps})")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="entries (default: all)")
    parser.add_argument("--list", action="store_true")
    parser.add_argument("--table", action="store_true", help="print the README's table")
    parser.add_argument("--bar", action="store_true",
                        help="print which entries dominate each anchor row (issue 15's bar)")
    parser.add_argument("--attack_take", type=int, default=1000)
    args = parser.parse_args(argv)
    unknown = sorted(set(args.names) - set(ENTRIES))
    if unknown:
        parser.error(f"unknown entries {unknown}; known: {sorted(ENTRIES)}")
    if args.table:
        print(readme_table())
        return
    if args.bar:
        print(bar_report())
        return
    if args.list:
        for name in ENTRIES:
            print(name, "-", study_command(name))
        return
    for name in args.names or ENTRIES:
        stage_train(name)
        stage_export(name, stage_evaluate(name, args.attack_take))


if __name__ == "__main__":
    main()
