"""Pretrained models, the read side: list, verify, load.

Every zoo model takes float32 images in [0, 1] of shape ``(N, 28, 28, 1)`` and
returns logits ``(N, 10)``; normalisation is a layer inside the model. Each
comes as a ``.keras`` file and as a SavedModel (written by ``model.export()``,
shipped as a ``.tar.gz`` of the SavedModel directory), listed in a
``manifest.json`` with the sha256 and size of each file (format: zoo/README.md).

Where files are looked up, in order (shared/DESIGN.md, "Zoo"):

1. ``$CONTRACTIVE_KERAS_ZOO`` (whose own ``manifest.json``, if any, is read
   first and wins over the source tree's for the same name);
2. the source tree's ``zoo/`` folder next to the package;
3. the Keras cache (``$KERAS_HOME`` or ``~/.keras``, subfolder
   ``contractive_keras_zoo``), downloading with ``keras.utils.get_file`` from
   the manifest's ``url`` when one is set.

The first file found is checked against the manifest's size and sha256 before
anything reads it as a model; a mismatch raises ``VerificationError`` (it never
falls through to another copy). Verified bytes are held in memory and only
those bytes are deserialized (``.keras`` with ``safe_mode=True``; the archive is
unpacked from memory after a check that it holds only plain files).

Example:

>>> from contractive_keras import zoo
>>> zoo.list_models(family="stable_node", certified=True)     # doctest: +SKIP
{'stable_node_certified_mnist': 'Certified stabilized NODE ... (test 90.43 %, certified L2 1 58.80 %)', ...}
>>> model = zoo.load("chnode_mnist_n8")       # doctest: +SKIP
>>> zoo.info("chnode_mnist_n8")["test_accuracy"]   # doctest: +SKIP
"""

import hashlib
import io
import json
import os
import re
import shutil
import tarfile
import tempfile

import keras

from contractive_keras import backend
from contractive_keras import datasets
# ``.keras`` files are read by ``saving``; the names stay importable from here.
from contractive_keras.saving import load_keras_file, register_custom_objects  # noqa: F401

