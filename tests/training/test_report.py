"""training.report: JSON writes, certificate values, hardware summary."""

import json
import warnings

import numpy as np
import pytest

from contractive_keras import models
from contractive_keras.training import report, strategy


def test_write_json_converts_numpy_values_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "sub" / "summary.json"
    report.write_json(str(path), {"a": np.float32(0.5), "b": np.int64(3), "c": np.array([2.0])})
    assert json.loads(path.read_text()) == {"a": 0.5, "b": 3, "c": 2.0}
    assert sorted(p.name for p in path.parent.iterdir()) == ["summary.json"]


def test_certificate_summary_is_certify_summary_without_warnings():
    from contractive_keras import certify

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        model = models.build("chnode", depth=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        values = report.certificate_summary(model)
    assert values == pytest.approx(certify.summary(model, warn=False))
    assert values["gamma"] > 0


def test_certificate_summary_reports_a_failure_instead_of_raising():
    class Broken:
        def _flatten_layers(self, include_self=True):
            raise ValueError("cannot certify\nsecond line")

    values = report.certificate_summary(Broken())
    assert list(values) == ["certify_error"] and "\n" not in values["certify_error"]


def test_hardware_summary_names_the_strategy_and_versions():
    summary = report.hardware_summary(strategy.select_strategy("one_device"))
    assert summary["replicas"] == 1 and summary["strategy"] == "OneDeviceStrategy"
    assert {"cpu", "gpus", "python", "tensorflow", "keras"} <= set(summary)
