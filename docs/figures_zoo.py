"""Figures of the zoo models' accuracy: under noise, under attack, certified at L2 radii."""

import functools
import json
import os

from figure_tools import RESULTS_L2, ROOT, figure, pyplot, report  # first: thread settings

import numpy as np
from zoo.entries import TITLES

# --- zoo accuracy figures -----------------------------------------------------

#: family prefix -> (label, colour); the labels are zoo/entries.py's titles
FAMILIES = {model: (TITLES[model], colour) for model, colour in (
    ("chnode", "C2"), ("hdnn", "C0"), ("resnet", "C1"), ("node", "C4"), ("stable_node", "C3"))}
DEPTH_STYLES = {"n4": "-", "n8": "--", "n12": ":"}


MANIFEST = os.path.join(ROOT, "zoo", "manifest.json")
#: norm -> the radii of the standard worst-case attack in the manifest's
#: metrics (``standard_<norm>_<r>``, zoo/standard_attack.py)
STANDARD_RADII = {"linf": (0.05, 0.1), "l2": (1.0, 1.58)}
NOISE_LEVELS = (0.05, 0.2)


def _manifest_models(manifest):
    """The ``models`` of a zoo manifest file (name -> entry)."""
    with open(manifest) as f:
        return json.load(f)["models"]


def zoo_metrics(manifest=MANIFEST):
    """{name: metrics} of the zoo entries the accuracy figures plot, from zoo/manifest.json.

    The reference-profile entries of zoo/entries.py (their metrics hold the
    reference noise table); each entry's metrics are those of the model the zoo ships (the
    seed chosen on validation for a seed cell).

    Raises:
        FileNotFoundError: no such manifest, or no entry with a noise table.
    """
    if manifest is None or not os.path.isfile(manifest):
        raise FileNotFoundError(f"no zoo manifest at {manifest}: run `python zoo/build.py` first "
                                "(these figures plot what it exports).")
    found = {name: entry["metrics"] for name, entry in _manifest_models(manifest).items()
             if "gaussian_0.05" in entry["metrics"]}
    if not found:
        raise FileNotFoundError(f"no entry of {manifest} has the noise table: run "
                                "`python zoo/build.py` first (these figures plot its results).")
    return found


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


def metric_series(metrics, kind):
    """(levels, means, stds) of ``kind`` in a manifest entry's metrics.

    "gaussian" / "salt_pepper": noise levels 0, 0.05, 0.2 (0 is the clean
    accuracy; std over the draws). "standard_linf" / "standard_l2": the
    standard worst-case attack at its radii, on the attacked test images
    (0 is their clean accuracy). A missing value is left out.
    """
    if kind in ("gaussian", "salt_pepper"):
        points = [(0.0, "test_accuracy", None)] + [
            (level, f"{kind}_{level:g}", f"{kind}_{level:g}_std") for level in NOISE_LEVELS]
    else:
        norm = kind.split("_", 1)[1]
        points = [(0.0, "standard_clean", None)]
        points += [(eps, f"standard_{norm}_{eps:g}", None) for eps in STANDARD_RADII[norm]]
    points = [(level, metrics[key], metrics.get(std, 0.0) if std else 0.0)
              for level, key, std in points if key in metrics]
    return tuple(np.array([p[i] for p in points], dtype=float) for i in range(3))


def table_series(table, kind, norm=None):
    """(levels, means, stds) of ``kind`` in a ``RobustnessTable`` dict, the clean row as level 0."""
    from contractive_keras.robustness import RobustnessTable

    table = RobustnessTable.from_dict(table)
    clean = table.lookup("clean")
    levels, means, stds = table.series(kind, norm)
    if not np.any(np.isclose(levels, 0.0)):
        levels = np.concatenate([[0.0], levels])
        means = np.concatenate([[clean.mean], means])
        stds = np.concatenate([[clean.std], stds])
    return levels, means, stds


