"""The offline data preparation (scripts/prepare_data.py) is safe and exact."""

import importlib.util
import os
import pickle

import numpy as np
import pytest

_PATH = os.path.join(os.path.dirname(os.path.dirname(__file__)), "scripts", "prepare_data.py")
spec = importlib.util.spec_from_file_location("prepare_data", _PATH)
prepare_data = importlib.util.module_from_spec(spec)
spec.loader.exec_module(prepare_data)


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_unpickler_rebuilds_numpy_arrays():
    x = (np.arange(12, dtype=np.float32).reshape(3, 4), np.array([1, 2, 3]))
    import io

    out = prepare_data.NumpyOnlyUnpickler(io.BytesIO(pickle.dumps(x, protocol=3))).load()
    np.testing.assert_array_equal(out[0], x[0])
    np.testing.assert_array_equal(out[1], x[1])


def test_unpickler_refuses_anything_else():
    import io

    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        prepare_data.NumpyOnlyUnpickler(io.BytesIO(pickle.dumps(_Evil()))).load()


def test_to_uint8_is_exact_for_multiples_of_1_over_256():
    k = np.arange(256, dtype=np.uint8)
    x = np.tile(k, 784 // 256 + 1)[:784].astype(np.float32) / 256.0
    np.testing.assert_array_equal(prepare_data.to_uint8(x[None]).ravel(), np.tile(k, 4)[:784])


def test_to_uint8_refuses_other_values():
    with pytest.raises(SystemExit, match="multiples of 1/256"):
        prepare_data.to_uint8(np.full((1, 784), 0.3, np.float32))
