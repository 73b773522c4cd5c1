"""bounds.threads.single_threaded_blas: one BLAS thread inside the certificates, restored after."""

import keras
import numpy as np
import pytest
import threadpoolctl

from contractive_keras.solvers import SolverSpec
from contractive_keras import bounds, certify, stability
from contractive_keras.bounds import threads
from contractive_keras.layers import CHNODE, StabilizedNODE


def blas_threads(library=""):
    """Thread counts of the BLAS libraries loaded (whose path contains ``library``)."""
    return {info["num_threads"] for info in threadpoolctl.threadpool_info()
            if info["user_api"] == "blas" and library in info["filepath"]}


@pytest.fixture
def two_blas_threads():
    """Two BLAS threads around the test (conftest sets one for speed)."""
    with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):
        assert blas_threads() == {2}
        yield


def test_limit_holds_inside_nested_and_failing_calls_and_is_restored(two_blas_threads):
    seen = []

    @threads.single_threaded_blas
    def inner():
        seen.append(blas_threads())

    @threads.single_threaded_blas
    def outer(fail):
        inner()
        seen.append(blas_threads())
        if fail:
            raise RuntimeError("boom")

    outer(False)
    assert blas_threads() == {2}
    with pytest.raises(RuntimeError, match="boom"):
        outer(True)
    assert seen == [{1}] * 4 and blas_threads() == {2}


ENTRY_POINTS = [stability.delta, stability.min_perturbation, stability.kernel_certificate,
                stability.step_lipschitz_bound, certify.layer_certificate,
                certify.step_lipschitz_bounds, bounds.map_certificate, bounds.flow_certificate,
                certify.lipschitz_bound, certify.certified_radius, certify.summary]


@pytest.mark.parametrize("fn", ENTRY_POINTS, ids=lambda fn: fn.__qualname__)
def test_numpy_heavy_entry_points_are_wrapped(fn):
    assert fn.__code__ is threads.single_threaded_blas(len).__code__
    assert fn.__wrapped__.__name__ == fn.__name__


def test_certificates_run_their_eigenproblems_on_one_thread(two_blas_threads, monkeypatch):
    seen = []
    eigvalsh = np.linalg.eigvalsh

    def recording(*args, **kwargs):
        if len(seen) < 50:      # NumPy's own OpenBLAS runs eigvalsh
            seen.append(blas_threads("numpy"))
        return eigvalsh(*args, **kwargs)

    layer = StabilizedNODE(SolverSpec("euler", steps=2, t1=1.0), min_slope=0.1, delta_bar=0.1)
    layer.build((None, 20))
    chnode = CHNODE(SolverSpec("euler", steps=2, step_size=1e-3), units=4, discrete_check="ignore")
    chnode.build((None, 4))     # builds call eigvalsh too: record the certificates only
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(3)(chnode(inputs)))
    monkeypatch.setattr(np.linalg, "eigvalsh", recording)
    certify.summary(layer)
    certify.layer_certificate(chnode)
    certify.lipschitz_bound(model)
    assert len(seen) >= 3 and all(threads == {1} for threads in seen)
    assert blas_threads("numpy") == {2}
