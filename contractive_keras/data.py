"""MNIST and Fashion-MNIST as numpy arrays, NumPy batches and tf.data pipelines.

Sources are tried in this order (shared/DESIGN.md, "Data"):

1. a local directory: the ``data_dir`` argument, then the
   ``CONTRACTIVE_KERAS_DATA`` environment variable, then the source tree's
   ``data/`` folder (filled by ``make data``). In it, for dataset
   ``name``, either ``<dir>/<name>.npz`` (arrays ``x_train``, ``y_train``,
   ``x_test``, ``y_test``) or the four standard IDX files
   (``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
   ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``, each optionally
   ``.gz``) in ``<dir>/<name>/`` or directly in ``<dir>/``;
2. ``tensorflow_datasets`` (which downloads the data when online).

``load_numpy`` and ``batches`` (deterministic NumPy batches: the same seed
gives the same order) need no TensorFlow and serve every Keras backend;
``load`` and ``from_arrays`` build ``tf.data`` pipelines and import
TensorFlow when called.

``make data`` (``scripts/prepare_data.py``) fills ``data/`` in the source tree
from package-registry copies so that everything works offline.

Example:

>>> from contractive_keras import data
>>> x, y = data.load_numpy("mnist", "test")          # doctest: +SKIP
>>> x.shape, x.dtype, y.shape                         # doctest: +SKIP
((10000, 28, 28), dtype('uint8'), (10000,))
>>> ds = data.load("mnist", "train", batch_size=100, normalize=True)  # doctest: +SKIP
"""

import gzip
import os
import struct

import numpy as np

# The datasets' facts live in ``datasets`` (no TensorFlow); re-exported here.
from contractive_keras.datasets import (  # noqa: F401
    CERTIFIED_RADII, DATASETS, INPUT_SHAPE, NORMALIZATION, NUM_CLASSES, NUM_EXAMPLES, SPLITS)

ENV_VAR = "CONTRACTIVE_KERAS_DATA"
#: ``data/`` of the source tree, where ``make data`` writes the offline copies.
SOURCE_TREE_DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data")

_IDX_PREFIX = {"train": "train", "test": "t10k"}
_IDX_IMAGE_MAGIC = 2051
_IDX_LABEL_MAGIC = 2049


class DataSourceError(FileNotFoundError):
    """No source could provide the requested data.

    Attributes:
        attempts: list of ``(place, reason)`` pairs, one per source tried.
    """

    def __init__(self, name, split, attempts):
        self.attempts = list(attempts)
        lines = "\n".join(f"  - {place}: {reason}" for place, reason in attempts)
        super().__init__(
            f"Could not load {name!r} split {split!r}. Places tried, in order:\n"
            f"{lines}\n"
            f"Fix: run `make data` in the source tree (offline copies), pass "
            f"data_dir= / set ${ENV_VAR} to a directory holding {name}.npz or "
            f"the four IDX files, or go online so tensorflow_datasets can "
            f"download {name!r}."
        )


class CorruptDataError(ValueError):
    """A data file exists but its contents are not a valid dataset."""


def _check_name_split(name, split):
    if name not in DATASETS:
        raise ValueError(f"Unknown dataset {name!r}; expected one of {DATASETS}.")
    if split not in SPLITS:
        raise ValueError(f"Unknown split {split!r}; expected one of {SPLITS}.")


def _open_maybe_gz(path):
    if path.endswith(".gz"):
        return gzip.open(path, "rb")
    return open(path, "rb")


