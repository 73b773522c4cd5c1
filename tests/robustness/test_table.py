"""robustness.table: row labels, lookup, series and the JSON / CSV / Markdown exports."""

import csv
import io
import json

import numpy as np
import pytest

from contractive_keras.robustness import RobustnessTable, Row


def test_row_label_and_lookup_error():
    table = RobustnessTable([Row.from_draws("pgd", 0.1, "l2", [0.5])])
    assert table.rows[0].label == "pgd l2 eps=0.1"
    with pytest.raises(KeyError, match="rows:"):
        table.lookup("fgsm")


def synthetic_table():
    rows = [Row.from_draws("clean", 0.0, None, [0.9]),
            Row.from_draws("gaussian", 0.2, None, [0.5, 0.7, 0.6]),
            Row.from_draws("pgd", 0.1, "linf", [0.3]),
            Row.from_draws("pgd", 0.05, "linf", [0.6])]
    return RobustnessTable(rows, {"seed": 3})


def test_row_from_draws_holds_mean_and_sample_spread():
    row = Row.from_draws("gaussian", 0.2, None, [0.5, 0.7, 0.6])
    assert row.label == "gaussian var=0.2"
    assert row.mean == pytest.approx(0.6) and row.std == pytest.approx(0.1)
    assert Row.from_draws("clean", 0, None, [0.9]).std == 0.0


def test_series_is_sorted_by_level():
    levels, means, stds = synthetic_table().series("pgd", "linf")
    np.testing.assert_allclose(levels, [0.05, 0.1])
    np.testing.assert_allclose(means, [0.6, 0.3])
    np.testing.assert_allclose(stds, [0.0, 0.0])


def test_exports_round_trip(tmp_path):
    table = synthetic_table()
    restored = RobustnessTable.from_dict(json.loads(table.to_json(str(tmp_path / "t.json"))))
    assert restored.rows == table.rows and restored.metadata == {"seed": 3}
    rows = list(csv.DictReader(io.StringIO(table.to_csv(str(tmp_path / "t.csv")))))
    assert [r["kind"] for r in rows] == [r.kind for r in table]
    assert len(rows[1]["draws"].split(";")) == 3
    markdown = table.to_markdown(str(tmp_path / "t.md"))
    assert markdown.splitlines()[:2] == ["| setting | accuracy (%) | draws |", "|---|---|---|"]
    assert open(tmp_path / "t.md").read() == markdown == str(table)