def _accuracy_panels(entries, panels, output, suptitle, series=metric_series):
    """One panel per (kind, x label, title); one curve per entry, ``series(entry, kind)``."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(5.6 * len(panels) + 2.4, 4.8),
                             sharey=True, layout="constrained")
    axes = np.atleast_1d(axes)
    for ax, (kind, xlabel, title) in zip(axes, panels):
        for name, entry in sorted(entries.items(), key=lambda item: zoo_order(item[0])):
            levels, means, stds = series(entry, kind)
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


def accuracy_table(manifest=MANIFEST):
    """Markdown: the numbers of ``accuracy_vs_noise`` and ``accuracy_vs_attack`` (docs/figures.md).

    One row per plotted entry, in the figures' legend order (``zoo_order``):
    clean accuracy, the four noise settings (mean ± std over the draws), and
    the standard worst-case attack (APGD-CE, APGD-T, Square) at L-inf 0.05 /
    0.1 and L2 1 / 1.58 on the attacked test images, with its masking
    verdict, in %.
    """
    lines = ["| model | clean | G 0.05 | G 0.2 | s&p 0.05 | s&p 0.2 | standard L-inf 0.05 / 0.1 "
             "| standard L2 1 / 1.58 | masking |", "|---|---|---|---|---|---|---|---|---|"]
    for name, m in sorted(zoo_metrics(manifest).items(), key=lambda item: zoo_order(item[0])):
        noise = " | ".join(f"{100 * m[f'{kind}_{level:g}']:.2f} ± {100 * m[f'{kind}_{level:g}_std']:.2f}"
                           for kind in ("gaussian", "salt_pepper") for level in NOISE_LEVELS)
        standard = [" / ".join(f"{100 * m[f'standard_{norm}_{eps:g}']:.1f}" if f"standard_{norm}_{eps:g}" in m
                               else "-" for eps in radii) for norm, radii in STANDARD_RADII.items()]
        verdict = m.get("masking", "-")
        verdict = "masked" if verdict.startswith("gradient masking") else ("ok" if verdict != "-" else "-")
        lines.append(f"| {name} | {100 * m['test_accuracy']:.2f} | {noise} | {' | '.join(standard)} | {verdict} |")
    return "\n".join(lines)


def _values(entries, kinds, series=metric_series):
    values = {}
    for name, entry in entries.items():
        for kind in kinds:
            levels, means, _ = series(entry, kind)
            values.update({f"{name}/{kind}_{l:g}": float(m) for l, m in zip(levels, means)})
    return values


@figure
def accuracy_vs_noise(output, manifest=MANIFEST):
    """Test accuracy of every zoo model vs the noise level of the reference protocol.

    Left: Gaussian noise of variance 0, 0.05, 0.2; right: salt-and-pepper of
    amount 0, 0.05, 0.2; both on normalised images, clipped to [-1, 1]
    (``robustness.reference_noise``), mean and standard deviation over the
    draws of ``zoo/build.py`` (10 draws over the 10k test images), as
    zoo/manifest.json records them for the model each entry ships.
    """
    metrics_by_name = zoo_metrics(manifest)
    _accuracy_panels(metrics_by_name, [
        ("gaussian", "Gaussian noise variance", "Gaussian noise"),
        ("salt_pepper", "salt-and-pepper amount", "salt-and-pepper noise"),
    ], output, "Accuracy under input noise (zoo models, test set; error bars: std over draws)")
    values = _values(metrics_by_name, ("gaussian", "salt_pepper"))
    report("accuracy_vs_noise", values)
    return values


@figure
def accuracy_vs_attack(output, manifest=MANIFEST):
    """Accuracy of every zoo model under the standard worst-case attack vs the radius.

    Left: L-inf, right: L2 (pixels in [0, 1]); eps = 0 is the clean accuracy
    of the attacked images (the first 1,000 test images; each card says how
    many). An image counts as robust only if APGD-CE, APGD-T and the
    gradient-free Square all fail on it (``robustness.run_suite``,
    AutoAttack's protocol), as zoo/manifest.json records it for the model
    each entry ships (``zoo/standard_attack.py``).
    """
    metrics_by_name = zoo_metrics(manifest)
    _accuracy_panels(metrics_by_name, [
        ("standard_linf", r"radius $\epsilon$ ($L_\infty$, pixels in [0, 1])", "standard attack, L-inf"),
        ("standard_l2", r"radius $\epsilon$ ($L_2$, pixels in [0, 1])", "standard attack, L2"),
    ], output, "Accuracy under the standard worst-case attack (zoo models; APGD-CE, APGD-T, Square)")
    values = _values(metrics_by_name, ("standard_linf", "standard_l2"))
    report("accuracy_vs_attack", values)
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

    zoo_names = set(_manifest_models(MANIFEST))
    tables = {}
    for path in sorted(glob.glob(os.path.join(results_dir, "*.json"))):
        name = os.path.splitext(os.path.basename(path))[0]
        with open(path) as f:
            table = json.load(f)
        if name in zoo_names and any(row["kind"] == "certified" for row in table["rows"]):
            tables[name] = table
    if not tables:
        raise FileNotFoundError(
            f"no L2 evaluation tables of zoo models under {results_dir}: run the loop "
            "in docs/reproduction.md, section 3.")
    radius = r"radius $\epsilon$ ($L_2$, pixels in [0, 1])"
    l2_series = functools.partial(table_series, norm="l2")
    _accuracy_panels(tables, [("certified", radius, "certified (lower bound)"),
                              ("worst_case", radius, "PGD-40, union over radii (upper bound)")],
                     output, "Robust accuracy at L2 radii (zoo models, first 1000 test images)",
                     series=l2_series)
    values = _values(tables, ("certified", "worst_case"), series=l2_series)
    report("certified_accuracy_l2", values)
    return values