ENV_VAR = "CONTRACTIVE_KERAS_ZOO"
SOURCE_ZOO = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "zoo")
MANIFEST = "manifest.json"
FORMAT_VERSION = 1
CACHE_SUBDIR = "contractive_keras_zoo"
FILE_KINDS = ("keras", "saved_model")
#: The model families (the ODE block) an entry may name.
FAMILIES = ("chnode", "hdnn", "resnet", "node", "stable_node")
_NAME = re.compile(r"^[a-z0-9][a-z0-9_]*$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class ZooError(Exception):
    """Base class of the zoo's errors."""


class ManifestError(ZooError, ValueError):
    """A manifest is malformed; the message names the file and the field."""


class UnknownModelError(ZooError, LookupError):
    """No manifest lists the name; the message lists the available ones."""


class ZooFileNotFoundError(ZooError, FileNotFoundError):
    """No place holds the file; the message names every place tried."""


class VerificationError(ZooError):
    """A file's size or sha256 differs from the manifest; it was not loaded."""


def sha256_bytes(data):
    return hashlib.sha256(data).hexdigest()


def sha256_file(path):
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _cache_dir():
    """The Keras cache, as ``keras.utils.get_file`` resolves it (created if absent)."""
    directory = os.path.expanduser(os.environ.get("KERAS_HOME") or os.path.join("~", ".keras"))
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError:
        pass
    if not os.access(directory, os.W_OK):  # get_file's own fallback
        directory = os.path.join(tempfile.gettempdir(), ".keras")
    return directory


def _roots():
    roots = []
    if os.environ.get(ENV_VAR):
        roots.append((f"${ENV_VAR}", os.environ[ENV_VAR]))
    roots.append(("source tree", SOURCE_ZOO))
    return roots


def _safe_relative(path, where):
    parts = path.replace("\\", "/").split("/")
    if not path or path.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise ManifestError(f"{where}: path {path!r} must be relative, without '..' or empty parts")
    return path


def validate_entry(name, entry, where):
    """Checks one manifest entry (zoo/README.md's format); raises ``ManifestError``."""
    where = f"{where}: model {name!r}"
    if not _NAME.match(name):
        raise ManifestError(f"{where}: names are lowercase letters, digits and '_'")
    if not isinstance(entry, dict):
        raise ManifestError(f"{where}: entry must be an object")
    for key, kind in (("description", str), ("dataset", str), ("files", dict), ("metrics", dict),
                      ("card", str)):
        if not isinstance(entry.get(key), kind):
            raise ManifestError(f"{where}: field {key!r} missing or not a {kind.__name__}")
    if "\n" in entry["description"]:
        raise ManifestError(f"{where}: description must be one line")
    if entry["dataset"] not in datasets.DATASETS:
        raise ManifestError(f"{where}: dataset {entry['dataset']!r} not in {datasets.DATASETS}")
    if "family" in entry and entry["family"] not in FAMILIES:
        raise ManifestError(f"{where}: family {entry['family']!r} not in {FAMILIES}")
    if "certified" in entry and not isinstance(entry["certified"], bool):
        raise ManifestError(f"{where}: field 'certified' must be true or false")
    _safe_relative(entry["card"], where)
    for kind in FILE_KINDS:
        record = entry["files"].get(kind)
        if not isinstance(record, dict):
            raise ManifestError(f"{where}: files.{kind} missing (need {FILE_KINDS})")
        _safe_relative(record.get("path", ""), f"{where} files.{kind}")
        if not isinstance(record.get("sha256"), str) or not _SHA256.match(record["sha256"]):
            raise ManifestError(f"{where}: files.{kind}.sha256 must be 64 lowercase hex digits")
        if not isinstance(record.get("size"), int) or record["size"] < 0:
            raise ManifestError(f"{where}: files.{kind}.size must be a non-negative int")
    if not entry["files"]["saved_model"]["path"].endswith(".tar.gz"):
        raise ManifestError(f"{where}: files.saved_model.path must be a .tar.gz archive")
    for key in ("test_accuracy", "test_accuracy_first500"):
        value = entry["metrics"].get(key)
        if key == "test_accuracy" or value is not None:
            if not isinstance(value, (int, float)) or not 0 <= value <= 1:
                raise ManifestError(f"{where}: metrics.{key} must be a fraction in [0, 1], got {value!r}")


def read_manifest(path):
    """Reads and validates one manifest file; raises ``ManifestError``."""
    try:
        with open(path, encoding="utf-8") as f:
            manifest = json.load(f)
    except json.JSONDecodeError as e:
        raise ManifestError(f"{path}: not valid JSON ({e})") from e
    if not isinstance(manifest, dict) or manifest.get("format_version") != FORMAT_VERSION:
        raise ManifestError(f"{path}: format_version must be {FORMAT_VERSION}")
    if not isinstance(manifest.get("models"), dict):
        raise ManifestError(f"{path}: 'models' must be an object of name -> entry")
    if "url" in manifest and not isinstance(manifest["url"], str):
        raise ManifestError(f"{path}: 'url' must be a string")
    for name, entry in manifest["models"].items():
        validate_entry(name, entry, path)
    return manifest


def manifest_files():
    """The manifest files read, in priority order."""
    paths = [os.path.join(root, MANIFEST) for _, root in _roots()]
    return [p for p in paths if os.path.isfile(p)]


def _entries():
    """name -> entry (with its base 'url' resolved), earlier manifests first."""
    entries = {}
    for path in reversed(manifest_files()):
        manifest = read_manifest(path)
        for name, entry in manifest["models"].items():
            entries[name] = dict(entry, url=entry.get("url", manifest.get("url")))
    return entries


def _entry(name):
    entries = _entries()
    if name not in entries:
        raise UnknownModelError(
            f"unknown zoo model {name!r}; available: {sorted(entries) or 'none'} "
            f"(manifests read: {manifest_files() or 'none'})")
    return entries[name]


def list_models(*, family=None, dataset=None, certified=None):
    """``{name: one line}`` of the models in the manifests, optionally filtered.

    Each line is the description followed by the headline numbers the
    manifest holds: clean test accuracy, the standard worst-case attack at
    L-inf 0.05 (zoo/standard_attack.py) and the certified accuracy at L2 1
    (entries evaluated for it), in %.

    Args:
        family: keep one model family ("chnode", "hdnn", "resnet", "node",
            "stable_node"; the ODE block, certified CNNs included).
        dataset: keep "mnist" or "fashion_mnist".
        certified: True keeps the entries built to carry a whole-model
            certificate, False the others.

    Raises:
        ValueError: an unknown family or dataset.
    """
    if family is not None and family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; known: {', '.join(FAMILIES)}")
    if dataset is not None and dataset not in datasets.DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; known: {', '.join(datasets.DATASETS)}")
    lines = {}
    for name, entry in sorted(_entries().items()):
        if ((family is not None and entry.get("family") != family)
                or (dataset is not None and entry["dataset"] != dataset)
                or (certified is not None and bool(entry.get("certified")) != certified)):
            continue
        lines[name] = f"{entry['description']} ({headline(entry['metrics'])})"
    return lines


def headline(metrics):
    """``"test 97.03 %, standard L-inf 0.05 51.60 %"``: the figures of ``metrics`` a user chooses by."""
    parts = [f"test {100 * metrics['test_accuracy']:.2f} %"]
    for key, label in (("standard_linf_0.05", "standard L-inf 0.05"), ("certified_l2_1", "certified L2 1")):
        if key in metrics:
            parts.append(f"{label} {100 * metrics[key]:.2f} %")
    return ", ".join(parts)


def superseded(models, tolerance=0.005):
    """``{name: by}`` for each certified entry another entry of its family and dataset supersedes.

    Entry b supersedes entry a when, at the clean accuracy and at every L2
    radius both were certified at, b is at least a's accuracy minus
    ``tolerance`` (0.5 points, the order of the test set's sampling error),
    and b's accuracies sum higher. ``models`` is a manifest's "models" object.
    """
    def scores(entry):
        m = entry["metrics"]
        return {k: v for k, v in m.items()
                if k == "test_accuracy" or (k.startswith("certified_l2_") and not k.endswith("_bound"))}

    certified = {n: e for n, e in models.items() if any(k.startswith("certified_l2_") for k in e["metrics"])}
    found = {}
    for a, entry_a in certified.items():
        for b, entry_b in certified.items():
            if a == b or (entry_a.get("family"), entry_a["dataset"]) != (entry_b.get("family"), entry_b["dataset"]):
                continue
            sa, sb = scores(entry_a), scores(entry_b)
            shared = set(sa) & set(sb)
            if all(sb[k] >= sa[k] - tolerance for k in shared) and sum(sb[k] for k in shared) > sum(
                    sa[k] for k in shared):
                found[a] = b
                break
    return found


def info(name):
    """The model card's metrics and facts.

    Returns:
        A dict with ``name``, ``description``, ``dataset``, ``card`` (its
        relative path) and every metric of the manifest, at least
        ``test_accuracy`` (fraction of the full 10k test set).
    """
    entry = _entry(name)
    return {"name": name, "description": entry["description"], "dataset": entry["dataset"],
            "card": entry["card"], **entry["metrics"]}


def _verified_bytes(path, record):
    size = os.path.getsize(path)
    if size != record["size"]:
        raise VerificationError(
            f"{path}: {size} bytes, the manifest says {record['size']} (truncated or a "
            f"different file); refusing to load it")
    with open(path, "rb") as f:
        data = f.read()
    digest = sha256_bytes(data)
    if digest != record["sha256"]:
        hint = " It is a Git LFS pointer: run `git lfs pull`." if data.startswith(b"version https://git-lfs") else ""
        raise VerificationError(
            f"{path}: sha256 {digest} does not match the manifest's {record['sha256']}; "
            f"refusing to load it.{hint}")
    return data


def _locate(name, kind):
    """The verified bytes of one file of an entry (downloading if needed)."""
    entry = _entry(name)
    record = entry["files"][kind]
    tried = []
    for label, root in _roots():
        path = os.path.join(root, record["path"])
        if os.path.isfile(path):
            return _verified_bytes(path, record)
        tried.append(f"{label}: {path}")
    subdir, fname = os.path.split(record["path"])
    cached = os.path.join(_cache_dir(), CACHE_SUBDIR, subdir, fname)
    if entry["url"]:
        origin = entry["url"].rstrip("/") + "/" + record["path"]
        try:
            cached = keras.utils.get_file(
                fname=fname, origin=origin, file_hash=record["sha256"], hash_algorithm="sha256",
                cache_subdir=os.path.join(CACHE_SUBDIR, subdir), cache_dir=_cache_dir())
        except Exception as e:  # network and hash errors of get_file
            tried.append(f"download {origin}: {type(e).__name__}: {e}")
        else:
            return _verified_bytes(cached, record)
    elif os.path.isfile(cached):
        return _verified_bytes(cached, record)
    else:
        tried.append(f"Keras cache: {cached} (no url in the manifest to download from)")
    raise ZooFileNotFoundError(f"{kind} file of zoo model {name!r} not found. Places tried:\n  "
                               + "\n  ".join(tried))


def load(name):
    """The zoo model as a Keras model, from its verified ``.keras`` file.

    Raises:
        UnknownModelError, ZooFileNotFoundError, VerificationError.
    """
    data = _locate(name, "keras")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, f"{name}.keras")
        with open(path, "wb") as f:
            f.write(data)
        return load_keras_file(path)


