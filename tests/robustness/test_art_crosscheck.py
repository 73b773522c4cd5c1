"""The standard suite against an outside implementation (IBM ART): our worst case is
no higher than ART's APGD-CE / APGD-DLR / Square worst case plus 2 points."""

import pytest

pytest.importorskip("art")

from benchmarks.art_crosscheck import TOLERANCE, art_worst_case  # noqa: E402
from contractive_keras import robustness  # noqa: E402
from tests.robustness.classifiers import mnist_test, tiny_mnist_model  # noqa: E402


@pytest.mark.slow
@pytest.mark.parametrize("norm,eps", [("linf", 0.06), ("l2", 1.2)])
def test_our_worst_case_is_no_weaker_than_art(norm, eps):
    """On 200 images: 2 points are 4 images (ART's runs are not bit-reproducible)."""
    model = tiny_mnist_model(hidden=32)
    x, y = mnist_test(200)
    art_robust, _, _ = art_worst_case(model, x, y, norm, eps, apgd_steps=30, square_queries=500)
    ours = robustness.run_suite(model, x, y, eps, norm=norm, suite="standard", seed=0)
    assert ours.clean_accuracy - ours.accuracy > 0.3  # the attacks did something
    assert ours.accuracy <= art_robust.mean() + TOLERANCE
