"""The zoo's read side (contractive_keras.zoo) on a temporary zoo written by
zoo/export_entry.py: lookup order, verification before any deserialization,
clear errors, and the manifest format."""

import io
import json
import os
import shutil
import tarfile

import keras
import numpy as np
import pytest
import tensorflow as tf
from zoo.export_entry import add_to_manifest, export_model

from contractive_keras import data, zoo
from tests.robustness.classifiers import mnist_test, tiny_mnist_model
from tests.test_zoo_manifest import SUBSET, check_entry_loads_both_ways, check_recorded_accuracy

NAME = "tiny_linear_mnist"


def accuracy_on_test(model, n):
    x, y = data.load_numpy("mnist", "test")
    logits = model.predict(x[:n, ..., None] / 255.0, batch_size=1000, verbose=0)
    return float(np.mean(np.argmax(logits, -1) == y[:n]))


def build_tiny_zoo(directory, name=NAME):
    """A zoo directory with one entry: a trained softmax regression on MNIST."""
    model = tiny_mnist_model(hidden=0)
    entry = export_model(
        model, name, str(directory), description="softmax regression, test fixture",
        dataset="mnist", card_text="# tiny\n",
        metrics={"test_accuracy": accuracy_on_test(model, 10000),
                 "test_accuracy_first500": accuracy_on_test(model, SUBSET), "lipschitz_l2": 12.5})
    add_to_manifest(str(directory), name, entry)
    return model, entry


@pytest.fixture(scope="module")
def built_zoo(tmp_path_factory):
    directory = tmp_path_factory.mktemp("zoo")
    model, entry = build_tiny_zoo(directory)
    return str(directory), model, entry


@pytest.fixture
def env_zoo(built_zoo, tmp_path, monkeypatch):
    """A fresh copy of the built zoo as $CONTRACTIVE_KERAS_ZOO, a private
    Keras cache, and an empty source tree."""
    directory = str(tmp_path / "env_zoo")
    shutil.copytree(built_zoo[0], directory)
    monkeypatch.setenv(zoo.ENV_VAR, directory)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    monkeypatch.setattr(zoo, "SOURCE_ZOO", str(tmp_path / "source_zoo"))
    return directory


@pytest.fixture
def no_deserialization(monkeypatch):
    """Fails the test if anything tries to deserialize a model."""
    def forbidden(*args, **kwargs):
        raise AssertionError("a model was deserialized")

    monkeypatch.setattr(keras.saving, "load_model", forbidden)
    monkeypatch.setattr(tf.saved_model, "load", forbidden)


def test_list_models_and_info(env_zoo):
    info = zoo.info(NAME)
    assert info["dataset"] == "mnist" and 0.8 < info["test_accuracy"] <= 1
    assert info["lipschitz_l2"] == 12.5
    assert zoo.list_models() == {
        NAME: f"softmax regression, test fixture (test {100 * info['test_accuracy']:.2f} %)"}


def test_list_models_filters_by_family_dataset_and_certified(env_zoo):
    path = os.path.join(env_zoo, zoo.MANIFEST)
    manifest = json.load(open(path))
    base = manifest["models"][NAME]
    manifest["models"][NAME] = dict(base, family="chnode", certified=False)
    manifest["models"]["stable_fashion"] = dict(
        base, family="stable_node", dataset="fashion_mnist", certified=True,
        metrics=dict(base["metrics"], test_accuracy=0.8, certified_l2_1=0.5))
    json.dump(manifest, open(path, "w"))
    assert set(zoo.list_models()) == {NAME, "stable_fashion"}
    assert set(zoo.list_models(family="chnode")) == {NAME}
    assert set(zoo.list_models(dataset="fashion_mnist")) == {"stable_fashion"}
    assert set(zoo.list_models(certified=True)) == {"stable_fashion"}
    assert set(zoo.list_models(certified=False, family="stable_node")) == set()
    assert zoo.list_models(certified=True)["stable_fashion"].endswith("(test 80.00 %, certified L2 1 50.00 %)")
    with pytest.raises(ValueError, match="unknown family 'cnn'.*chnode"):
        zoo.list_models(family="cnn")
    manifest["models"][NAME]["family"] = "cnn"
    json.dump(manifest, open(path, "w"))
    with pytest.raises(zoo.ManifestError, match="family 'cnn'"):
        zoo.list_models()


