"""docs/reproduction.md section 4 is scripts/retrain_check.py's table of the
records in docs/results/retrain/, and each record's verdict follows from its numbers."""

import importlib.util
import json
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def retrain_check():
    spec = importlib.util.spec_from_file_location("retrain_check", os.path.join(ROOT, "scripts", "retrain_check.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_doc_table_is_the_records_table(retrain_check):
    with open(os.path.join(ROOT, "docs", "reproduction.md")) as f:
        doc = f.read()
    assert retrain_check.table() in doc, "regenerate it: python scripts/retrain_check.py table"


def test_each_record_s_verdict_follows_from_its_numbers(retrain_check):
    records = retrain_check.load_records()
    assert records
    for r in records:
        differences = [abs(r["retrained"][k] - r["reference_values"][k]) for k in r["retrained"]]
        assert r["largest_difference"] == pytest.approx(max(differences), abs=1e-12)
        assert r["within_half_a_point"] == all(d <= retrain_check.TOLERANCE for d in differences)


def test_a_record_compares_only_the_measures_both_sides_have(retrain_check, tmp_path):
    ours = {"metrics": {"test_accuracy": 0.91, "certified_l2_1": 0.6, "certified_l2_0.25": 0.85}}
    study = {"clean_accuracy": 0.905, "certified_accuracy_pairwise": {"1.0": 0.59, "1.58": 0.39}}
    (tmp_path / "ours.json").write_text(json.dumps(ours))
    (tmp_path / "study.json").write_text(json.dumps(study))
    r = retrain_check.record("x", str(tmp_path / "ours.json"), str(tmp_path / "study.json"), "study", 60.0, "cmd")
    assert set(r["retrained"]) == {"clean", "certified 1"}
    assert r["largest_difference"] == pytest.approx(0.01) and not r["within_half_a_point"]
