"""TensorBoard scalars on every backend: ``scalar_writer(log_dir)``.

One writer for every Keras backend: the event-file writer of the
``tensorboard`` package, which needs no TensorFlow (where TensorFlow is
installed, ``tensorboard`` writes through its file system, gs:// included).
Each value is a float64 tensor summary of the scalars plugin, the kind
``tf.summary.scalar`` writes but in float64 (``tf.summary.scalar`` casts to
float32, where certificate bounds such as 1e60 overflow). Without the
``tensorboard`` package the writer warns once and writes nothing
(``history.jsonl`` and ``summary.json`` keep every number).
"""

import time
import warnings


class EventWriter:
    """Scalars through ``tensorboard.summary.writer`` (no TensorFlow)."""

    def __init__(self, log_dir):
        # pylint: disable=import-outside-toplevel
        from tensorboard.compat.proto import summary_pb2, tensor_pb2, tensor_shape_pb2, types_pb2
        from tensorboard.compat.proto.event_pb2 import Event
        from tensorboard.summary.writer.event_file_writer import EventFileWriter
        self._writer = EventFileWriter(log_dir)
        self._protos = summary_pb2, tensor_pb2, tensor_shape_pb2, types_pb2, Event

    def scalars(self, step, values):
        summary_pb2, tensor_pb2, tensor_shape_pb2, types_pb2, Event = self._protos
        metadata = summary_pb2.SummaryMetadata(
            plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"),
            data_class=summary_pb2.DATA_CLASS_SCALAR)
        summary = summary_pb2.Summary(value=[
            summary_pb2.Summary.Value(
                tag=key, metadata=metadata,
                tensor=tensor_pb2.TensorProto(dtype=types_pb2.DT_DOUBLE, double_val=[float(value)],
                                              tensor_shape=tensor_shape_pb2.TensorShapeProto()))
            for key, value in values.items()])
        self._writer.add_event(Event(wall_time=time.time(), step=int(step), summary=summary))
        self._writer.flush()

    def close(self):
        self._writer.close()


class _NoWriter:
    def scalars(self, step, values):
        pass

    def close(self):
        pass


def scalar_writer(log_dir):
    """A writer with ``scalars(step, {tag: number})`` and ``close()`` for ``log_dir``."""
    try:
        return EventWriter(log_dir)
    except ImportError:
        warnings.warn("the tensorboard package is not installed: no TensorBoard scalars are written "
                      "(history.jsonl and summary.json keep every number)", stacklevel=2)
        return _NoWriter()