def test_superseded_needs_every_radius_within_tolerance_and_a_higher_sum():
    def entry(family, dataset, clean, **certified):
        metrics = {"test_accuracy": clean, **{f"certified_l2_{k[1:].replace('p', '.')}": v
                                              for k, v in certified.items()}}
        return {"family": family, "dataset": dataset, "metrics": metrics}

    models = {"a": entry("stable_node", "mnist", 0.90, r1=0.50, r1p58=0.30),
              "b": entry("stable_node", "mnist", 0.897, r1=0.55, r1p58=0.31),   # clean 0.3 below a
              "c": entry("stable_node", "mnist", 0.95, r1=0.60, r1p58=0.20),    # 10 points below at 1.58
              "d": entry("chnode", "mnist", 0.99, r1=0.90, r1p58=0.90),         # another family
              "e": entry("stable_node", "fashion_mnist", 0.99, r1=0.90)}        # another dataset
    assert zoo.superseded(models) == {"a": "b"}
    assert zoo.superseded(models, tolerance=0.0) == {}
    assert zoo.superseded({"x": models["a"], "y": dict(models["a"])}) == {}    # equal: neither


def test_entry_loads_both_ways_with_the_original_logits(env_zoo, built_zoo):
    model, _ = check_entry_loads_both_ways(NAME)
    x, _ = mnist_test(32)
    np.testing.assert_allclose(model(x), built_zoo[1](x), atol=1e-6)
    check_recorded_accuracy(NAME, SUBSET)


def test_unknown_name_lists_the_available_models(env_zoo):
    with pytest.raises(zoo.UnknownModelError, match=rf"'nope'.*available: \['{NAME}'\]"):
        zoo.load("nope")


def flip_one_byte(path):
    with open(path, "r+b") as f:
        f.seek(os.path.getsize(path) // 2)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0xFF]))


@pytest.mark.parametrize("kind,loader", [("keras", zoo.load), ("saved_model", zoo.load_saved_model)])
def test_tampered_files_are_refused_before_deserialization(env_zoo, no_deserialization, kind, loader):
    flip_one_byte(os.path.join(env_zoo, zoo._entry(NAME)["files"][kind]["path"]))
    with pytest.raises(zoo.VerificationError, match="sha256 .* does not match .* refusing to load"):
        loader(NAME)


@pytest.mark.parametrize("kind,loader", [("keras", zoo.load), ("saved_model", zoo.load_saved_model)])
def test_truncated_files_are_refused(env_zoo, no_deserialization, kind, loader):
    path = os.path.join(env_zoo, zoo._entry(NAME)["files"][kind]["path"])
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) - 100)
    with pytest.raises(zoo.VerificationError, match="truncated"):
        loader(NAME)


def test_git_lfs_pointer_is_refused_with_a_hint(env_zoo, no_deserialization):
    path = os.path.join(env_zoo, zoo._entry(NAME)["files"]["keras"]["path"])
    size = os.path.getsize(path)
    pointer = b"version https://git-lfs.github.com/spec/v1\n"
    with open(path, "wb") as f:
        f.write(pointer + b" " * (size - len(pointer)))  # same size, other bytes
    with pytest.raises(zoo.VerificationError, match="git lfs pull"):
        zoo.load(NAME)


def test_missing_file_names_every_place_tried(env_zoo):
    os.remove(os.path.join(env_zoo, NAME, "model.keras"))
    with pytest.raises(zoo.ZooFileNotFoundError) as error:
        zoo.load(NAME)
    message = str(error.value)
    assert "$CONTRACTIVE_KERAS_ZOO" in message and "source tree" in message and "Keras cache" in message


def test_lookup_falls_back_to_source_tree_then_keras_cache(env_zoo, tmp_path):
    relative = zoo._entry(NAME)["files"]["keras"]["path"]
    moved = os.path.join(zoo.SOURCE_ZOO, relative)
    os.makedirs(os.path.dirname(moved))
    shutil.move(os.path.join(env_zoo, relative), moved)
    assert zoo.load(NAME).count_params() > 0
    cached = os.path.join(os.environ["KERAS_HOME"], zoo.CACHE_SUBDIR, relative)
    os.makedirs(os.path.dirname(cached))
    shutil.move(moved, cached)
    assert zoo.load(NAME).count_params() > 0
    flip_one_byte(cached)
    with pytest.raises(zoo.VerificationError):
        zoo.load(NAME)