def _members(archive_bytes, where):
    """``{relative path: bytes}`` of a SavedModel archive; only plain files."""
    files = {}
    with tarfile.open(fileobj=io.BytesIO(archive_bytes), mode="r:gz") as tar:
        for member in tar.getmembers():
            name = member.name[2:] if member.name.startswith("./") else member.name
            if member.isdir():
                continue
            if not member.isfile():
                raise VerificationError(f"{where}: archive member {member.name!r} is not a plain file")
            try:
                _safe_relative(name, where)
            except ManifestError as e:
                raise VerificationError(f"{where}: unsafe archive member {member.name!r}") from e
            files[name] = tar.extractfile(member).read()
    if "saved_model.pb" not in files:
        raise VerificationError(f"{where}: archive has no saved_model.pb at its root")
    return files


def _matches(directory, files):
    on_disk = set()
    for root, _, names in os.walk(directory):
        on_disk.update(os.path.relpath(os.path.join(root, n), directory).replace(os.sep, "/") for n in names)
    if on_disk != set(files):
        return False
    for rel, content in files.items():
        with open(os.path.join(directory, rel), "rb") as f:
            if f.read() != content:
                return False
    return True


def saved_model_path(name):
    """A directory holding the model's verified, unpacked SavedModel.

    The archive is verified, then unpacked under the Keras cache
    (``contractive_keras_zoo/unpacked/``); an existing unpacked copy is reused
    only if it equals the verified archive's content file by file.
    """
    record = _entry(name)["files"]["saved_model"]
    files = _members(_locate(name, "saved_model"), record["path"])
    parent = os.path.join(_cache_dir(), CACHE_SUBDIR, "unpacked")
    target = os.path.join(parent, f"{name}-{record['sha256'][:16]}")
    if os.path.isdir(target) and _matches(target, files):
        return target
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(dir=parent, prefix=".staging-")
    for rel, content in files.items():
        path = os.path.join(staging, *rel.split("/"))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(content)
    shutil.rmtree(target, ignore_errors=True)
    os.replace(staging, target)
    return target


def load_saved_model(name):
    """The zoo model's SavedModel, ``tf.saved_model.load`` of the verified copy.

    Its ``serve`` endpoint maps images to logits; ``keras.layers.TFSMLayer(
    zoo.saved_model_path(name), call_endpoint="serve")`` wraps it as a layer.
    TensorFlow only; on the other backends ``zoo.load(name)`` gives the Keras
    model of the same weights.
    """
    backend.require_tensorflow("zoo.load_saved_model (a TensorFlow SavedModel)",
                               f"zoo.load({name!r}), the .keras model")
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    return tf.saved_model.load(saved_model_path(name))
