"""Figures of the zoo models' accuracy: under noise, under attack, certified at L2 radii."""

import glob
import json
import os

from figure_tools import RESULTS_L2, ROOT, RUNS_ZOO, figure, pyplot, report  # first: thread settings

import numpy as np

# --- zoo accuracy figures -----------------------------------------------------

#: family prefix -> (label, colour)
FAMILIES = {
    "chnode": ("CH-NODE", "C2"),
    "hdnn": ("H-DNN", "C0"),
    "resnet": ("ResNet-ODE", "C1"),
    "node": ("NODE", "C4"),
    "stable_node": ("stabilized NODE", "C3"),
}
DEPTH_STYLES = {"n4": "-", "n8": "--", "n12": ":"}


MANIFEST = os.path.join(ROOT, "zoo", "manifest.json")


def seed_chosen_entries(manifest=MANIFEST):
    """{name: seed} of the manifest's entries chosen among seeds (``zoo/seed_table.shipped_seed``)."""
    from zoo import seed_table

    if manifest is None or not os.path.isfile(manifest):
        return {}
    with open(manifest) as f:
        models = json.load(f)["models"]
    chosen = {name: seed_table.shipped_seed(entry["metrics"]) for name, entry in models.items()}
    return {name: seed for name, seed in chosen.items() if seed is not None}


def _read_json(path):
    with open(path) as f:
        return json.load(f)


def zoo_evaluations(runs_dir=RUNS_ZOO, manifest=MANIFEST):
    """{name: evaluation dict} of the models the zoo ships.

    ``<runs_dir>/<name>/evaluation.json``, except for an entry that
    ``manifest`` says was chosen among seeds (issue 17): its chosen seed's
    ``<runs_dir>/../seeds/<name>/seed<K>/evaluation.json``, or nothing where
    that is missing (the seed-0 run of ``runs_dir`` is not what ships).
    """
    from zoo import seed_table

    chosen = seed_chosen_entries(manifest)
    seed_runs = os.path.join(os.path.dirname(os.path.abspath(runs_dir)), "seeds")
    paths = {os.path.basename(os.path.dirname(path)): path
             for path in glob.glob(os.path.join(runs_dir, "*", "evaluation.json"))
             if os.path.basename(os.path.dirname(path)) not in chosen}
    for name, seed in chosen.items():
        path = os.path.join(seed_table.seed_run_dir(seed_runs, name, seed), "evaluation.json")
        if os.path.isfile(path):
            paths[name] = path
    return {name: _read_json(paths[name]) for name in sorted(paths)}


def zoo_style(name):
    """(label, colour, line style, marker) of a zoo entry name."""
    if name.endswith("_certified"):
        label, _, _, _ = zoo_style(name[:-len("_certified")])
        color = "C6" if name.startswith("chnode") else "C9"
        return f"{label}, certified", color, "-", "D"
    family = "stable_node" if name.startswith("stable_node") else name.split("_")[0]
    label, color = FAMILIES.get(family, (family, "0.4"))
    depth = name.rsplit("_", 1)[-1]
    if depth in DEPTH_STYLES:
        return f"{label} N={depth[1:]}", color, DEPTH_STYLES[depth], "o"
    dataset = "Fashion-MNIST" if "fashion" in name else "MNIST"
    return f"{label} ({dataset})", color, "-" if dataset == "MNIST" else "-.", "s"


def zoo_order(name):
    """Sort key: family (as in ``FAMILIES``), then dataset, then depth."""
    if name.endswith("_certified"):
        return zoo_order(name[:-len("_certified")])[:3] + (name,)
    family = "stable_node" if name.startswith("stable_node") else name.split("_")[0]
    rank = list(FAMILIES).index(family) if family in FAMILIES else len(FAMILIES)
    depth = name.rsplit("_n", 1)[-1]
    return rank, "fashion" in name, int(depth) if depth.isdigit() else 0, name