def test_first_copy_found_is_verified_and_never_skipped(env_zoo, no_deserialization):
    # A good copy in the source tree does not excuse a bad one found first.
    relative = zoo._entry(NAME)["files"]["keras"]["path"]
    os.makedirs(os.path.join(zoo.SOURCE_ZOO, NAME))
    shutil.copy(os.path.join(env_zoo, relative), os.path.join(zoo.SOURCE_ZOO, relative))
    flip_one_byte(os.path.join(env_zoo, relative))
    with pytest.raises(zoo.VerificationError, match=os.path.basename(env_zoo)):
        zoo.load(NAME)


def set_manifest_url(directory, url):
    path = os.path.join(directory, zoo.MANIFEST)
    manifest = json.load(open(path))
    manifest["url"] = url
    json.dump(manifest, open(path, "w"))


def test_download_through_keras_get_file_with_sha256(env_zoo, tmp_path):
    server = str(tmp_path / "server")
    shutil.copytree(env_zoo, server)
    for kind in ("keras", "saved_model"):
        os.remove(os.path.join(env_zoo, zoo._entry(NAME)["files"][kind]["path"]))
    set_manifest_url(env_zoo, "file://" + server)
    model = zoo.load(NAME)
    assert np.asarray(zoo.load_saved_model(NAME).serve(mnist_test(4)[0])).shape == (4, 10)
    cached = os.path.join(os.environ["KERAS_HOME"], zoo.CACHE_SUBDIR, NAME, "model.keras")
    assert os.path.isfile(cached) and model.count_params() > 0


def test_download_of_a_wrong_file_is_refused(env_zoo, tmp_path, no_deserialization):
    server = str(tmp_path / "server")
    shutil.copytree(env_zoo, server)
    os.remove(os.path.join(env_zoo, NAME, "model.keras"))
    flip_one_byte(os.path.join(server, NAME, "model.keras"))
    set_manifest_url(env_zoo, "file://" + server)
    with pytest.raises(zoo.ZooFileNotFoundError, match="download file://"):
        zoo.load(NAME)


def test_modified_unpacked_savedmodel_is_replaced_by_the_verified_archive(env_zoo):
    directory = zoo.saved_model_path(NAME)
    pb = os.path.join(directory, "saved_model.pb")
    original = open(pb, "rb").read()
    flip_one_byte(pb)
    open(os.path.join(directory, "extra.txt"), "w").write("x")
    assert zoo.saved_model_path(NAME) == directory
    assert open(pb, "rb").read() == original
    assert not os.path.exists(os.path.join(directory, "extra.txt"))


def write_archive(path, members):
    with tarfile.open(path, "w:gz") as tar:
        for info, content in members:
            tar.addfile(info, io.BytesIO(content) if content is not None else None)


@pytest.mark.parametrize("bad_member", ["../escape.txt", "/abs.txt", "link"])
def test_archive_with_unsafe_members_is_refused(env_zoo, no_deserialization, bad_member):
    path = os.path.join(env_zoo, zoo._entry(NAME)["files"]["saved_model"]["path"])
    good = tarfile.TarInfo("saved_model.pb")
    good.size = 3
    bad = tarfile.TarInfo(bad_member)
    if bad_member == "link":
        bad.type, bad.linkname, content = tarfile.SYMTYPE, "/etc/passwd", None
    else:
        bad.size, content = 1, b"x"
    write_archive(path, [(good, b"abc"), (bad, content)])
    manifest_path = os.path.join(env_zoo, zoo.MANIFEST)
    manifest = json.load(open(manifest_path))
    # The manifest trusts this archive (hash matches): unpacking must still refuse.
    manifest["models"][NAME]["files"]["saved_model"].update(sha256=zoo.sha256_file(path),
                                                            size=os.path.getsize(path))
    json.dump(manifest, open(manifest_path, "w"))
    with pytest.raises(zoo.VerificationError, match="not a plain file|unsafe archive member"):
        zoo.load_saved_model(NAME)


def test_load_uses_keras_safe_mode(env_zoo):
    # A .keras file with a Lambda layer, correctly hashed, is still refused.
    inputs = keras.Input((28, 28, 1))
    outputs = keras.layers.Dense(10)(keras.layers.Flatten()(keras.layers.Lambda(lambda t: t * 2)(inputs)))
    path = os.path.join(env_zoo, NAME, "model.keras")
    keras.Model(inputs, outputs).save(path)
    manifest_path = os.path.join(env_zoo, zoo.MANIFEST)
    manifest = json.load(open(manifest_path))
    manifest["models"][NAME]["files"]["keras"].update(sha256=zoo.sha256_file(path), size=os.path.getsize(path))
    json.dump(manifest, open(manifest_path, "w"))
    with pytest.raises(ValueError, match="safe_mode"):
        zoo.load(NAME)


