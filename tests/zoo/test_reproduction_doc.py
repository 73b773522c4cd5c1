"""docs/reproduction.md's section 1 tables are their generators' output, so they cannot drift
from the seed runs (docs/results/seeds) and the shipped models (zoo/manifest.json)."""

import importlib
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def reproduction():
    with open(os.path.join(ROOT, "docs", "reproduction.md")) as f:
        return f.read()


def test_table_1_is_the_seed_table(reproduction):
    seed_table = importlib.import_module("zoo.seed_table")
    runs = seed_table.load_runs(os.path.join(ROOT, "docs", "results", "seeds"))
    summaries = {cell: seed_table.cell_summary(r) for cell, r in runs.items()}
    assert seed_table.published_table(summaries) in reproduction, \
        "regenerate it: python zoo/seed_table.py --published"


def test_the_shipped_models_table_is_build_s_output(reproduction):
    build = importlib.import_module("zoo.build")
    assert build.reproduction_table() in reproduction, "regenerate it: python zoo/build.py --table"


def test_the_per_seed_table_is_the_seed_table_s(reproduction):
    seed_table = importlib.import_module("zoo.seed_table")
    runs = seed_table.load_runs(os.path.join(ROOT, "docs", "results", "seeds"))
    selections = {cell: seed_table.select(r) for cell, r in runs.items()}
    assert seed_table.per_seed_table(runs, selections) in reproduction, \
        "regenerate it: python zoo/seed_table.py --per_seed"
