"""Keras constraints that restore the layers' guarantees after every step.

Keras applies ``variable.constraint`` right after each optimizer update
(``optimizer.apply_gradients``), under ``model.fit``, custom training loops and
``tf.distribute`` strategies alike, so the guarantees of the layers live here:

* CH-NODE: the gamma / spectral constraints that keep Theorem 1 true
  (shared/DESIGN.md, "CH-NODE");
* stabilized NODE: ``DeltaBarProjection``, the minimal Frobenius perturbation
  that brings delta = max_D mu_2(D A) down to delta_bar
  (shared/DESIGN.md, "Stabilized NODE").

Every class is registered with
``keras.saving.register_keras_serializable(package="contractive_keras")``.
"""

import keras

# --- CH-NODE constraints -----------------------------------------------------

# --- Stabilized-NODE constraints ---------------------------------------------
