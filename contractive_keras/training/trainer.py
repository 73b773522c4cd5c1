"""``Trainer``: the one entry point of training, on whichever Keras backend runs.

The one dispatch of training over backends:

* TensorFlow: ``training.loop.TFTrainer``, the custom ``tf.distribute`` loop
  (one device, several GPUs, several hosts through ``TF_CONFIG``, TPU);
* JAX and PyTorch: ``training.keras_loop.KerasTrainer``, a small loop over
  Keras's own compiled train step (``model.train_on_batch``), data parallel
  over the local devices through ``keras.distribution.DataParallel`` on JAX,
  one device on PyTorch.

Both take the same ``TrainConfig`` and write the same files to ``model_dir``
(checkpoints, resumed automatically, also mid-epoch; ``history.jsonl``;
TensorBoard scalars under ``logs/``; ``summary.json``; ``export/`` with
``--export``), and both are ``training.base.BaseTrainer``s. TensorFlow is
imported only when Keras runs on it.
"""

from contractive_keras import backend


class Trainer:
    """Trains ``config.model`` on ``config.dataset``; ``run()`` returns the summary.

    ``Trainer(config, strategy=None)`` builds the trainer of the Keras backend
    in use (module docstring): a ``TFTrainer`` on TensorFlow (``strategy``: a
    ``tf.distribute.Strategy``, default from ``config.strategy``), else a
    ``KerasTrainer`` (``strategy``: a ``keras.distribution.Distribution``,
    default from ``config.strategy``). Raises ``ValueError`` (before reading
    any data) for a ``model_dir`` that cannot be written or an ``init_from``
    that is not a model file, and ``NotImplementedError`` in one line for a
    TensorFlow-only option on another backend (``--strategy=multi_worker`` or
    ``tpu``).

    Example:

    >>> config = TrainConfig(model="resnet", depth=4, epochs=1, model_dir="/tmp/r")  # doctest: +SKIP
    >>> summary = Trainer(config).run()                                             # doctest: +SKIP
    """

    def __new__(cls, config, strategy=None):
        # pylint: disable=import-outside-toplevel
        if backend.is_tensorflow():
            from contractive_keras.training.loop import TFTrainer
            return TFTrainer(config, strategy)
        from contractive_keras.training.keras_loop import KerasTrainer
        return KerasTrainer(config, strategy)
