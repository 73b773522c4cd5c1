"""zoo/standard_attack.py: the card's attack section, manifest metrics and docs/robustness.md's
tables are generated from a results file; single-attack rows and failed attacks never show."""

import importlib
import json

import pytest

standard_attack = importlib.import_module("zoo.standard_attack")

CARD = """# m

## Accuracy (measured by contractive_keras.robustness)

| setting | accuracy (mean ± std over draws) |
| --- | --- |
| clean, test set | 0.8839 |
| gaussian 0.05, test set | 0.7337 ± 0.0032 |
| fgsm 0.05 (linf), test set | 0.8856 |
| worst_case 0.1 (linf), test set | 0.7947 |
| pgd 0.1 (linf), first 1000 test images | 0.8490 |

Noise follows the reference protocol on normalised images (Gaussian variance, salt & pepper
amount; clipped to [-1, 1]); FGSM / PGD (40 steps, random start) act on [0, 1] pixels.

**These attacks failed on this model** (gradient masking, not robustness): each leaves at
least as many images correct as no attack.

- fgsm 0.05 (linf), test set: 0.8856 (clean 0.8839)

## Certificate

- gamma: 287.796
"""


def suite(eps, norm, after, clean=0.9):
    return {"suite": "standard", "eps": eps, "norm": norm, "n": 100, "clean_accuracy": clean,
            "accuracy": after[-1], "accuracy_after": dict(zip(("apgd-ce", "apgd-t", "square"), after)),
            "gradient_free": {"apgd-ce": False, "apgd-t": False, "square": True}, "seconds": {}}


def table(norm, radii, values, masked, clean=0.9):
    rows = [{"kind": "clean", "level": 0.0, "norm": None, "mean": clean, "std": 0.0, "draws": [clean]}]
    rows += [{"kind": "standard", "level": e, "norm": norm, "mean": v, "std": 0.0, "draws": [v]}
             for e, v in zip(radii, values)]
    check = {"name": "gradient_free_not_stronger", "passed": not masked, "evidence": "square +40 points"}
    return {"rows": rows, "metadata": {
        "suites": {"standard": [suite(e, norm, (0.8, 0.7, v)) for e, v in zip(radii, values)]},
        "masking": {"verdict": "x", "masked": masked, "checks": [check]}}}


def result(masked_linf=True):
    return {"model": "m", "dataset": "mnist", "take": 100, "command": "python zoo/standard_attack.py m",
            "cpu": "cpu", "cpu_count": 2, "seconds": {"linf": 60.0, "l2": 60.0}, "diagnostics_take": 50,
            "tables": {"linf": table("linf", (0.05, 0.1), (0.3, 0.1), masked_linf),
                       "l2": table("l2", (1.0, 1.58), (0.5, 0.2), False)}}


def test_card_section_replaces_single_attack_rows_and_the_failed_attack_warning():
    card = standard_attack.card_with_section(CARD, result())
    assert "| fgsm" not in card and "| pgd" not in card and "| worst_case" not in card
    assert "These attacks failed" not in card
    assert "| gaussian 0.05, test set | 0.7337 ± 0.0032 |" in card
    assert card.index(standard_attack.SECTION) < card.index("## Certificate")
    assert "| linf | 0.05 | 90.0 % | 80.0 % | 70.0 % | **30.0 %** |" in card
    assert "linf: **gradient masking detected**" in card and "l2: **no gradient masking detected**" in card
    assert "- FAIL: gradient_free_not_stronger: square +40 points" in card
    # regenerating from the regenerated card gives the same card
    assert standard_attack.card_with_section(card, result()) == card


def test_metrics_hold_robust_accuracy_per_radius_and_the_verdict():
    metrics = standard_attack.metrics(result())
    assert metrics == {"standard_take": 100, "masking": "gradient masking detected", "standard_clean": 0.9,
                       "standard_linf_0.05": 0.3, "standard_linf_0.1": 0.1, "standard_l2_1": 0.5,
                       "standard_l2_1.58": 0.2}
    assert standard_attack.metrics(result(False))["masking"] == "no gradient masking detected"


@pytest.mark.parametrize("fgsm,shown", [(0.95, "failed"), (0.6, "60.0†")])
def test_family_table_never_shows_an_attack_above_clean_and_marks_masked_models(tmp_path, fgsm, shown):
    r = result()
    fgsm_rows = [{"kind": "clean", "level": 0.0, "norm": None, "mean": 0.9},
                 {"kind": "gaussian", "level": 0.2, "norm": None, "mean": 0.7},
                 {"kind": "salt_pepper", "level": 0.2, "norm": None, "mean": 0.6},
                 {"kind": "fgsm", "level": 0.05, "norm": "linf", "mean": fgsm},
                 {"kind": "fgsm", "level": 0.1, "norm": "linf", "mean": 0.5}]
    r["protocols"] = {"linf": {"rows": fgsm_rows}, "l2": {"rows": [
        {"kind": "certified", "level": 1.0, "norm": "l2", "mean": 0.25}]}}
    (tmp_path / "m.json").write_text(json.dumps(r))
    lines = standard_attack.family_table(["m", "absent"], str(tmp_path)).splitlines()
    assert len(lines) == 3
    assert lines[2] == (f"| `m` | 100 | 90.0 | 70.0 | 60.0 | {shown} | 50.0† | 30.0 | 10.0 | 50.0 | 20.0 | 25.0 "
                        "| - | masked |")


def test_docs_robustness_md_holds_the_generated_tables():
    with open(f"{standard_attack.ROOT}/docs/robustness.md") as f:
        doc = f.read()
    assert standard_attack.robustness_tables() in doc, "regenerate: python zoo/standard_attack.py --doc_tables"


def test_reproduction_md_section_2_holds_the_generated_node_table():
    with open(f"{standard_attack.ROOT}/docs/reproduction.md") as f:
        doc = f.read()
    table = standard_attack.family_table(standard_attack.NODE_ENTRIES)
    assert table in doc, "regenerate: python zoo/standard_attack.py --node_table"
