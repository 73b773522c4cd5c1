"""The zoo's write side: one entry's files and its manifest record (used by zoo/build.py).

``export_model`` writes ``<zoo_dir>/<name>/`` (``model.keras``, a reproducible
``saved_model.tar.gz`` of ``export.export_saved_model``'s SavedModel, the
``README.md`` card) and returns the manifest entry with each file's sha256 and
size; ``add_to_manifest`` records it in ``<zoo_dir>/manifest.json``. The read
side (list, verify, load) is ``contractive_keras.zoo``, which checks what is
written here against the same format (``zoo.validate_entry``, zoo/README.md).

Example:

>>> from zoo.export_entry import add_to_manifest, export_model       # doctest: +SKIP
>>> entry = export_model(model, "chnode_mnist_n8", "zoo", description="...",
...                      dataset="mnist", metrics={"test_accuracy": 0.97},
...                      card_text="# chnode_mnist_n8\\n")            # doctest: +SKIP
>>> add_to_manifest("zoo", "chnode_mnist_n8", entry)                  # doctest: +SKIP
"""

import gzip
import io
import json
import os
import tarfile
import tempfile

from contractive_keras import export, zoo

__all__ = ["add_to_manifest", "export_model", "file_record", "tar_gz_directory"]


def tar_gz_directory(directory, destination):
    """A reproducible .tar.gz of a directory's files (sorted names, zeroed times and owners).

    The same directory content always gives the same bytes, hence the same sha256.
    """
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for root, dirs, names in os.walk(directory):
            dirs.sort()
            for n in sorted(names):
                path = os.path.join(root, n)
                member = tarfile.TarInfo(os.path.relpath(path, directory).replace(os.sep, "/"))
                member.size, member.mode, member.mtime = os.path.getsize(path), 0o644, 0
                with open(path, "rb") as f:
                    tar.addfile(member, f)
    with open(destination, "wb") as f, gzip.GzipFile(fileobj=f, mode="wb", mtime=0, filename="") as gz:
        gz.write(buffer.getvalue())


def file_record(zoo_dir, relative):
    """The manifest's record of one file: ``{"path", "sha256", "size"}``."""
    path = os.path.join(zoo_dir, relative)
    return {"path": relative, "sha256": zoo.sha256_file(path), "size": os.path.getsize(path)}


def export_model(model, name, zoo_dir, *, description, dataset, metrics, card_text, url=None,
                 family=None, certified=None):
    """Writes ``<zoo_dir>/<name>/`` (model.keras, saved_model.tar.gz, README.md).

    Saves both formats, hashes them and returns the manifest entry
    (``add_to_manifest`` records it). ``metrics`` must hold ``test_accuracy``
    and should hold ``test_accuracy_first500``; ``family`` (the ODE block) and
    ``certified`` (built to carry a whole-model certificate) are what
    ``zoo.list_models`` filters on.
    """
    folder = os.path.join(zoo_dir, name)
    os.makedirs(folder, exist_ok=True)
    model.save(os.path.join(folder, "model.keras"))
    with tempfile.TemporaryDirectory() as tmp:
        # Endpoints "serve" (float32 pixels in [0, 1]) and "serve_uint8".
        export.export_saved_model(model, os.path.join(tmp, "sm"))
        tar_gz_directory(os.path.join(tmp, "sm"), os.path.join(folder, "saved_model.tar.gz"))
    with open(os.path.join(folder, "README.md"), "w", encoding="utf-8") as f:
        f.write(card_text)
    entry = {"description": description, "dataset": dataset}
    entry.update({k: v for k, v in (("family", family), ("certified", certified)) if v is not None})
    entry.update({"metrics": dict(metrics), "card": f"{name}/README.md",
                  "files": {"keras": file_record(zoo_dir, f"{name}/model.keras"),
                            "saved_model": file_record(zoo_dir, f"{name}/saved_model.tar.gz")}})
    if url:
        entry["url"] = url
    zoo.validate_entry(name, entry, "export_model")
    return entry


def add_to_manifest(zoo_dir, name, entry):
    """Adds or replaces ``name`` in ``<zoo_dir>/manifest.json`` (created if absent)."""
    path = os.path.join(zoo_dir, zoo.MANIFEST)
    if os.path.isfile(path):
        manifest = zoo.read_manifest(path)
    else:
        manifest = {"format_version": zoo.FORMAT_VERSION, "models": {}}
    zoo.validate_entry(name, entry, path)
    manifest["models"][name] = entry
    manifest["models"] = dict(sorted(manifest["models"].items()))
    with open(path, "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")
    return manifest
