"""Data loaders: real offline copies, small files written here, and errors."""

import gzip
import os
import struct

import numpy as np
import pytest

from contractive_keras import data

REAL_DIR = os.environ.get("CONTRACTIVE_KERAS_DATA")

# Official class counts of the two test sets.
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]


def _has_real(name):
    if not REAL_DIR:
        return False
    return os.path.isfile(os.path.join(REAL_DIR, f"{name}.npz")) or os.path.isdir(
        os.path.join(REAL_DIR, name)
    )


def _write_idx(path, array, magic):
    header = struct.pack(">i", magic) + struct.pack(f">{array.ndim}i", *array.shape)
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def _write_idx_set(directory, n_train=30, n_test=10, gz=True, seed=0):
    rng = np.random.default_rng(seed)
    os.makedirs(directory, exist_ok=True)
    arrays = {}
    suffix = ".gz" if gz else ""
    for split, prefix, n in (("train", "train", n_train), ("test", "t10k", n_test)):
        x = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        y = rng.integers(0, 10, size=(n,), dtype=np.uint8)
        _write_idx(os.path.join(directory, f"{prefix}-images-idx3-ubyte{suffix}"), x, 2051)
        _write_idx(os.path.join(directory, f"{prefix}-labels-idx1-ubyte{suffix}"), y, 2049)
        arrays[split] = (x, y)
    return arrays


# --- real offline copies --------------------------------------------------------


@pytest.mark.skipif(not _has_real("mnist"), reason="MNIST offline copy absent: run `make data`")
def test_real_mnist_has_official_splits_and_labels():
    x_tr, y_tr = data.load_numpy("mnist", "train", use_tfds=False)
    x_te, y_te = data.load_numpy("mnist", "test", use_tfds=False)
    assert x_tr.shape == (60000, 28, 28) and x_tr.dtype == np.uint8
    assert x_te.shape == (10000, 28, 28) and x_te.dtype == np.uint8
    assert np.bincount(y_tr, minlength=10).tolist() == MNIST_TRAIN_COUNTS
    assert np.bincount(y_te, minlength=10).tolist() == MNIST_TEST_COUNTS
    # Digits are white on black: borders dark, centre bright on average.
    assert x_te[:, 0, :].mean() < 1 and x_te[:, 10:18, 10:18].mean() > 80


@pytest.mark.skipif(not _has_real("fashion_mnist"), reason="Fashion-MNIST offline copy absent: run `make data`")
def test_real_fashion_mnist_has_official_splits_and_labels():
    x_tr, y_tr = data.load_numpy("fashion_mnist", "train", use_tfds=False)
    x_te, y_te = data.load_numpy("fashion_mnist", "test", use_tfds=False)
    assert x_tr.shape == (60000, 28, 28) and x_te.shape == (10000, 28, 28)
    assert np.bincount(y_tr, minlength=10).tolist() == [6000] * 10
    assert np.bincount(y_te, minlength=10).tolist() == [1000] * 10
    # Fashion-MNIST and MNIST are different data.
    if _has_real("mnist"):
        assert not np.array_equal(x_te[:10], data.load_numpy("mnist", "test")[0][:10])


@pytest.mark.skipif(not _has_real("mnist"), reason="MNIST offline copy absent: run `make data`")
def test_real_pipeline_batches_and_normalisation():
    ds = data.load("mnist", "test", batch_size=500, normalize=True, use_tfds=False)
    xs, ys = [], []
    for x, y in ds:
        xs.append(x.numpy())
        ys.append(y.numpy())
    x = np.concatenate(xs)
    assert x.shape == (10000, 28, 28, 1) and x.dtype == np.float32
    assert np.concatenate(ys).dtype == np.int32
    mean, std = data.NORMALIZATION["mnist"]
    # The reference mean/std are those of MNIST training pixels: the test
    # set standardised with them has mean ~0 and std ~1.
    assert abs(x.mean()) < 0.02 and abs(x.std() - 1) < 0.02
    assert np.isclose(x.min(), (0 - mean) / std) and np.isclose(x.max(), (1 - mean) / std)


# --- small files written here ---------------------------------------------------


@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("layout", ["named_subdir", "flat"])
def test_idx_files_round_trip(tmp_path, gz, layout):
    directory = tmp_path / "mnist" if layout == "named_subdir" else tmp_path
    arrays = _write_idx_set(str(directory), gz=gz)
    for split in data.SPLITS:
        x, y = data.load_numpy("mnist", split, data_dir=str(tmp_path), use_tfds=False)
        np.testing.assert_array_equal(x, arrays[split][0])
        np.testing.assert_array_equal(y, arrays[split][1])
        assert y.dtype == np.int64


