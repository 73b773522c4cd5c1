"""The certified evaluation profile of zoo/build.py: certified L2 accuracy and its card.

For an entry of profile ``"certified"`` (zoo/entries.py), on the full test set:
clean accuracy and certified accuracy at the dataset's L2 radii
(``entries.CERTIFIED_RADII``) from ``certify.certified_radius`` (the tightest
bound the model allows: the pairwise read-out bound
min_{j != y} (z_y - z_j) / (L_body ||w_y - w_j||_2) for a linear read-out);
the whole model's certified Lipschitz bound with its factors
(``certify.lipschitz_bound``). Then a falsification check: PGD-L2 (50 steps,
random start) on the first ``attack_take`` test images at every radius must
not change the prediction of a single point certified at that radius, or
nothing is written. PGD's accuracy is an upper bound on the robust accuracy
(a failed attack proves nothing); the card prints it as such.
"""

import numpy as np

from contractive_keras import certify, data, robustness
from zoo.entries import CERTIFIED_RADII, ENTRIES

PGD_STEPS = 50
#: The rows to beat: 1-Lipschitz CNNs of deel-torchlip 1.0.5 (two 3x3 spectral
#: convolutions of 16 and 32 channels, GroupSort2, L2-norm pooling, two spectral
#: dense layers, 10 epochs), trained on this machine and certified with the
#: Lipschitz margin on the full test set (docs/certified.md). dataset -> row ->
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


def test_set(dataset):
    """The official test images as float32 [0, 1] pixels ``(N, 28, 28, 1)`` and int64 labels."""
    x, y = data.load_numpy(dataset, "test")
    return (x.astype("float32") / 255.0)[..., None], y.astype("int64")


def falsification_check(model, x, y, radius, radii, seed=0):
    """Per radius, PGD-L2's accuracy on ``x``; raises if it breaks a certified point.

    Raises:
        RuntimeError: PGD-L2 changed the prediction of a point whose certified
            radius exceeds the attacked radius: the certificate is wrong.
    """
    upper = {}
    for r in radii:
        adversarial = robustness.pgd(model, x, y, r, norm="l2", steps=PGD_STEPS, seed=seed)
        logits = np.asarray(model.predict(adversarial, batch_size=500, verbose=0))
        robust = logits.argmax(axis=1) == y
        broken = int(np.sum((radius > r) & ~robust))
        if broken:
            raise RuntimeError(f"PGD-L2 at radius {r:g} broke {broken} points certified beyond it: "
                               "the certificate is wrong; nothing is exported")
        upper[f"{r:g}"] = float(np.mean(robust))
    return upper


def evaluate(name, model, attack_take=1000):
    """The evaluation of a certified entry (a JSON-ready dict; see the module docstring)."""
    entry = ENTRIES[name]
    radii = CERTIFIED_RADII[entry.dataset]
    x, y = test_set(entry.dataset)
    result = certify.certified_radius(model, x, y)
    radius, correct = result
    whole = certify.lipschitz_bound(model)
    body, _ = certify.body_and_readout(model)
    metrics = {"test_accuracy": float(np.mean(correct)),
               "test_accuracy_first500": float(np.mean(correct[:500])),
               "mean_certified_radius_l2": float(np.mean(radius)),
               "lipschitz_l2": float(whole.value), "body_lipschitz_l2": float(body.value)}
    metrics.update({f"certified_l2_{r:g}": float(np.mean(radius > r)) for r in radii})
    take = slice(0, attack_take)
    upper = falsification_check(model, x[take], y[take], radius[take], radii)
    return {"name": name, "profile": "certified", "dataset": entry.dataset, "radii": list(radii),
            "bound": result.bound, "metrics": metrics, "attack_images": attack_take,
            "pgd_l2_upper_bound": upper,
            "certified_first": {f"{r:g}": float(np.mean(radius[take] > r)) for r in radii},
            "factors": [[f.name, f.kind, float(f.value)] for f in whole.factors]}


def build_call(name):
    """The ``models.build`` call that rebuilds the entry's architecture, as Python source."""
    entry = ENTRIES[name]
    options = "".join(f", {k}={entry.flags[k]!r}" for k in ("dense",) if k in entry.flags)
    return f'models.build("{entry.model}"{options})'


