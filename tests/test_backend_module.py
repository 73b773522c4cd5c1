"""contractive_keras.backend on the backend in use: its name, the one-line
refusal of TensorFlow-only parts, float64 availability and to_numpy."""

import warnings

import keras
import numpy as np
import pytest

from contractive_keras import backend

pytestmark = pytest.mark.backends


def test_name_is_keras_s_backend():
    assert backend.name() == keras.backend.backend()
    assert backend.is_tensorflow() == (backend.name() == "tensorflow")


def test_require_tensorflow_refuses_in_one_line_off_tensorflow():
    if backend.is_tensorflow():
        assert backend.require_tensorflow("the 'bdf' solver", "'dopri5'") is None
        return
    with pytest.raises(NotImplementedError) as raised:
        backend.require_tensorflow("the 'bdf' solver", "'dopri5'")
    message = str(raised.value)
    assert "\n" not in message
    assert message == (f"the 'bdf' solver needs Keras's TensorFlow backend; this process uses the "
                       f"'{backend.name()}' backend: use 'dopri5' on this backend, or set "
                       f"KERAS_BACKEND=tensorflow.")


def test_wide_float_is_float64_exactly_where_the_backend_keeps_it():
    assert backend.wide_float() == ("float64" if backend.float64_in_graph() else "float32")
    x = keras.ops.convert_to_tensor(np.ones(2), dtype=backend.wide_float())
    assert keras.backend.standardize_dtype(x.dtype) == backend.wide_float()


def test_to_numpy_reads_variables_tensors_and_lists_without_warnings():
    values = np.arange(6.0).reshape(2, 3)
    variable = keras.Variable(values.astype("float32"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for value in (variable, keras.ops.convert_to_tensor(values), values.tolist(), values):
            out = backend.to_numpy(value, np.float64)
            assert isinstance(out, np.ndarray) and out.dtype == np.float64
            np.testing.assert_array_equal(out, values)
        assert backend.to_numpy(variable * 2.0).dtype == np.float32