def test_npz_round_trip_and_env_var(tmp_path, monkeypatch):
    rng = np.random.default_rng(1)
    x_tr = rng.integers(0, 256, (20, 28, 28), dtype=np.uint8)
    y_tr = rng.integers(0, 10, 20).astype(np.uint8)
    x_te = rng.integers(0, 256, (5, 28, 28), dtype=np.uint8)
    y_te = rng.integers(0, 10, 5).astype(np.uint8)
    np.savez(tmp_path / "fashion_mnist.npz", x_train=x_tr, y_train=y_tr, x_test=x_te, y_test=y_te)
    monkeypatch.setenv(data.ENV_VAR, str(tmp_path))
    x, y = data.load_numpy("fashion_mnist", "test", use_tfds=False)
    np.testing.assert_array_equal(x, x_te)
    np.testing.assert_array_equal(y, y_te)


def test_source_tree_data_is_tried_after_env_var(tmp_path, monkeypatch):
    tree = _write_idx_set(str(tmp_path / "tree" / "mnist"), seed=3)
    monkeypatch.delenv(data.ENV_VAR, raising=False)
    monkeypatch.setattr(data, "SOURCE_TREE_DATA", str(tmp_path / "tree"))
    x, _ = data.load_numpy("mnist", "test", use_tfds=False)
    np.testing.assert_array_equal(x, tree["test"][0])


def test_explicit_data_dir_takes_precedence_over_env_var(tmp_path, monkeypatch):
    a = _write_idx_set(str(tmp_path / "a" / "mnist"), seed=1)
    _write_idx_set(str(tmp_path / "b" / "mnist"), seed=2)
    monkeypatch.setenv(data.ENV_VAR, str(tmp_path / "b"))
    x, _ = data.load_numpy("mnist", "train", data_dir=str(tmp_path / "a"), use_tfds=False)
    np.testing.assert_array_equal(x, a["train"][0])


def test_pipeline_scaling_shuffle_seed_and_take(tmp_path):
    arrays = _write_idx_set(str(tmp_path / "mnist"), n_train=50)
    kwargs = dict(data_dir=str(tmp_path), use_tfds=False, seed=7)
    first = [y.numpy() for _, y in data.load("mnist", "train", 8, **kwargs)]
    second = [y.numpy() for _, y in data.load("mnist", "train", 8, **kwargs)]
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    labels = np.concatenate(first)
    assert sorted(labels.tolist()) == sorted(arrays["train"][1].tolist())
    assert not np.array_equal(labels, arrays["train"][1])  # shuffled
    x, _ = next(iter(data.load("mnist", "train", 50, shuffle=False, **kwargs)))
    np.testing.assert_allclose(x.numpy()[..., 0], arrays["train"][0] / 255.0, rtol=1e-6)
    sizes = [int(x.shape[0]) for x, _ in data.load("mnist", "train", 8, take=20, drop_remainder=True, **kwargs)]
    assert sizes == [8, 8]


def test_repeat_yields_more_than_one_epoch(tmp_path):
    _write_idx_set(str(tmp_path / "mnist"), n_train=10)
    ds = data.load("mnist", "train", 4, data_dir=str(tmp_path), use_tfds=False, repeat=True)
    assert len(list(ds.take(7))) == 7


# --- errors ---------------------------------------------------------------------


def test_missing_source_names_every_place_tried(tmp_path, monkeypatch):
    monkeypatch.setenv(data.ENV_VAR, str(tmp_path / "env_dir"))
    os.makedirs(tmp_path / "env_dir")
    os.makedirs(tmp_path / "tree_data")
    monkeypatch.setattr(data, "SOURCE_TREE_DATA", str(tmp_path / "tree_data"))

    def offline(name, split):
        raise ConnectionError("no network")

    monkeypatch.setattr(data, "_from_tfds", offline)
    with pytest.raises(data.DataSourceError) as info:
        data.load_numpy("mnist", "test", data_dir=str(tmp_path / "nowhere"))
    message = str(info.value)
    assert f"data_dir={tmp_path / 'nowhere'}" in message
    assert f"${data.ENV_VAR}={tmp_path / 'env_dir'}" in message
    assert f"source tree data/={tmp_path / 'tree_data'}" in message
    assert "tensorflow_datasets" in message and "no network" in message
    assert "make data" in message
    assert len(info.value.attempts) == 4
    assert isinstance(info.value, FileNotFoundError)


def test_truncated_idx_file_is_refused(tmp_path):
    _write_idx_set(str(tmp_path / "mnist"), gz=False)
    path = tmp_path / "mnist" / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(data.CorruptDataError, match="t10k-images-idx3-ubyte"):
        data.load_numpy("mnist", "test", data_dir=str(tmp_path), use_tfds=False)


def test_wrong_magic_is_refused(tmp_path):
    _write_idx_set(str(tmp_path / "mnist"), gz=False)
    path = tmp_path / "mnist" / "t10k-labels-idx1-ubyte"
    raw = bytearray(path.read_bytes())
    raw[3] = 0x07
    path.write_bytes(bytes(raw))
    with pytest.raises(data.CorruptDataError, match="magic"):
        data.load_numpy("mnist", "test", data_dir=str(tmp_path), use_tfds=False)