def card_sections(name, evaluation):
    """The certified entry's card lines after its Training section."""
    m, take = evaluation["metrics"], evaluation["attack_images"]
    bound = ("the pairwise read-out bound min over j != y of (z_y - z_j) / (L_body ||w_y - w_j||_2)"
             if evaluation["bound"] == "pairwise" else "the global bound margin / (sqrt(2) L)")
    lines = ["## Certified accuracy", "",
             f"| L2 radius | certified, full test set | certified, first {take} | PGD-L2 {PGD_STEPS} steps, "
             f"first {take} (upper bound) |", "| --- | --- | --- | --- |",
             f"| 0 (clean) | {m['test_accuracy']:.4f} | | |"]
    for r in evaluation["radii"]:
        key = f"{r:g}"
        lines.append(f"| {key} | {m[f'certified_l2_{key}']:.4f} | {evaluation['certified_first'][key]:.4f} | "
                     f"{evaluation['pgd_l2_upper_bound'][key]:.4f} |")
    lines += ["", f"Certified: the prediction is correct and {bound} exceeds the radius "
              "(`certify.certified_radius`). PGD-L2 is a falsification check: it must not break a "
              "certified point (nothing is exported if it does); its accuracy only bounds the robust "
              "accuracy from above.", "", "## Certificate", "",
              f"- certified L2 Lipschitz bound of the logits: {m['lipschitz_l2']:.6g}",
              f"- of the body (input to the read-out): {m['body_lipschitz_l2']:.6g}", "",
              "| layer | kind | factor |", "| --- | --- | --- |"]
    lines += [f"| {n} | {k} | {v:.6g} |" for n, k, v in evaluation["factors"]]
    return lines + [""]


def readme_table(manifest_models):
    """Markdown: clean and certified accuracy (%) of the certified entries the manifest holds."""
    lines = []
    for dataset, radii in CERTIFIED_RADII.items():
        names = [n for n, e in ENTRIES.items()
                 if e.profile == "certified" and e.dataset == dataset and n in manifest_models]
        lines += ["", f"{dataset}: clean and certified accuracy (%) at L2 radius, full test set", "",
                  "| model | clean | " + " | ".join(f"{r:g}" for r in radii) + " |",
                  "|---" * (2 + len(radii)) + "|"]
        for name in names:
            m = manifest_models[name]["metrics"]
            cells = " | ".join(f"{100 * m[f'certified_l2_{r:g}']:.1f}" if f"certified_l2_{r:g}" in m else "-"
                               for r in radii)
            lines.append(f"| `{name}` | {100 * m['test_accuracy']:.1f} | {cells} |")
    return "\n".join(lines)


def shortfalls(metrics, row):
    """{radius: (ours, the row's)} where ``metrics`` is below an anchor row or unmeasured (radius 0: clean)."""
    short = {}
    for r, theirs in row.items():
        ours = metrics.get("test_accuracy" if r == 0 else f"certified_l2_{r:g}")
        if ours is None or ours < theirs:
            short[r] = (ours, theirs)
    return short


def anchor_report(manifest_models):
    """Per anchor row: the certified entries at least as good at every radius, else the closest."""
    lines = []
    for dataset, rows in ANCHORS.items():
        names = [n for n, e in ENTRIES.items()
                 if e.profile == "certified" and e.dataset == dataset and n in manifest_models]
        for row_name, row in rows.items():
            short = {n: shortfalls(manifest_models[n]["metrics"], row) for n in names}
            winners = [n for n in names if not short[n]]
            if winners:
                lines.append(f"{dataset}, {row_name}: met by {', '.join(winners)}")
                continue
            closest = min(names, key=lambda n: (len(short[n]), sum(t - (o or 0.0) for o, t in short[n].values())))
            gaps = ", ".join(f"{'clean' if r == 0 else f'L2 {r:g}'} "
                             + ("unmeasured" if o is None else f"{100 * o:.2f} < {100 * t:.2f}")
                             for r, (o, t) in sorted(short[closest].items()))
            lines.append(f"{dataset}, {row_name}: NOT met; closest {closest} ({gaps})")
    return "\n".join(lines)
