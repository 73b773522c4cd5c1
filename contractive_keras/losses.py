"""Certified-training losses: train against the Lipschitz-margin certificate.

shared/DESIGN.md, "Certified robustness": with a certified upper bound
L_body on the Lipschitz constant of the map up to a linear read-out
z = W^T h + c, the prediction y at x is certified at L2 radius eps when

    z_y - z_j > eps * K_yj   for every j != y,   K_yj = L_body ||w_y - w_j||_2,   (1)

(the looser K_yj = sqrt(2) L uses only a bound L of the whole logit map).
Training against (1) (Tsuzuku et al. 2018, "Lipschitz-margin training";
Leino et al. 2021, GloRo nets) raises every non-target logit by eps K_yj
before the softmax cross-entropy: a point whose raised logits still rank
y first is certified at eps.  The bound in the loss must be certified for
the current weights: a product of constraint-guaranteed layer bounds, or a
differentiable computation that is never below what ``certify`` reports.

Losses (every class is registered with
``keras.saving.register_keras_serializable(package="contractive_keras")``):

* ``LipschitzMarginCrossEntropy``: equation (1) inside a (temperature-scaled)
  softmax cross-entropy;
* ``MulticlassHinge``, ``MulticlassKR`` and ``MulticlassHingeKR``: the
  hinge-Kantorovich-Rubinstein loss of Serrurier et al. 2021 (as in deel-lip),
  for 1-Lipschitz networks.

Labels may be sparse integers (shape (batch,) or (batch, 1)) or one-hot
(shape (batch, classes)); predictions are logits (batch, classes).

Backends: written with ``keras.ops``, the losses run and differentiate (in
the logits, the read-out kernel and a tensor bound) under
``KERAS_BACKEND=tensorflow``, ``jax`` and ``torch``.
"""

import math

import keras
from keras import ops

# Added under the square root of the pairwise squared distances: keeps the
# gradient finite where two read-out columns coincide and only raises K.
_DISTANCE_FLOOR = 1e-12


def _one_hot_labels(y_true, y_pred):
    """One-hot float labels shaped like y_pred from sparse or one-hot y_true."""
    y_pred = ops.convert_to_tensor(y_pred)
    classes = y_pred.shape[-1]
    if classes is None or classes < 2:
        raise ValueError(f"predictions need a known class axis of size >= 2, got {y_pred.shape}.")
    y_true = ops.convert_to_tensor(y_true)
    if len(y_true.shape) == len(y_pred.shape) and y_true.shape[-1] == classes:
        return ops.cast(y_true, y_pred.dtype)
    labels = ops.cast(ops.reshape(y_true, [-1]), "int32")
    return ops.one_hot(labels, classes, dtype=y_pred.dtype)


def _is_tensor(value):
    """A backend tensor, a Keras variable or a NumPy array (not a function returning one)."""
    return isinstance(value, keras.Variable) or hasattr(value, "shape") and hasattr(value, "dtype")


def _value(bound, dtype):
    """A float, a tensor or variable, or a zero-argument callable, as a scalar tensor."""
    if isinstance(bound, (int, float)):
        return ops.convert_to_tensor(bound, dtype)
    if callable(bound) and not _is_tensor(bound):
        bound = bound()
    return ops.cast(ops.convert_to_tensor(bound), dtype)


def _readout_kernel(readout):
    """The (features, classes) kernel of a Dense layer, a variable, an array or a callable."""
    if hasattr(readout, "kernel"):
        return readout.kernel
    if callable(readout) and not _is_tensor(readout):
        return readout()
    return readout


def pairwise_distances(kernel):
    """K0_ij = ||w_i - w_j||_2 for the columns w_i of a (features, classes) kernel.

    Computed from the differences (no cancellation in W^T W), with a floor of
    1e-6 off the diagonal (it only raises the bound) so the gradient stays
    finite; the diagonal is exactly 0.  Differentiable in ``kernel``.
    """
    w = ops.convert_to_tensor(kernel)
    if len(w.shape) != 2:
        raise ValueError(f"the read-out kernel must be (features, classes), got {w.shape}.")
    diff = w[:, :, None] - w[:, None, :]
    squared = ops.sum(ops.square(diff), axis=0)
    off_diagonal = 1.0 - ops.eye(w.shape[1], dtype=w.dtype)
    return ops.sqrt(squared + _DISTANCE_FLOOR) * off_diagonal


