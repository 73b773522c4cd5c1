"""Every public name of the former robustness and evaluate modules is importable
from its path, and the attack names from ``robustness.attacks``; each is the
same object as in robustness/."""

import importlib

import pytest

from contractive_keras import robustness

OLD_NAMES = {
    "contractive_keras.robustness": [
        "NoiseSpec", "REFERENCE_NOISE", "REFERENCE_NORMALIZATION", "Row", "RobustnessTable",
        "certified_accuracy", "certified_radius", "evaluate", "fgsm", "gaussian_noise",
        "logit_function", "margins", "pgd", "reference_noise", "salt_and_pepper_noise",
        "NOISE_KINDS", "ATTACKS", "model_normalization", "LOSSES", "NORMS"],
    "contractive_keras.robustness.attacks": ["LOSSES", "NORMS", "attack_loss", "fgsm", "logit_function", "pgd"],
    "contractive_keras.evaluate": ["Row", "RobustnessTable", "build_parser", "main"],
}


@pytest.mark.parametrize("module", sorted(OLD_NAMES))
def test_old_public_names_are_importable_from_their_old_paths(module):
    imported = importlib.import_module(module)
    for name in OLD_NAMES[module]:
        value = getattr(imported, name)
        if hasattr(robustness, name):
            assert value is getattr(robustness, name), (module, name)


def test_package_all_lists_only_existing_names():
    assert all(hasattr(robustness, name) for name in robustness.__all__)
