"""The README's zoo section is generated from zoo/manifest.json, and says so truthfully."""

import importlib
import json
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def readme():
    with open(os.path.join(ROOT, "README.md")) as f:
        return f.read()


@pytest.fixture(scope="module")
def manifest_models():
    with open(os.path.join(ROOT, "zoo", "manifest.json")) as f:
        return json.load(f)["models"]


def test_the_zoo_table_is_build_s_output(readme):
    build = importlib.import_module("zoo.build")
    assert build.readme_table() in readme, "regenerate it: python zoo/build.py --readme_table"


def test_the_model_count_is_the_manifest_s(readme, manifest_models):
    section = readme[readme.index("## Pretrained models (zoo)"):]
    count = re.search(r"^(\d+) models\.", section, flags=re.MULTILINE)
    assert count, "the zoo section starts with '<n> models.'"
    assert int(count.group(1)) == len(manifest_models)


def test_every_manifest_entry_is_in_a_readme_table(readme, manifest_models):
    assert [name for name in manifest_models if f"`{name}`" not in readme] == []