def test_environment_manifest_wins_over_the_source_tree(env_zoo, built_zoo):
    os.makedirs(zoo.SOURCE_ZOO)
    source = json.load(open(os.path.join(env_zoo, zoo.MANIFEST)))
    source["models"][NAME]["description"] = "older copy"
    source["models"]["only_in_source"] = dict(source["models"][NAME], description="other")
    json.dump(source, open(os.path.join(zoo.SOURCE_ZOO, zoo.MANIFEST), "w"))
    assert {n: d.split(" (test")[0] for n, d in zoo.list_models().items()} == {
        NAME: "softmax regression, test fixture", "only_in_source": "other"}


@pytest.mark.parametrize("change,message", [
    (lambda m: m.update(format_version=2), "format_version must be 1"),
    (lambda m: m["models"][NAME]["files"]["keras"].update(sha256="abc"), "sha256 must be 64"),
    (lambda m: m["models"][NAME]["files"]["keras"].update(path="../x.keras"), "must be relative"),
    (lambda m: m["models"][NAME]["metrics"].pop("test_accuracy"), "test_accuracy must be a fraction"),
    (lambda m: m["models"][NAME]["metrics"].update(test_accuracy=97.0), "test_accuracy must be a fraction"),
    (lambda m: m["models"][NAME].update(dataset="cifar10"), "dataset 'cifar10'"),
    (lambda m: m["models"][NAME]["files"].pop("saved_model"), "files.saved_model missing"),
    (lambda m: m["models"].update({"Bad Name": m["models"][NAME]}), "lowercase letters"),
])
def test_malformed_manifest_is_refused_naming_the_field(env_zoo, change, message):
    path = os.path.join(env_zoo, zoo.MANIFEST)
    manifest = json.load(open(path))
    change(manifest)
    json.dump(manifest, open(path, "w"))
    with pytest.raises(zoo.ManifestError, match=message):
        zoo.list_models()


LOAD_IN_FRESH_PROCESS = """
import sys
import numpy as np
from contractive_keras import zoo
from contractive_keras.robustness import attacks
x = np.load(sys.argv[1])
model = zoo.load("chnode_tiny")
saved = zoo.load_saved_model("chnode_tiny")
assert type(model.get_layer("chnode")).__name__ == "CHNODE"
x_adv = attacks.fgsm(saved, x, np.zeros(len(x), np.int64), 0.1)  # gradients through the SavedModel
assert float(np.abs(np.asarray(x_adv) - x).max()) > 0.05
np.save(sys.argv[2], np.stack([model(x).numpy(), saved.serve(x).numpy()]))
"""


def test_chnode_model_loads_in_a_fresh_process_both_ways(tmp_path, monkeypatch):
    # A fresh interpreter has not imported the lazy layers package: zoo.load
    # must register contractive_keras's serializable classes itself.
    import subprocess
    import sys
    import warnings

    from contractive_keras import models

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # untrained: not certified contractive
        model = models.build("chnode", depth=2)
    add_to_manifest(str(tmp_path / "zoo"), "chnode_tiny", export_model(
        model, "chnode_tiny", str(tmp_path / "zoo"), description="untrained CH-NODE",
        dataset="mnist", metrics={"test_accuracy": 0.1}, card_text="# untrained\n"))
    x, _ = mnist_test(8)
    np.save(tmp_path / "x.npy", x)
    env = dict(os.environ, CONTRACTIVE_KERAS_ZOO=str(tmp_path / "zoo"),
               KERAS_HOME=str(tmp_path / "keras_home"), TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run([sys.executable, "-c", LOAD_IN_FRESH_PROCESS, str(tmp_path / "x.npy"),
                             str(tmp_path / "out.npy")], env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    keras_logits, saved_logits = np.load(tmp_path / "out.npy")
    reference = model(x).numpy()
    # float32 round-off, relative to the scale of the (untrained, large) logits.
    scale = np.abs(reference).max()
    np.testing.assert_allclose(keras_logits, reference, rtol=0, atol=1e-5 * scale)
    np.testing.assert_allclose(saved_logits, reference, rtol=0, atol=1e-5 * scale)