def read_idx(path, expected_magic):
    """Reads one IDX file (optionally gzipped) into a uint8 numpy array.

    Format: a big-endian int32 magic number (2049 labels, 2051 images), one
    big-endian int32 per dimension, then the unsigned bytes.
    """
    try:
        with _open_maybe_gz(path) as f:
            raw = f.read()
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise CorruptDataError(f"{path}: cannot be read ({e})") from e
    if len(raw) < 8:
        raise CorruptDataError(f"{path}: too short to be an IDX file")
    magic = struct.unpack(">i", raw[:4])[0]
    if magic != expected_magic:
        raise CorruptDataError(
            f"{path}: IDX magic number {magic}, expected {expected_magic}"
        )
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    dims = struct.unpack(f">{ndim}i", raw[4:header])
    size = int(np.prod(dims))
    if len(raw) - header != size:
        raise CorruptDataError(
            f"{path}: header promises {size} bytes of data for shape {dims}, "
            f"file holds {len(raw) - header}"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _validate(images, labels, origin):
    if images.ndim != 3 or images.shape[1:] != INPUT_SHAPE[:2]:
        raise CorruptDataError(
            f"{origin}: images have shape {images.shape}, expected (N, {INPUT_SHAPE[0]}, {INPUT_SHAPE[1]})")
    if images.dtype != np.uint8:
        raise CorruptDataError(f"{origin}: images have dtype {images.dtype}, expected uint8")
    if labels.shape != (images.shape[0],):
        raise CorruptDataError(
            f"{origin}: {labels.shape[0] if labels.ndim else 0} labels for "
            f"{images.shape[0]} images"
        )
    if labels.size and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        raise CorruptDataError(f"{origin}: labels outside 0..{NUM_CLASSES - 1}")
    return images, labels.astype(np.int64)


def _idx_paths(directory, split):
    prefix = _IDX_PREFIX[split]
    found = {}
    for kind, stem in (("images", "images-idx3-ubyte"), ("labels", "labels-idx1-ubyte")):
        for suffix in ("", ".gz"):
            path = os.path.join(directory, f"{prefix}-{stem}{suffix}")
            if os.path.isfile(path):
                found[kind] = path
                break
    return found


def _from_directory(directory, name, split):
    """Returns (images, labels) from a local directory, or raises.

    FileNotFoundError means "nothing for this dataset here"; CorruptDataError
    means a file was found but is unusable.
    """
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"not a directory")
    npz = os.path.join(directory, f"{name}.npz")
    if os.path.isfile(npz):
        try:
            with np.load(npz, allow_pickle=False) as arrays:
                images, labels = arrays[f"x_{split}"], arrays[f"y_{split}"]
        except (OSError, ValueError, KeyError) as e:
            raise CorruptDataError(f"{npz}: {e}") from e
        return _validate(images, labels, npz)
    tried = []
    for sub in (os.path.join(directory, name), os.path.join(directory, name.replace("_", "-")), directory):
        paths = _idx_paths(sub, split)
        if len(paths) == 2:
            images = read_idx(paths["images"], _IDX_IMAGE_MAGIC)
            labels = read_idx(paths["labels"], _IDX_LABEL_MAGIC)
            return _validate(images, labels, paths["images"])
        tried.append(sub)
    raise FileNotFoundError(
        f"no {name}.npz and no {_IDX_PREFIX[split]}-images/labels IDX files in "
        + ", ".join(tried)
    )


def _from_tfds(name, split):
    import tensorflow_datasets as tfds  # heavy: imported only when needed

    arrays = tfds.as_numpy(tfds.load(name, split=split, batch_size=-1, as_supervised=True))
    images, labels = arrays
    return _validate(np.asarray(images)[..., 0], np.asarray(labels), f"tensorflow_datasets:{name}")


def local_directories(data_dir=None):
    """The local directories searched, in order, as ``(label, path)`` pairs."""
    places = []
    if data_dir is not None:
        places.append(("data_dir", os.fspath(data_dir)))
    if os.environ.get(ENV_VAR):
        places.append((f"${ENV_VAR}", os.environ[ENV_VAR]))
    if os.path.isdir(SOURCE_TREE_DATA) and all(p != SOURCE_TREE_DATA for _, p in places):
        places.append(("source tree data/", SOURCE_TREE_DATA))
    return places


def load_numpy(name, split, data_dir=None, *, use_tfds=True):
    """Loads a dataset split as numpy arrays.

    Args:
        name: ``"mnist"`` or ``"fashion_mnist"``.
        split: ``"train"`` (60,000 images) or ``"test"`` (10,000 images).
        data_dir: optional local directory tried first (see module docstring).
        use_tfds: whether to fall back to ``tensorflow_datasets``.

    Returns:
        ``(images, labels)``: uint8 array of shape ``(N, 28, 28)`` and int64
        labels in 0..9 of shape ``(N,)``.

    Raises:
        DataSourceError: no source had the data; the message names every place
            tried and why it failed.
        CorruptDataError: a local file exists but is damaged (wrong magic,
            truncated, wrong shape); it is never silently skipped.
    """
    _check_name_split(name, split)
    attempts = []
    for label, directory in local_directories(data_dir):
        try:
            return _from_directory(directory, name, split)
        except FileNotFoundError as e:
            attempts.append((f"{label}={directory}", str(e)))
        except CorruptDataError as e:
            raise CorruptDataError(
                f"{e}\n(found via {label}={directory}; remove or re-create the "
                f"file, e.g. with `make data`)"
            ) from e
    if use_tfds:
        try:
            return _from_tfds(name, split)
        except Exception as e:  # tfds raises many types when offline
            attempts.append((f"tensorflow_datasets.load({name!r})", f"{type(e).__name__}: {e}".splitlines()[0]))
    else:
        attempts.append(("tensorflow_datasets", "disabled (use_tfds=False)"))
    raise DataSourceError(name, split, attempts)


def split_validation(images, labels, validation_size):
    """Holds out the last ``validation_size`` examples as a validation split.

    Returns ``((images[:N - n], labels[:N - n]), (images[N - n:], labels[N - n:]))``
    for ``n = validation_size``: plain slices, so training on the first part
    equals training on a dataset holding only the first ``N - n`` examples.
    ``n = 0`` gives an empty validation split.

    Raises:
        ValueError: ``n`` is negative or leaves no training example.
    """
    n = int(validation_size)
    if n < 0:
        raise ValueError(f"validation_size must be >= 0, got {validation_size!r}")
    if n >= len(images):
        raise ValueError(f"validation_size={n} leaves no training example of the {len(images)}")
    cut = len(images) - n
    return (images[:cut], labels[:cut]), (images[cut:], labels[cut:])


