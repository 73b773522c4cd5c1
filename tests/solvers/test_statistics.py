"""Solver statistics written for TensorBoard."""

import glob
import os

import tensorflow as tf

from contractive_keras import solvers
from contractive_keras.solvers.statistics import write_summaries


def _scalars(logdir):
    values = {}
    for path in glob.glob(os.path.join(logdir, "events.out.tfevents.*")):
        for record in tf.data.TFRecordDataset(path):
            event = tf.compat.v1.Event.FromString(record.numpy())
            for value in event.summary.value:
                values[(value.tag, event.step)] = float(
                    tf.make_ndarray(value.tensor))
    return values


def test_statistics_are_written_as_tensorboard_scalars(tmp_path):
    solution = solvers.solve(lambda t, y: -y, tf.ones([2]), 1.0,
                             method="midpoint", steps=3)
    writer = tf.summary.create_file_writer(str(tmp_path))
    with writer.as_default():
        assert bool(write_summaries(solution.stats, step=7, prefix="ode"))
    writer.close()
    scalars = _scalars(str(tmp_path))
    assert scalars[("ode/num_fn_evals", 7)] == 6
    assert scalars[("ode/num_steps", 7)] == 3
    assert scalars[("ode/num_rejected", 7)] == 0
    assert not bool(write_summaries(solution.stats, step=8))  # no writer
