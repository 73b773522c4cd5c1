"""datasets: the datasets' facts, defined once, without TensorFlow, and the
same objects under their old names in ``data``."""

import ast
import sys

import pytest

from contractive_keras import data, datasets


def test_datasets_imports_nothing_but_the_standard_library():
    with open(datasets.__file__, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module}
    assert imported <= set(sys.stdlib_module_names), imported


@pytest.mark.parametrize("name", datasets.__all__)
def test_data_re_exports_each_fact(name):
    assert getattr(data, name) is getattr(datasets, name)


def test_every_dataset_has_statistics_and_certified_radii():
    assert datasets.DATASETS == ("mnist", "fashion_mnist")
    for name in datasets.DATASETS:
        mean, std = datasets.NORMALIZATION[name]
        assert 0 < mean < 1 and 0 < std < 1
        radii = datasets.CERTIFIED_RADII[name]
        assert radii == tuple(sorted(radii)) and radii[0] > 0
    assert datasets.INPUT_SHAPE == (28, 28, 1) and datasets.NUM_CLASSES == 10