@keras.saving.register_keras_serializable(package="contractive_keras")
class LipschitzMarginCrossEntropy(keras.losses.Loss):
    """Softmax cross-entropy of Lipschitz-margin logits, equation (1) of the module.

    For label y the loss is

        T * CE(y, (z + eps * K[y]) / T),

    K[y] the row of the certified pairwise bound (K_yy = 0), T the
    temperature.  ``eps = 0`` gives the plain cross-entropy; ``T`` plays the
    role of 1 / tau in deel-lip's tau-cross-entropy (T = 0.1 is tau = 10).
    Where the raised logits rank y first the input is certified at eps by the
    margin test (1), whatever the loss value.

    Two forms of K, exactly one of them given:

    * pairwise (tight): ``readout`` is the final linear layer (a Keras
      ``Dense``, its kernel variable, or a zero-argument callable returning
      the (features, classes) kernel) and ``body_lipschitz`` a certified bound
      of the map from the input to the read-out's input.  K_yj =
      body_lipschitz * ||w_y - w_j||_2, computed from the current kernel
      (differentiable), the read-out's bias cancels;
    * global (loose): ``lipschitz`` a certified bound L of the whole logit map;
      K_yj = sqrt(2) L.

    ``body_lipschitz`` and ``lipschitz`` are floats (e.g. the product of the
    ``max_norm`` values of ``SpectralNormClip`` / ``ConvNormClip``
    constraints, (1 + h delta_bar)^N for a ``StabilizedNODE`` on Euler
    steps, 1 for a ``GroupSort`` or ``L2NormPooling2D`` layer), scalar
    variables, or zero-argument callables returning a differentiable scalar
    tensor.  The loss trusts that the value is a certified upper bound: never
    pass an estimate such as a power-iteration norm.

    Serialization: ``get_config`` keeps ``eps``, ``temperature``, float
    bounds and the read-out layer's *name*.  A loss rebuilt from a config
    (e.g. by ``keras.models.load_model`` with ``compile=True``) must be
    re-attached with ``bind(readout=model.get_layer(name))`` (and
    ``body_lipschitz=...`` if that was a callable) before it is called.

    Args:
        eps: the L2 training radius, in input units, >= 0 (a float, or a
            scalar ``keras.Variable`` for a schedule).
        readout: the read-out layer or kernel (pairwise form), or its layer
            name as a string (to be bound later).
        body_lipschitz: certified bound of the map up to the read-out
            (pairwise form); default 1.
        lipschitz: certified bound of the whole logit map (global form).
        temperature: T > 0.
        reduction, name, dtype: as for ``keras.losses.Loss``.

    Example:

    >>> import keras, numpy as np
    >>> readout = keras.layers.Dense(3)
    >>> model = keras.Sequential([keras.Input((4,)), readout])
    >>> loss = LipschitzMarginCrossEntropy(eps=0.5, readout=readout, body_lipschitz=1.0)
    >>> model.compile(optimizer="adam", loss=loss)
    >>> _ = model.fit(np.ones((8, 4), "float32"), np.zeros(8, "int32"), verbose=0)
    """

    def __init__(self, eps, readout=None, body_lipschitz=1.0, lipschitz=None,
                 temperature=1.0, reduction="sum_over_batch_size",
                 name="lipschitz_margin_cross_entropy", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        if isinstance(eps, (int, float)) and not (eps >= 0 and math.isfinite(eps)):
            raise ValueError(f"eps must be a finite number >= 0, got {eps!r}.")
        self.eps = eps
        self.temperature = float(temperature)
        if not (self.temperature > 0 and math.isfinite(self.temperature)):
            raise ValueError(f"temperature must be > 0, got {temperature!r}.")
        if (readout is None) == (lipschitz is None):
            raise ValueError("give exactly one of readout= (pairwise bound) and lipschitz= "
                             f"(global bound); got readout={readout!r}, lipschitz={lipschitz!r}.")
        self.readout = readout
        self.body_lipschitz = body_lipschitz
        self.lipschitz = lipschitz
        for label, bound in (("body_lipschitz", body_lipschitz), ("lipschitz", lipschitz)):
            if isinstance(bound, (int, float)) and not (bound >= 0 and math.isfinite(bound)):
                raise ValueError(f"{label} must be a finite number >= 0, got {bound!r}.")

    def bind(self, readout=None, body_lipschitz=None, lipschitz=None):
        """Attaches the read-out layer and bounds (after ``from_config``); returns self."""
        if readout is not None:
            self.readout = readout
        if body_lipschitz is not None:
            self.body_lipschitz = body_lipschitz
        if lipschitz is not None:
            self.lipschitz = lipschitz
        return self

    def pairwise_bound(self, dtype="float32"):
        """The (classes, classes) certified bound K of (z_j - z_y), zero diagonal.

        Only the pairwise form can build K without knowing the number of
        classes; the global form returns the scalar sqrt(2) L.
        """
        if self.lipschitz is not None:
            return math.sqrt(2.0) * _value(self.lipschitz, dtype)
        if isinstance(self.readout, str) or self.body_lipschitz is None:
            raise ValueError(
                f"{self.name}: the read-out {self.readout!r} or the body bound is not attached; "
                "call loss.bind(readout=model.get_layer(name), body_lipschitz=...) first.")
        kernel = ops.cast(ops.convert_to_tensor(_readout_kernel(self.readout)), dtype)
        return _value(self.body_lipschitz, dtype) * pairwise_distances(kernel)

    def margin_logits(self, y_true, y_pred):
        """z + eps K[y]: the logits the loss ranks (y first <=> certified at eps)."""
        y_pred = ops.convert_to_tensor(y_pred)
        onehot = _one_hot_labels(y_true, y_pred)
        eps = _value(self.eps, y_pred.dtype)
        bound = self.pairwise_bound(y_pred.dtype)
        if len(bound.shape) == 0:
            raise_by = bound * (1.0 - onehot)
        else:
            # einsum, not matmul: Keras's torch matmul returns float32 for float64 operands
            raise_by = ops.einsum("bi,ij->bj", onehot, bound)
        return y_pred + eps * raise_by

    def call(self, y_true, y_pred):
        y_pred = ops.convert_to_tensor(y_pred)
        onehot = _one_hot_labels(y_true, y_pred)
        logits = self.margin_logits(onehot, y_pred) / self.temperature
        return self.temperature * ops.categorical_crossentropy(onehot, logits, from_logits=True)

    def get_config(self):
        def plain(bound):
            if isinstance(bound, (int, float)):
                return float(bound)
            if _is_tensor(bound):
                return float(ops.convert_to_numpy(bound))
            return None         # a callable: re-attach with bind()

        readout = self.readout
        if readout is not None and not isinstance(readout, str):
            readout = getattr(readout, "name", None)
        config = super().get_config()
        config.update({
            "eps": plain(self.eps),
            "readout": readout,
            "body_lipschitz": plain(self.body_lipschitz),
            "lipschitz": plain(self.lipschitz),
            "temperature": self.temperature,
        })
        return config


def _sign(onehot):
    return 2.0 * onehot - 1.0


def _classes(logits):
    """The number of classes (the last axis) as a float, or a scalar tensor if unknown."""
    classes = logits.shape[-1]
    if classes is None:
        return ops.cast(ops.shape(logits)[-1], logits.dtype)
    return float(classes)


@keras.saving.register_keras_serializable(package="contractive_keras")
class MulticlassHinge(keras.losses.Loss):
    """Multi-class hinge of Serrurier et al. 2021 (deel-lip's ``MulticlassHinge``).

    With s_j = +1 for the target and -1 otherwise,

        loss = mean_j c_j relu(margin / 2 - s_j z_j),   c_y = classes - 1, c_j = 1,

    which is 0 exactly when z_y >= margin / 2 >= -z_j, so z_y - z_j >= margin
    for every j: on a network whose logit differences are L-Lipschitz, each
    such point is certified at radius margin / L (pairwise form: margin /
    (L_body ||w_y - w_j||)).

    Args:
        margin: the margin enforced between the target and each other logit, > 0.

    Example:

    >>> import numpy as np
    >>> float(MulticlassHinge(margin=1.0)(np.array([0]), np.array([[0.5, -0.5]], "float32")))
    0.0
    """

    def __init__(self, margin=1.0, reduction="sum_over_batch_size", name="multiclass_hinge",
                 dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.margin = float(margin)
        if not self.margin > 0:
            raise ValueError(f"margin must be > 0, got {margin!r}.")

    def call(self, y_true, y_pred):
        y_pred = ops.convert_to_tensor(y_pred)
        return multiclass_hinge(_one_hot_labels(y_true, y_pred), y_pred, self.margin)

    def get_config(self):
        config = super().get_config()
        config["margin"] = self.margin
        return config


def multiclass_hinge(onehot, logits, margin):
    """Per-example multi-class hinge (see ``MulticlassHinge``); one-hot labels."""
    classes = _classes(logits)
    hinge = ops.relu(margin / 2.0 - _sign(onehot) * logits)
    weights = onehot * (classes - 2.0) + 1.0          # classes - 1 on the target
    return ops.mean(weights * hinge, axis=-1)


def multiclass_kr(onehot, logits):
    """Per-example Kantorovich-Rubinstein term z_y - mean_{j != y} z_j; one-hot labels."""
    classes = _classes(logits)
    target = ops.sum(onehot * logits, axis=-1)
    others = ops.sum((1.0 - onehot) * logits, axis=-1) / (classes - 1.0)
    return target - others


@keras.saving.register_keras_serializable(package="contractive_keras")
class MulticlassKR(keras.losses.Loss):
    """Negative multi-class Kantorovich-Rubinstein term, -(z_y - mean_{j != y} z_j).

    On a 1-Lipschitz network its minimum over the weights estimates the
    Wasserstein-1 distance between each class and the rest (Serrurier et al.
    2021); alone it is unbounded below unless the network's norm is capped.

    Example:

    >>> import numpy as np
    >>> float(MulticlassKR()(np.array([0]), np.array([[1.0, -1.0]], "float32")))
    -2.0
    """

    def __init__(self, reduction="sum_over_batch_size", name="multiclass_kr", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)

    def call(self, y_true, y_pred):
        y_pred = ops.convert_to_tensor(y_pred)
        return -multiclass_kr(_one_hot_labels(y_true, y_pred), y_pred)


@keras.saving.register_keras_serializable(package="contractive_keras")
class MulticlassHingeKR(keras.losses.Loss):
    """Hinge-Kantorovich-Rubinstein loss, alpha * hinge - KR (Serrurier et al. 2021).

        loss = alpha * MulticlassHinge(margin) - (z_y - mean_{j != y} z_j)

    The hinge enforces the margin (hence a certified radius margin / L); the
    KR term keeps pushing the classes apart beyond it.  Large ``alpha``
    favours accuracy, small ``alpha`` robustness (deel-lip's older,
    unnormalised convention: alpha around 10-50 on MNIST).

    Args:
        alpha: weight of the hinge term, >= 0.
        margin: the hinge's margin, > 0.

    Example:

    >>> import numpy as np
    >>> loss = MulticlassHingeKR(alpha=10.0, margin=1.0)
    >>> round(float(loss(np.array([0]), np.array([[1.0, -1.0]], "float32"))), 4)
    -2.0
    """

    def __init__(self, alpha=10.0, margin=1.0, reduction="sum_over_batch_size",
                 name="multiclass_hinge_kr", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.alpha = float(alpha)
        self.margin = float(margin)
        if not (self.alpha >= 0 and math.isfinite(self.alpha)):
            raise ValueError(f"alpha must be a finite number >= 0, got {alpha!r}.")
        if not self.margin > 0:
            raise ValueError(f"margin must be > 0, got {margin!r}.")

    def call(self, y_true, y_pred):
        y_pred = ops.convert_to_tensor(y_pred)
        onehot = _one_hot_labels(y_true, y_pred)
        return (self.alpha * multiclass_hinge(onehot, y_pred, self.margin)
                - multiclass_kr(onehot, y_pred))

    def get_config(self):
        config = super().get_config()
        config.update({"alpha": self.alpha, "margin": self.margin})
        return config