def _series(table, kind, norm=None):
    """(levels, means, stds) of ``kind`` with the clean row as level 0."""
    from contractive_keras.robustness import RobustnessTable

    table = RobustnessTable.from_dict(table)
    clean = table.lookup("clean")
    levels, means, stds = table.series(kind, norm)
    if not np.any(np.isclose(levels, 0.0)):
        levels = np.concatenate([[0.0], levels])
        means = np.concatenate([[clean.mean], means])
        stds = np.concatenate([[clean.std], stds])
    return levels, means, stds


def _require(evaluations, runs_dir):
    if not evaluations:
        raise FileNotFoundError(
            f"no evaluation.json under {runs_dir}: run `python zoo/build.py` first "
            "(these figures plot its results).")


def _accuracy_panels(evaluations, panels, output, suptitle):
    plt = pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(5.6 * len(panels) + 2.4, 4.8),
                             sharey=True, layout="constrained")
    axes = np.atleast_1d(axes)
    for ax, (table_key, kind, norm, xlabel, title) in zip(axes, panels):
        for name, evaluation in sorted(evaluations.items(), key=lambda item: zoo_order(item[0])):
            if table_key not in evaluation:
                continue
            levels, means, stds = _series(evaluation[table_key], kind, norm)
            if len(levels) < 2:
                continue
            label, color, style, marker = zoo_style(name)
            ax.errorbar(levels, 100 * means, yerr=100 * stds, color=color, ls=style,
                        marker=marker, ms=4, lw=1.4, capsize=2, label=label)
        ax.set_xlabel(xlabel)
        ax.set_title(title, fontsize=10)
        ax.set_ylim(-2, 102)
    axes[0].set_ylabel("test accuracy (%)")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right center", fontsize=8, frameon=True)
    fig.suptitle(suptitle, fontsize=11)
    fig.savefig(output)
    plt.close(fig)


@figure
def accuracy_vs_noise(output, runs_dir=RUNS_ZOO, manifest=MANIFEST):
    """Test accuracy of every zoo model vs the noise level of the reference protocol.

    Left: Gaussian noise of variance 0, 0.05, 0.2; right: salt-and-pepper of
    amount 0, 0.05, 0.2; both on normalised images, clipped to [-1, 1]
    (``robustness.reference_noise``), mean and standard deviation over the
    draws of ``zoo/build.py`` (10 draws over the 10k test images).
    """
    evaluations = zoo_evaluations(runs_dir, manifest)
    _require(evaluations, runs_dir)
    _accuracy_panels(evaluations, [
        ("test", "gaussian", None, "Gaussian noise variance", "Gaussian noise"),
        ("test", "salt_pepper", None, "salt-and-pepper amount", "salt-and-pepper noise"),
    ], output, "Accuracy under input noise (zoo models, test set; error bars: std over draws)")
    values = {}
    for name, evaluation in evaluations.items():
        for kind in ("gaussian", "salt_pepper"):
            levels, means, _ = _series(evaluation["test"], kind)
            values.update({f"{name}/{kind}_{l:g}": float(m) for l, m in zip(levels, means)})
    report("accuracy_vs_noise", values)
    return values


def _has_rows(evaluations, table_key, kind):
    return any(row["kind"] == kind for e in evaluations.values()
               for row in e.get(table_key, {}).get("rows", []))