def normalization(name):
    """``(mean, std)`` of the dataset's pixels in [0, 1]."""
    _check_name_split(name, "train")
    return NORMALIZATION[name]


def load(
    name,
    split,
    batch_size,
    *,
    data_dir=None,
    normalize=False,
    shuffle=None,
    seed=None,
    repeat=False,
    drop_remainder=False,
    take=None,
    prefetch=True,
    use_tfds=True,
):
    """A tf.data pipeline of ``(images, labels)`` batches.

    Images are float32 of shape ``(batch, 28, 28, 1)``: ``uint8 / 255`` in
    [0, 1], or, with ``normalize=True``, ``(x - mean) / std`` with the
    reference mean/std (``NORMALIZATION``). Labels are int32.

    Args:
        name, split, data_dir, use_tfds: as in ``load_numpy``.
        batch_size: positive int.
        normalize: apply the dataset mean/std.
        shuffle: shuffle every epoch; default True for ``"train"``.
        seed: shuffle seed (reproducible order when set).
        repeat: repeat forever.
        drop_remainder: drop the last partial batch.
        take: keep only the first ``take`` examples (before shuffling).
        prefetch: add ``prefetch(AUTOTUNE)``.
    """
    if not isinstance(batch_size, (int, np.integer)) or isinstance(batch_size, bool) or batch_size <= 0:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    images, labels = load_numpy(name, split, data_dir, use_tfds=use_tfds)
    if shuffle is None:
        shuffle = split == "train"
    return from_arrays(
        images,
        labels,
        batch_size,
        normalization=NORMALIZATION[name] if normalize else None,
        shuffle=shuffle,
        seed=seed,
        repeat=repeat,
        drop_remainder=drop_remainder,
        take=take,
        prefetch=prefetch,
    )


def from_arrays(
    images,
    labels,
    batch_size,
    *,
    normalization=None,
    shuffle=False,
    seed=None,
    repeat=False,
    drop_remainder=False,
    take=None,
    prefetch=True,
):
    """A tf.data pipeline over uint8 arrays already in memory (imports TensorFlow;
    ``batches`` gives the same batches as NumPy arrays without it).

    The same pipeline as ``load`` (which calls it): uint8 ``(N, 28, 28)``
    images become float32 ``(batch, 28, 28, 1)`` in [0, 1], or
    ``(x - mean) / std`` when ``normalization=(mean, std)`` is given; labels
    become int32. Useful to build one pipeline per epoch without re-reading
    the files (``train.py`` does).
    """

    if not isinstance(batch_size, (int, np.integer)) or isinstance(batch_size, bool) or batch_size <= 0:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    if take is not None:
        if take <= 0:
            raise ValueError(f"take must be positive, got {take!r}")
        images, labels = images[:take], labels[:take]
    ds = tf.data.Dataset.from_tensor_slices((images, np.asarray(labels).astype(np.int32)))
    if shuffle:
        ds = ds.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)

    def to_float(x, y):
        x = tf.cast(x[..., None], tf.float32) / 255.0
        if normalization is not None:
            mean, std = normalization
            x = (x - mean) / std
        return x, y

    ds = ds.map(to_float, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if prefetch:
        ds = ds.prefetch(tf.data.AUTOTUNE)
    return ds


def epoch_order(n, seed):
    """The order of ``n`` examples in an epoch shuffled with ``seed``: a
    permutation from NumPy's PCG64 generator, the same on every machine."""
    return np.random.default_rng(seed).permutation(n)


def batches(images, labels, batch_size, *, normalization=None, shuffle=False, seed=None,
            drop_remainder=False, take=None, start=0, steps=None):
    """NumPy ``(images, labels)`` batches over uint8 arrays, without TensorFlow.

    The batches of ``from_arrays``: float32 images ``(batch, 28, 28, 1)`` in
    [0, 1] (or ``(x - mean) / std`` with ``normalization=(mean, std)``) and
    int32 labels, converted one batch at a time. With ``shuffle`` the order is
    ``epoch_order(n, seed)``, so one seed gives one order (not tf.data's).

    Args:
        take: keep only the first ``take`` examples (before shuffling).
        start: skip the first ``start`` batches (resuming inside an epoch).
        steps: stop after batch ``steps`` (counted from the epoch's first).
    """
    if not isinstance(batch_size, (int, np.integer)) or isinstance(batch_size, bool) or batch_size <= 0:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if take is not None:
        if take <= 0:
            raise ValueError(f"take must be positive, got {take!r}")
        images, labels = images[:take], labels[:take]
    n = len(images)
    order = epoch_order(n, seed) if shuffle else np.arange(n)
    count = n // batch_size if drop_remainder else -(-n // batch_size)
    if steps is not None:
        count = min(count, int(steps))
    for b in range(int(start), count):
        index = order[b * batch_size:(b + 1) * batch_size]
        if not shuffle:
            index = slice(b * batch_size, (b + 1) * batch_size)
        x = images[index][..., None].astype(np.float32) / np.float32(255.0)
        if normalization is not None:
            mean, std = normalization
            x = (x - np.float32(mean)) / np.float32(std)
        yield x, np.asarray(labels[index]).astype(np.int32)
