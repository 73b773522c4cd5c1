"""zoo/export_entry.py, the zoo's write side: reproducible archives, records that
match the files, and manifests the read side accepts."""

import json
import os

import pytest
from zoo.export_entry import add_to_manifest, export_model, file_record, tar_gz_directory

from contractive_keras import zoo
from tests.robustness.classifiers import tiny_mnist_model


def test_savedmodel_archive_is_reproducible(tmp_path):
    directory = tmp_path / "sm"
    tiny_mnist_model(hidden=0).export(str(directory), verbose=False)
    tar_gz_directory(str(directory), str(tmp_path / "a.tar.gz"))
    tar_gz_directory(str(directory), str(tmp_path / "b.tar.gz"))
    assert zoo.sha256_file(str(tmp_path / "a.tar.gz")) == zoo.sha256_file(str(tmp_path / "b.tar.gz"))


def test_export_writes_both_formats_and_records_their_hashes(tmp_path):
    entry = export_model(tiny_mnist_model(hidden=0), "tiny", str(tmp_path), description="tiny",
                         dataset="mnist", metrics={"test_accuracy": 0.9}, card_text="# tiny\n")
    assert sorted(os.listdir(tmp_path / "tiny")) == ["README.md", "model.keras", "saved_model.tar.gz"]
    for kind, relative in (("keras", "tiny/model.keras"), ("saved_model", "tiny/saved_model.tar.gz")):
        assert entry["files"][kind] == file_record(str(tmp_path), relative)
        assert entry["files"][kind]["size"] == os.path.getsize(tmp_path / relative)
    assert entry["card"] == "tiny/README.md"


def test_add_to_manifest_replaces_sorts_and_is_read_back(tmp_path):
    entry = export_model(tiny_mnist_model(hidden=0), "tiny", str(tmp_path), description="tiny",
                         dataset="mnist", metrics={"test_accuracy": 0.9}, card_text="# tiny\n")
    add_to_manifest(str(tmp_path), "zz_second", dict(entry, description="second"))
    add_to_manifest(str(tmp_path), "tiny", entry)
    add_to_manifest(str(tmp_path), "tiny", dict(entry, description="replaced"))
    manifest = zoo.read_manifest(str(tmp_path / zoo.MANIFEST))
    assert list(manifest["models"]) == ["tiny", "zz_second"]
    assert manifest["models"]["tiny"]["description"] == "replaced"
    assert json.load(open(tmp_path / zoo.MANIFEST))["format_version"] == zoo.FORMAT_VERSION


def test_export_refuses_an_entry_the_read_side_would_reject(tmp_path):
    with pytest.raises(zoo.ManifestError, match="test_accuracy must be a fraction"):
        export_model(tiny_mnist_model(hidden=0), "tiny", str(tmp_path), description="tiny",
                     dataset="mnist", metrics={"test_accuracy": 97.0}, card_text="# tiny\n")
