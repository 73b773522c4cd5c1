"""Single-threaded BLAS for the certificates' many small dense problems.

The certificates (``stability``, ``certify``) run thousands of small float64
eigen-decompositions and products in NumPy (d = 8..64, or batches of 2^m
vertex matrices), for which a multi-threaded BLAS pays more in thread
hand-offs than it computes (measured in benchmarks/README.md).
``single_threaded_blas`` limits every BLAS library
NumPy loaded to one thread for the duration of the decorated call
(``threadpoolctl``), then restores the previous setting; the user's own
setting (``OPENBLAS_NUM_THREADS`` or a ``threadpool_limits`` block) is
untouched outside these calls.  Nested decorated calls share one limit,
set by the first to enter and restored by the last to leave.  Calls from
several Python threads at once are counted the same way, but OpenBLAS may
not honour a limit set from a worker thread while another is in force, so
only the single-threaded caller is tested.
"""

import functools
import threading

import threadpoolctl

# The BLAS thread count is process-wide: the first decorated call to enter
# sets the limit, the last to leave restores it (from any thread, nested or
# not).
_lock = threading.Lock()
_active = 0
_limiter = None


def _enter():
    global _active, _limiter
    with _lock:
        if _active == 0:
            # A fresh scan (~2 ms) also finds BLAS libraries loaded since the
            # last call (SciPy's, imported lazily by the certificates).
            _limiter = threadpoolctl.threadpool_limits(limits=1, user_api="blas")
        _active += 1


def _leave():
    global _active, _limiter
    with _lock:
        _active -= 1
        if _active == 0:
            _limiter.restore_original_limits()
            _limiter = None


def single_threaded_blas(fn):
    """Decorator: run ``fn`` with one BLAS thread, restore the setting after.

    Example:

    >>> import numpy as np
    >>> @single_threaded_blas
    ... def smallest_eigenvalue(a):
    ...     return np.linalg.eigvalsh(a)[0]
    >>> float(smallest_eigenvalue(np.eye(3)))
    1.0
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        _enter()
        try:
            return fn(*args, **kwargs)
        finally:
            _leave()

    return wrapper
