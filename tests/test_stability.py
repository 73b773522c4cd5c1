"""stability re-exports the checking functions of bounds and holds no logic of its own."""

import inspect

import numpy as np
import pytest

from contractive_keras import stability
from contractive_keras.bounds.min_perturbation import MIN_PERTURBATION_EXACT_DIM

pytestmark = pytest.mark.backends   # NumPy float64 on every backend, TensorFlow not needed


def test_stability_defines_no_function_or_class_of_its_own():
    own = [name for name, value in vars(stability).items()
           if (inspect.isfunction(value) or inspect.isclass(value))
           and value.__module__ == stability.__name__]
    assert own == []


def test_every_public_name_is_the_bounds_object():
    for name in stability.__all__:
        value = getattr(stability, name)
        if inspect.isfunction(value) or inspect.isclass(value):
            assert value.__module__.startswith("contractive_keras.bounds."), name
    assert stability.MIN_PERTURBATION_EXACT_DIM is MIN_PERTURBATION_EXACT_DIM


def test_delta_names_what_it_reports():
    result = stability.delta(np.array([[0.5, 2.0], [-1.0, 0.3]]), min_slope=0.1)
    assert result.kind == "exact" and round(result.value, 4) == 1.2436
