"""Solver statistics for TensorBoard (``tf.summary``).

``Solution.stats`` (see :func:`~contractive_keras.solvers.solve`) is a dict
of int32 scalar tensors; :func:`write_summaries` writes each as a scalar
summary, so that the number of function evaluations and accepted/rejected
steps appear in TensorBoard next to the losses.  TensorFlow only (``tf.summary``); on another backend
it refuses in one line: log ``Solution.stats`` with the backend's own
tools.
"""

from contractive_keras import backend


def write_summaries(stats, step, prefix="solver"):
    """Writes solver statistics with the default ``tf.summary`` writer.

    Entries equal to -1 (not reported by the solver) are written too; a
    caller that prefers to skip them can filter ``stats`` first.

    Args:
        stats: the ``stats`` dict of a :class:`Solution`.
        step: the summary step (an int or int64 tensor).
        prefix: name prefix, e.g. the layer's name.

    Returns:
        A boolean scalar tensor: True if every summary was written (a
        default writer is set), else False.

    Example:

    >>> import tensorflow as tf
    >>> from contractive_keras import solvers
    >>> solution = solvers.solve(lambda t, y: -y, tf.ones([2]), 1.0, steps=4)
    >>> bool(write_summaries(solution.stats, step=0))  # no writer set
    False
    """
    backend.require_tensorflow(
        "solvers.write_summaries (tf.summary)",
        "the numbers in Solution.stats with this backend's own logging")
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    written = [tf.summary.scalar(f"{prefix}/{key}", stats[key], step=step)
               for key in sorted(stats)]
    return tf.reduce_all(tf.stack(written))
