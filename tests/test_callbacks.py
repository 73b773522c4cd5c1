"""BSMLogger and the reference toy: CH-NODE keeps ||d xi(T)/d xi(0)|| <= 1 through training."""

import glob
import os

import keras
import numpy as np
import pytest

from contractive_keras.solvers import SolverSpec
from contractive_keras import certify
from contractive_keras.callbacks import BSMLogger
from contractive_keras.layers import CHNODE, ResNetODE
from contractive_keras.layers import StepwiseIdentity


def double_circles(count, seed=0):
    """Four noisy rings of radius 1..4 with alternating labels, embedded in R^4."""
    rng = np.random.default_rng(seed)
    radius = rng.integers(1, 5, count)
    theta = rng.uniform(0, 2 * np.pi, count)
    xy = np.stack([radius * np.cos(theta), radius * np.sin(theta)], 1)
    xy += 0.6 * (rng.random((count, 2)) - 0.5)
    x = np.zeros((count, 4), "float32")
    x[:, 0], x[:, 3] = xy[:, 0], xy[:, 1]          # the reference puts x, y at 0 and n-1
    return x, (radius % 2).astype("int32")


def classifier(ode):
    inputs = keras.Input((4,))
    outputs = keras.layers.Dense(2)(ode(inputs))
    model = keras.Model(inputs, outputs)
    model.compile(keras.optimizers.Adam(0.05),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model


def test_toy_chnode_contracts_through_training_and_vanilla_node_does_not(tmp_path):
    x, y = double_circles(400)
    # 16 layers, n = 4.  A fixed gamma with an eps margin makes the projected
    # set small enough that h = 0.25 is certified for every reachable weight.
    chnode = CHNODE(SolverSpec("euler", steps=16, step_size=0.25), gamma=2.0, eps=0.3, kappa=0.1,
                    dissipation_initializer=StepwiseIdentity(0.2), name="ode",
                    kernel_initializer=keras.initializers.RandomNormal(stddev=1.0),
                    bias_initializer=keras.initializers.RandomNormal(stddev=1.0))
    model = classifier(chnode)
    cert = certify.layer_certificate(chnode)
    assert chnode.step_size <= cert.details["invariant_max_step_size"]
    logger = BSMLogger(x[:64], log_dir=str(tmp_path / "tb"))
    history = model.fit(x, y, batch_size=50, epochs=4, verbose=0, callbacks=[logger])
    assert len(logger.history["bsm_norm"]) == 4
    assert max(logger.history["bsm_norm"]) <= 1.0
    assert max(logger.history["lipschitz_bound"]) <= 1.0
    assert set(logger.history) >= {"gamma", "alpha", "rho", "bsm_norm", "max_step_size"}
    assert history.history["contraction/bsm_norm"] == logger.history["bsm_norm"]
    assert glob.glob(os.path.join(str(tmp_path / "tb"), "events.out.tfevents.*"))

    vanilla = ResNetODE(SolverSpec("euler", steps=16, step_size=0.25), name="ode",
                        kernel_initializer=keras.initializers.RandomNormal(stddev=1.0),
                        bias_initializer=keras.initializers.RandomNormal(stddev=1.0))
    model = classifier(vanilla)
    logger = BSMLogger(x[:64], frequency=2)
    model.fit(x, y, batch_size=50, epochs=4, verbose=0, callbacks=[logger])
    assert len(logger.history["bsm_norm"]) == 2
    assert min(logger.history["bsm_norm"]) > 1.0


def test_measure_without_training_and_missing_ode_layer():
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    logger = BSMLogger(np.zeros((2, 4), "float32"))
    logger.set_model(model)
    with pytest.raises(ValueError, match="no fixed-step ODE layer"):
        logger.measure()