def test_corrupted_gzip_is_refused(tmp_path):
    _write_idx_set(str(tmp_path / "mnist"), gz=True)
    path = tmp_path / "mnist" / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(data.CorruptDataError, match="train-images"):
        data.load_numpy("mnist", "train", data_dir=str(tmp_path), use_tfds=False)


def test_npz_with_wrong_shape_is_refused(tmp_path):
    np.savez(tmp_path / "mnist.npz", x_train=np.zeros((3, 28, 27), np.uint8), y_train=np.zeros(3),
             x_test=np.zeros((3, 28, 28), np.uint8), y_test=np.zeros(3))
    with pytest.raises(data.CorruptDataError, match=r"\(N, 28, 28\)"):
        data.load_numpy("mnist", "train", data_dir=str(tmp_path), use_tfds=False)


def test_labels_out_of_range_are_refused(tmp_path):
    np.savez(tmp_path / "mnist.npz", x_train=np.zeros((3, 28, 28), np.uint8), y_train=np.array([0, 3, 12]),
             x_test=np.zeros((1, 28, 28), np.uint8), y_test=np.zeros(1))
    with pytest.raises(data.CorruptDataError, match="0..9"):
        data.load_numpy("mnist", "train", data_dir=str(tmp_path), use_tfds=False)


@pytest.mark.parametrize("name, split, match", [
    ("cifar10", "train", "Unknown dataset 'cifar10'"),
    ("mnist", "validation", "Unknown split 'validation'"),
])
def test_bad_names_list_the_allowed_values(name, split, match):
    with pytest.raises(ValueError, match=match):
        data.load_numpy(name, split)


@pytest.mark.parametrize("batch_size", [0, -3, 2.5])
def test_bad_batch_size(tmp_path, batch_size):
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        data.load("mnist", "train", batch_size, data_dir=str(tmp_path))


def test_split_validation_holds_out_the_last_n_examples():
    images = np.arange(10 * 28 * 28, dtype=np.uint8).reshape(10, 28, 28)
    labels = np.arange(10) % 10
    (x_train, y_train), (x_val, y_val) = data.split_validation(images, labels, 3)
    np.testing.assert_array_equal(x_train, images[:7])
    np.testing.assert_array_equal(y_train, labels[:7])
    np.testing.assert_array_equal(x_val, images[7:])
    np.testing.assert_array_equal(y_val, labels[7:])
    (x_all, _), (x_none, y_none) = data.split_validation(images, labels, 0)
    assert len(x_all) == 10 and len(x_none) == 0 and len(y_none) == 0


@pytest.mark.parametrize("size, match", [(-1, ">= 0"), (10, "leaves no training example")])
def test_split_validation_refuses_sizes_outside_the_data(size, match):
    images = np.zeros((10, 28, 28), np.uint8)
    with pytest.raises(ValueError, match=match):
        data.split_validation(images, np.zeros(10, np.int64), size)


# --- NumPy batches (every backend, no TensorFlow) -----------------------------------


@pytest.mark.backends
def test_numpy_batches_are_deterministic_resumable_and_scaled():
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (50, 28, 28)).astype(np.uint8)
    labels = rng.integers(0, 10, 50)
    def order(**kw):
        return np.concatenate([y for _, y in data.batches(images, labels, 8, shuffle=True, **kw)])
    np.testing.assert_array_equal(order(seed=7), order(seed=7))
    assert not np.array_equal(order(seed=7), order(seed=8))
    np.testing.assert_array_equal(order(seed=7), labels[data.epoch_order(50, 7)])
    whole = list(data.batches(images, labels, 8, shuffle=True, seed=7, drop_remainder=True, steps=5))
    tail = list(data.batches(images, labels, 8, shuffle=True, seed=7, drop_remainder=True, start=2, steps=5))
    assert len(whole) == 5 and len(tail) == 3
    for (x, y), (xt, yt) in zip(whole[2:], tail):
        np.testing.assert_array_equal(x, xt)
        np.testing.assert_array_equal(y, yt)
    x, y = next(data.batches(images, labels, 50, normalization=(0.5, 0.25)))
    assert x.shape == (50, 28, 28, 1) and x.dtype == np.float32 and y.dtype == np.int32
    np.testing.assert_allclose(x[..., 0], (images / np.float32(255) - 0.5) / 0.25, rtol=1e-6)
    assert [len(y) for _, y in data.batches(images, labels, 8, take=20)] == [8, 8, 4]
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        next(data.batches(images, labels, 0))


def test_numpy_batches_equal_the_tf_data_pipeline_without_shuffling(tmp_path):
    rng = np.random.default_rng(4)
    images = rng.integers(0, 256, (30, 28, 28)).astype(np.uint8)
    labels = rng.integers(0, 10, 30)
    ours = list(data.batches(images, labels, 8, normalization=(0.13, 0.3), take=25))
    theirs = list(data.from_arrays(images, labels, 8, normalization=(0.13, 0.3), take=25))
    assert len(ours) == len(theirs) == 4
    for (x, y), (tx, ty) in zip(ours, theirs):
        np.testing.assert_array_equal(x, tx.numpy())
        np.testing.assert_array_equal(y, ty.numpy())
