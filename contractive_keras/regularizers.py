"""Regularizers of the reference experiments (shared/DESIGN.md, "CH-NODE").

The reference adds, to the cross-entropy,

* a smoothness-in-time penalty on the per-step weights,
  smoothness * sum_j 0.5 (||K_{j+1} - K_j||_F^2 + ||b_{j+1} - b_j||_F^2),
  with smoothness = 1e-3 h (8e-3 h for H-DNN); it splits into one term per
  weight, so ``PiecewiseSmoothness`` is an ordinary per-variable regularizer;
* PyTorch Adam's ``weight_decay`` wd, i.e. gradient += wd * w, the gradient of
  the L2 penalty (wd / 2) ||w||^2: ``l2 = wd / 2`` here, or
  ``keras.regularizers.L2(wd / 2)`` on the other layers.

Both end up in ``model.losses`` and so in ``model.fit`` and custom loops.
Written with ``keras.ops``: it runs and differentiates under every Keras
backend (TensorFlow, JAX, torch).
"""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="contractive_keras")
class PiecewiseSmoothness(keras.regularizers.Regularizer):
    """smoothness * sum_j 0.5 ||W_{j+1} - W_j||_F^2 + l2 * ||W||_F^2 on stacked W.

    W has the step index on axis 0 (as the per-step weights of CHNODE, HDNN,
    ResNetODE); a shared (1, ...) weight has no smoothness term.

    Args:
        smoothness: coefficient of the difference penalty (reference:
            1e-3 * h, H-DNN 8e-3 * h).
        l2: coefficient of ||W||^2 (PyTorch weight_decay wd -> l2 = wd / 2).

    Example:

    >>> import numpy as np
    >>> reg = PiecewiseSmoothness(smoothness=2.0)
    >>> float(reg(np.array([[0.0], [1.0], [3.0]], "float32")))
    5.0
    """

    def __init__(self, smoothness=0.0, l2=0.0):
        smoothness, l2 = float(smoothness), float(l2)
        if smoothness < 0 or l2 < 0:
            raise ValueError(f"smoothness and l2 must be >= 0, got {smoothness}, {l2}.")
        self.smoothness = smoothness
        self.l2 = l2

    def __call__(self, w):
        loss = 0.0
        if self.smoothness and w.shape[0] is not None and w.shape[0] > 1:
            diff = w[1:] - w[:-1]
            loss = loss + self.smoothness * 0.5 * ops.sum(ops.square(diff))
        if self.l2:
            loss = loss + self.l2 * ops.sum(ops.square(w))
        return loss

    def get_config(self):
        return {"smoothness": self.smoothness, "l2": self.l2}
