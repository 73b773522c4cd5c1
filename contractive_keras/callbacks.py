"""Keras callbacks that log the CH-NODE certificates during training.

``BSMLogger`` records, every ``frequency`` epochs, gamma, alpha, rho (Theorems
1-2), the certified Lipschitz bound of the discrete block (``certify.summary``)
and the measured
backward-sensitivity norm ||d xi(T) / d xi(0)||_2 (max over the given
inputs' state vectors), into the epoch ``logs`` (hence ``History``), its own
``history`` dict, and TensorBoard scalars when ``log_dir`` is given
(``training.summaries.scalar_writer``: ``tf.summary`` on TensorFlow, the
``tensorboard`` package's writer on JAX and PyTorch). Backend-neutral: it
runs wherever the watched layer and ``certify`` run.
"""

import keras
import numpy as np

from contractive_keras import certify
from contractive_keras.layers import PerStepODE
from contractive_keras.training.summaries import scalar_writer


class BSMLogger(keras.callbacks.Callback):
    """Logs gamma, alpha, rho, the discrete bound and the BSM norm.

    Args:
        inputs: a batch of *model* inputs at which the BSM norm is measured
            (a few images suffice: every pixel is a state vector).
        layer_name: the ODE layer to watch (default: the first fixed-step
            ODE layer of the model).
        log_dir: write TensorBoard scalars under this directory.
        frequency: log every ``frequency`` epochs.
        prefix: key prefix in ``logs`` / TensorBoard.
        method: "auto", "exact" or "power" (see ``certify.bsm_norms``).

    Example:

    >>> logger = BSMLogger(x_train[:4], log_dir="runs/chnode")   # doctest: +SKIP
    >>> model.fit(x_train, y_train, callbacks=[logger])          # doctest: +SKIP
    >>> logger.history["bsm_norm"]                               # doctest: +SKIP
    """

    def __init__(self, inputs, layer_name=None, log_dir=None, frequency=1,
                 prefix="contraction/", method="auto"):
        super().__init__()
        self.inputs = inputs
        self.layer_name = layer_name
        self.log_dir = log_dir
        self.frequency = int(frequency)
        self.prefix = prefix
        self.method = method
        self.history = {}
        self._writer = None
        self._layer_inputs = None

    def _ode_layer(self):
        if self.layer_name is not None:
            return self.model.get_layer(self.layer_name)
        for layer in self.model._flatten_layers():
            if isinstance(layer, PerStepODE):
                return layer
        raise ValueError("BSMLogger: the model has no fixed-step ODE layer.")

    def measure(self):
        """The dict of floats logged now (also usable outside training)."""
        layer = self._ode_layer()
        values = {k: float(v) for k, v in certify.summary(layer).items()
                  if isinstance(v, (int, float)) and not isinstance(v, bool)}
        feeder = keras.Model(self.model.input, layer.input)
        states = feeder(self.inputs, training=False)
        norms = certify.bsm_norms(layer, states, method=self.method)
        values["bsm_norm"] = float(norms[0])
        return values

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.frequency:
            return
        values = self.measure()
        for key, value in values.items():
            self.history.setdefault(key, []).append(value)
            if logs is not None:
                logs[self.prefix + key] = value
        if self.log_dir is not None:
            if self._writer is None:
                self._writer = scalar_writer(self.log_dir)
            self._writer.scalars(epoch, {self.prefix + key: value for key, value in values.items()
                                         if np.isfinite(value)})

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None