@figure
def accuracy_vs_fgsm(output, runs_dir=RUNS_ZOO, manifest=MANIFEST):
    """Test accuracy of every zoo model vs the L-inf attack radius eps (pixels in [0, 1]).

    Left: FGSM on the whole test set (eps = 0 is the clean accuracy).  Where
    ``zoo/build.py`` wrote them, on the first ``pgd_take`` test images: PGD
    (40 steps, random start) and the worst case, an image counting as robust
    at eps only if neither FGSM nor PGD broke it at any radius <= eps (the
    union of the attacks; monotone in eps even when one attack is not).
    """
    evaluations = zoo_evaluations(runs_dir, manifest)
    _require(evaluations, runs_dir)
    take = {e.get("pgd_take") for e in evaluations.values()} - {None}
    subset = "first %s test images" % "/".join(str(t) for t in sorted(take)) if take else "subset"
    radius = r"radius $\epsilon$ ($L_\infty$, pixels in [0, 1])"
    panels = [("test", "fgsm", "linf", radius, "FGSM, test set")]
    if _has_rows(evaluations, "pgd_subset", "pgd"):
        panels.append(("pgd_subset", "pgd", "linf", radius, f"PGD-40, {subset}"))
    if _has_rows(evaluations, "pgd_subset", "worst_case"):
        panels.append(("pgd_subset", "worst_case", "linf", radius,
                       f"worst case of FGSM and PGD, {subset}"))
    _accuracy_panels(evaluations, panels, output,
                     "Accuracy under adversarial attack (zoo models)")
    values = {}
    for name, evaluation in evaluations.items():
        for table_key, kind in (("test", "fgsm"), ("pgd_subset", "pgd"),
                                ("pgd_subset", "worst_case")):
            if _has_rows({name: evaluation}, table_key, kind):
                levels, means, _ = _series(evaluation[table_key], kind, "linf")
                values.update({f"{name}/{kind}_{l:g}": float(m) for l, m in zip(levels, means)})
    report("accuracy_vs_fgsm", values)
    return values


SEEDS_DIR = os.path.join(ROOT, "docs", "results", "seeds")


def seed_series(runs, levels_and_keys):
    """(levels, mean, std) over a cell's runs: ``zoo/seed_table.mean_and_std`` per level,
    std 0 (no error bar) for one run.

    ``levels_and_keys`` is [(level, function of a run -> accuracy)].
    """
    from zoo import seed_table

    stats = [seed_table.mean_and_std([get(run) for run in runs]) for _, get in levels_and_keys]
    return (np.array([level for level, _ in levels_and_keys]), np.array([m for m, _ in stats]),
            np.array([0.0 if sd is None else sd for _, sd in stats]))


def _seed_panels(runs):
    """[(title, x label, kind, {cell: (its runs, levels_and_keys)})]: Table 1 noise, NODE FGSM."""
    from zoo import seed_table

    clean = (0.0, lambda r: r["test"]["clean"])
    panels = []
    for kind, title, xlabel in (("gaussian", "Gaussian noise", "Gaussian noise variance"),
                                ("salt_pepper", "salt-and-pepper noise", "salt-and-pepper amount")):
        series = {cell: (runs[cell], [clean] + [
            (level, lambda r, key=f"{kind}_{level:g}": r["test"][key]) for level in (0.05, 0.2)])
            for cell in seed_table.HAMILTONIAN_CELLS if cell in runs}
        panels.append((f"{title}, Table 1 cells", xlabel, kind, series))
    series = {}
    for cell in seed_table.NODE_CELLS:
        with_curve = [r for r in runs.get(cell, []) if "test_fgsm_curve" in r]
        if with_curve:
            radii = sorted(with_curve[0]["test_fgsm_curve"], key=float)
            series[cell] = (with_curve, [clean] + [
                (float(e), lambda r, e=e: r["test_fgsm_curve"][e]) for e in radii])
    panels.append(("FGSM (margin loss), NODE cells",
                   r"radius $\epsilon$ ($L_\infty$, pixels in [0, 1])", "fgsm", series))
    return panels


