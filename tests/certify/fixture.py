"""The cross-backend certificate fixtures: two tiny classifiers saved under TensorFlow.

``tests/certify/data/lipschitz_cnn.keras`` (convolution, GroupSort, l2-norm
pooling, dense) and ``ode_classifier.keras`` (a CH-NODE and a stabilized
NODE block) hold the models, the ``.json`` files what TensorFlow's run
certified (float64): the whole-model bound, the body bound and its factors,
the pairwise radii of a few fixed inputs and, for the ODE blocks, their map
and flow certificates and ``certify.summary``.  ``tests/certify/test_backends.py`` loads the file
under each Keras backend and checks the same certificate (to float64
rounding) and the same radii (to float32 logits).  Regenerate with

    KERAS_BACKEND=tensorflow python -m tests.certify.fixture
"""

import json
import os

import keras
import numpy as np

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
MODEL = os.path.join(DATA, "lipschitz_cnn.keras")
RECORD = os.path.join(DATA, "lipschitz_cnn.json")
ODE_MODEL = os.path.join(DATA, "ode_classifier.keras")
ODE_RECORD = os.path.join(DATA, "ode_classifier.json")


def inputs():
    """The fixed inputs whose radii are recorded (8 images, 6 x 6 x 1, in [0, 1])."""
    return np.random.default_rng(20).uniform(size=(8, 6, 6, 1)).astype("float32")


def build(seed=0):
    """Conv2D -> GroupSort -> L2NormPooling2D -> Flatten -> Dense -> GroupSort -> Dense.

    No ``Rescaling``: Keras's preprocessing layers ask ``"tensorflow" in
    sys.modules``, which the tests' TensorFlow blocker makes true.
    """
    from contractive_keras.layers import GroupSort  # pylint: disable=import-outside-toplevel
    from contractive_keras.layers import L2NormPooling2D  # pylint: disable=import-outside-toplevel

    keras.utils.set_random_seed(seed)
    x_in = keras.Input((6, 6, 1))
    x = keras.layers.Conv2D(4, 3, padding="same")(x_in)
    x = L2NormPooling2D(2)(GroupSort(2)(x))
    x = GroupSort(2)(keras.layers.Dense(8)(keras.layers.Flatten()(x)))
    return keras.Model(x_in, keras.layers.Dense(3, name="logits")(x), name="lipschitz_cnn")


def build_ode(seed=0):
    """Conv2D -> CHNODE (3 Euler steps) -> Flatten -> Dense -> StabilizedNODE (4 Euler steps) -> Dense.

    Both blocks have a weight-independent training bound (``certify.ode_guarantee``):
    the CH-NODE a fixed gamma and L, the stabilized NODE a ``DeltaBarProjection``
    (its kernel projected before saving).
    """
    from contractive_keras.layers import CHNODE  # pylint: disable=import-outside-toplevel
    from contractive_keras.layers import StabilizedNODE  # pylint: disable=import-outside-toplevel
    from contractive_keras.layers import StepwiseIdentity  # pylint: disable=import-outside-toplevel
    from contractive_keras.solvers import SolverSpec  # pylint: disable=import-outside-toplevel

    keras.utils.set_random_seed(seed)
    x_in = keras.Input((6, 6, 1))
    x = keras.layers.Conv2D(4, 3, padding="same")(x_in)
    # A fixed gamma: gamma="auto" is computed in the graph, in float32 on JAX without
    # x64, so the map (and its certificate) would differ there from TensorFlow's.
    x = CHNODE(SolverSpec("euler", steps=3, step_size=0.25), gamma=2.0, eps=0.3, kappa=1e-6,
               dissipation_initializer=StepwiseIdentity(0.3), discrete_check="ignore",
               name="chnode")(x)
    x = keras.layers.Dense(6)(keras.layers.Flatten()(x))
    block = StabilizedNODE(SolverSpec("euler", steps=4, t1=1.0), min_slope=0.5, delta_bar=-0.2,
                           name="stabilized")
    model = keras.Model(x_in, keras.layers.Dense(3, name="logits")(block(x)), name="ode_classifier")
    block.kernel.assign(block.kernel.constraint(block.kernel))
    return model


def ode_record(model):
    """``certificate_record`` plus each ODE block's map and flow certificates and ``summary``."""
    from contractive_keras import certify  # pylint: disable=import-outside-toplevel

    record = certificate_record(model)
    for name in ("chnode", "stabilized"):
        layer = model.get_layer(name)
        record[name] = {"map": certify.layer_certificate(layer).value,
                        "flow": certify.layer_certificate(layer, certifies="flow").value,
                        "guarantee": certify.ode_guarantee(layer)}
    record["summary"] = {key: value for key, value in certify.summary(model, warn=False).items()
                         if isinstance(value, float)}
    return record


def certificate_record(model):
    """The float64 numbers the fixture pins: bounds, factors and radii at ``inputs()``."""
    from contractive_keras import certify  # pylint: disable=import-outside-toplevel

    whole = certify.lipschitz_bound(model)
    body, _ = certify.body_and_readout(model)
    result = certify.certified_radius(model, inputs())
    return {
        "lipschitz_bound": whole.value,
        "body_bound": body.value,
        "factors": [[name, kind, value] for name, kind, value in whole.factors],
        "radius": result.radius.tolist(),
        "bound": result.bound,
    }


def main():
    """Writes the model and its record (run under TensorFlow)."""
    from contractive_keras import backend  # pylint: disable=import-outside-toplevel

    if not backend.is_tensorflow():
        raise SystemExit("the fixture is recorded under KERAS_BACKEND=tensorflow")
    os.makedirs(DATA, exist_ok=True)
    for make, record_of, path, record_path in ((build, certificate_record, MODEL, RECORD),
                                               (build_ode, ode_record, ODE_MODEL, ODE_RECORD)):
        model = make()
        model.save(path)
        record = {"backend": backend.name(), "keras": keras.__version__, **record_of(model)}
        with open(record_path, "w", encoding="utf-8") as handle:
            json.dump(record, handle, indent=1)
            handle.write("\n")


if __name__ == "__main__":
    main()
