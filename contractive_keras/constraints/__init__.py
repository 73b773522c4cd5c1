"""Keras constraints that restore the layers' guarantees after every step.

Keras applies ``variable.constraint`` right after each optimizer update
(``optimizer.apply_gradients``), under ``model.fit``, custom training loops and
``tf.distribute`` strategies alike, so the guarantees of the layers live here,
each a thin wrapper over ``contractive_keras.bounds``:

* ``GammaProjection``: keeps Theorem 1 true for the CH-NODE's K;
* ``SpectralNormClip`` (dense kernels) and ``ConvNormClip`` (convolutions),
  for the layers around an ODE block;
* ``DeltaBarProjection``: a certified delta <= delta_bar for the stabilized
  NODE's kernel (and for its Euler map).

Every class is registered with
``keras.saving.register_keras_serializable(package="contractive_keras")``.
"""

from contractive_keras.constraints.delta_bar_projection import DeltaBarProjection
from contractive_keras.constraints.gamma_projection import GammaProjection
from contractive_keras.constraints.norm_clip import ConvNormClip
from contractive_keras.constraints.norm_clip import SpectralNormClip

__all__ = ["ConvNormClip", "DeltaBarProjection", "GammaProjection", "SpectralNormClip"]