@figure
def seed_spread(output, seeds_dir=SEEDS_DIR):
    """Test accuracy over the five-seed runs: mean and sample std over seeds (issue 17).

    Left, middle: the nine Table 1 cells under the reference noise (Gaussian
    variance, salt-and-pepper amount; 0 is the clean accuracy); right: the
    NODE cells under FGSM (their ``test_fgsm_curve``, L-inf radius in pixels).
    Each point is the mean over the finished seeds of ``zoo/seeds.py``
    (docs/results/seeds, each seed's noise number itself a mean over 10
    draws); error bars are the sample standard deviation over seeds (none
    with one seed); the legend gives the number of seeds.
    """
    from zoo import seed_table

    runs = seed_table.load_runs(seeds_dir) if os.path.isdir(seeds_dir) else {}
    if not runs:
        raise FileNotFoundError(f"no seed results under {seeds_dir}: run `python zoo/seeds.py` first "
                                "(this figure plots its results).")
    plt = pyplot()
    panels = _seed_panels(runs)
    fig, axes = plt.subplots(1, len(panels), figsize=(5.6 * len(panels) + 2.4, 4.8), sharey=True,
                             layout="constrained")
    values = {}
    for ax, (title, xlabel, kind, series) in zip(axes, panels):
        for cell, (cell_runs, levels_and_keys) in sorted(series.items(),
                                                          key=lambda item: zoo_order(item[0])):
            levels, mean, std = seed_series(cell_runs, levels_and_keys)
            label, color, style, marker = zoo_style(cell)
            n = len(cell_runs)
            ax.errorbar(levels, 100 * mean, yerr=100 * std, color=color, ls=style, marker=marker,
                        ms=4, lw=1.4, capsize=2, label=f"{label}, {n} seed{'s' if n > 1 else ''}")
            for level, m, sd in zip(levels, mean, std):
                values[f"{cell}/{kind}_{level:g}"] = float(m)
                values[f"{cell}/{kind}_{level:g}_std"] = float(sd)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(xlabel)
        ax.set_ylim(-2, 102)
        if series:
            ax.legend(fontsize=7, loc="lower left")
    axes[0].set_ylabel("test accuracy (%)")
    fig.suptitle("Accuracy over seeds (mean; error bars: sample std over seeds)", fontsize=11)
    fig.savefig(output)
    plt.close(fig)
    report("seed_spread", values)
    return values


@figure
def certified_accuracy_l2(output, results_dir=RESULTS_L2):
    """Certified and attacked accuracy of every zoo model vs the L2 radius (first 1000 test images).

    Reads the ``python -m contractive_keras.evaluate --norm=l2`` tables in
    ``results_dir`` (docs/reproduction.md, section 3) whose names are zoo
    entries.  Left: certified accuracy (logit margin > sqrt(2) L eps, a
    lower bound of the robust accuracy); right: the union of PGD-L2 attacks
    at every radius <= eps (an upper bound).
    """
    import glob

    tables = {}
    for path in sorted(glob.glob(os.path.join(results_dir, "*.json"))):
        name = os.path.splitext(os.path.basename(path))[0]
        with open(path) as f:
            table = json.load(f)
        if name in _zoo_names() and any(row["kind"] == "certified" for row in table["rows"]):
            tables[name] = {"l2": table}
    if not tables:
        raise FileNotFoundError(
            f"no L2 evaluation tables of zoo models under {results_dir}: run the loop "
            "in docs/reproduction.md, section 3.")
    radius = r"radius $\epsilon$ ($L_2$, pixels in [0, 1])"
    _accuracy_panels(tables, [("l2", "certified", "l2", radius, "certified (lower bound)"),
                              ("l2", "worst_case", "l2", radius, "PGD-40, union over radii (upper bound)")],
                     output, "Robust accuracy at L2 radii (zoo models, first 1000 test images)")
    values = {}
    for name, table in tables.items():
        for kind in ("certified", "worst_case"):
            levels, means, _ = _series(table["l2"], kind, "l2")
            values.update({f"{name}/{kind}_{l:g}": float(m) for l, m in zip(levels, means)})
    report("certified_accuracy_l2", values)
    return values


def _zoo_names():
    with open(os.path.join(ROOT, "zoo", "manifest.json")) as f:
        return set(json.load(f)["models"])
