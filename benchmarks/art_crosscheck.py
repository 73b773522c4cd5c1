"""Cross-check of the standard attack against an outside implementation: IBM ART.

    pip install -e '.[attacks]'          # adversarial-robustness-toolbox
    python -m benchmarks.art_crosscheck --take=200
    python -m benchmarks.art_crosscheck --take=200 --models=chnode_mnist_n12 --norms=linf

For each zoo model and norm, on the first ``--take`` MNIST test images: ART's
``AutoProjectedGradientDescent`` with the cross-entropy and with the DLR loss
and ART's ``SquareAttack``, through ``TensorFlowV2Classifier``, their
per-image worst case, and ours (``robustness.run_suite``, the standard suite)
on the same images. The claim checked: our robust accuracy is no higher than
ART's plus 2 points (an attack weaker than an outside one by more than that
would be a bug). Writes ``benchmarks/results/art_crosscheck.json``; the
numbers and commands are in docs/robustness.md. Also usable from tests
(``art_worst_case``).
"""

import argparse
import json
import os
import time

import numpy as np

#: model -> (L-inf eps, L2 eps) where the cross-check runs: one radius per norm.
DEFAULT_MODELS = ("chnode_mnist_n12", "resnet_mnist_n8", "stable_node_mnist")
RADII = {"linf": 0.05, "l2": 1.0}
TOLERANCE = 0.02
RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "art_crosscheck.json")


def art_classifier(model, input_shape, classes):
    """``model`` (images in [0, 1] -> logits) wrapped as ART's ``TensorFlowV2Classifier``."""
    import tensorflow as tf
    from art.estimators.classification import TensorFlowV2Classifier

    def loss(y_true, logits):
        return tf.nn.softmax_cross_entropy_with_logits(labels=tf.cast(y_true, logits.dtype), logits=logits)

    from contractive_keras.robustness import logit_function

    logits = logit_function(model)
    return TensorFlowV2Classifier(model=lambda x, training=False: logits(x), nb_classes=classes, input_shape=tuple(input_shape), loss_object=loss,
                                  clip_values=(0.0, 1.0))


def art_attacks(classifier, norm, eps, *, apgd_steps=100, square_queries=5000, batch_size=100):
    """ART's APGD-CE, APGD-DLR and Square, configured as AutoAttack's standard version."""
    from art.attacks.evasion import AutoProjectedGradientDescent, SquareAttack

    art_norm = np.inf if norm == "linf" else 2
    common = dict(norm=art_norm, eps=eps, eps_step=2 * eps, max_iter=apgd_steps, nb_random_init=1,
                  batch_size=batch_size, verbose=False)
    return {
        "art-apgd-ce": AutoProjectedGradientDescent(classifier, loss_type="cross_entropy", **common),
        "art-apgd-dlr": AutoProjectedGradientDescent(classifier, loss_type="difference_logits_ratio", **common),
        "art-square": SquareAttack(classifier, norm=art_norm, eps=eps, max_iter=square_queries, p_init=0.8,
                                   nb_restarts=1, batch_size=batch_size, verbose=False),
    }


def art_worst_case(model, x, y, norm, eps, *, classes=10, seed=0, **options):
    """Per-image robust flags under ART's attacks (each on every image) and their worst case."""
    classifier = art_classifier(model, x.shape[1:], classes)
    predict = lambda images: np.argmax(classifier.predict(images, batch_size=200), -1)  # noqa: E731
    robust = predict(x) == y
    flags, seconds = {}, {}
    for name, attack in art_attacks(classifier, norm, eps, **options).items():
        np.random.seed(seed)
        t0 = time.perf_counter()
        x_adv = attack.generate(x, y=np.eye(classes)[y]).astype(np.float32)
        seconds[name] = time.perf_counter() - t0
        flags[name] = predict(x_adv) == y
        robust &= flags[name]
    return robust, flags, seconds


def compare(name, norm, eps, take, seed=0):
    """Ours against ART on one zoo model: the row written to the results file."""
    from contractive_keras import data, robustness, zoo

    model = zoo.load(name)
    x, y = data.load_numpy(zoo.info(name)["dataset"], "test")
    x, y = (x[:take, ..., None] / 255.0).astype(np.float32), y[:take].astype(np.int32)
    t0 = time.perf_counter()
    ours = robustness.run_suite(model, x, y, eps, norm=norm, suite="standard", seed=seed)
    ours_seconds = time.perf_counter() - t0
    art_robust, art_flags, art_seconds = art_worst_case(model, x, y, norm, eps, seed=seed)
    return {"model": name, "norm": norm, "eps": eps, "n": int(len(y)), "clean": ours.clean_accuracy,
            "ours": ours.accuracy, "ours_after": {a: ours.accuracy_after(a) for a in ours.attacks},
            "ours_seconds": ours_seconds, "art": float(art_robust.mean()),
            "art_each": {k: float(v.mean()) for k, v in art_flags.items()}, "art_seconds": art_seconds,
            "ours_broken_art_robust": int(np.sum(~ours.robust & art_robust)),
            "art_broken_ours_robust": int(np.sum(ours.robust & ~art_robust)),
            "holds": bool(ours.accuracy <= float(art_robust.mean()) + TOLERANCE)}


def markdown(path=RESULTS):
    """docs/robustness.md's cross-check table from the results file (accuracies in %)."""
    with open(path) as f:
        rows = json.load(f)["rows"]
    lines = ["| model | norm | eps | images | clean | ours: standard | ART: APGD-CE / APGD-DLR / Square | ART: worst "
             "| ours - ART | holds (<= +2) |", "|---|---|--:|--:|--:|--:|---|--:|--:|---|"]
    for r in rows:
        each = " / ".join(f"{100 * r['art_each'][k]:.1f}" for k in ("art-apgd-ce", "art-apgd-dlr", "art-square"))
        lines.append(f"| `{r['model']}` | {r['norm']} | {r['eps']:g} | {r['n']} | {100 * r['clean']:.1f} | "
                     f"{100 * r['ours']:.1f} | {each} | {100 * r['art']:.1f} | {100 * (r['ours'] - r['art']):+.1f} | "
                     f"{'yes' if r['holds'] else 'NO'} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS))
    parser.add_argument("--norms", default="linf,l2")
    parser.add_argument("--take", type=int, default=200)
    parser.add_argument("--output", default=RESULTS)
    parser.add_argument("--markdown", action="store_true", help="print docs/robustness.md's table and exit")
    args = parser.parse_args(argv)
    if args.markdown:
        print(markdown(args.output))
        return []
    rows = []
    if os.path.isfile(args.output):
        with open(args.output) as f:
            rows = json.load(f).get("rows", [])
    for name in filter(None, args.models.split(",")):
        for norm in filter(None, args.norms.split(",")):
            row = compare(name, norm, RADII[norm], args.take)
            rows = [r for r in rows if (r["model"], r["norm"]) != (name, norm)] + [row]
            print(f"{name} {norm} eps {row['eps']:g}: clean {100 * row['clean']:.1f} %, ours "
                  f"{100 * row['ours']:.1f} %, ART {100 * row['art']:.1f} % "
                  f"({', '.join(f'{k} {100 * v:.1f}' for k, v in row['art_each'].items())}); "
                  f"{'holds' if row['holds'] else 'FAILS'}", flush=True)
            os.makedirs(os.path.dirname(args.output), exist_ok=True)
            with open(args.output, "w") as f:
                json.dump({"command": "python -m benchmarks.art_crosscheck", "tolerance": TOLERANCE,
                           "rows": rows}, f, indent=2)
    return rows


if __name__ == "__main__":
    main()
