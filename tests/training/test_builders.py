"""training.builders: the model and optimizer of a config."""

import warnings

import numpy as np

from contractive_keras.training import TrainConfig, builders


def test_config_options_reach_the_model():
    config = TrainConfig(model="chnode", depth=2, gamma="2", eps=0.3, L_scale=0.3,
                         lift_max_norm=0.5, readout_max_norm=2.0)
    assert builders.model_overrides(config) == {
        "gamma": 2.0, "eps": 0.3, "L_scale": 0.3, "lift_max_norm": 0.5, "readout_max_norm": 2.0}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        model = builders.build_model(config)
    layer = model.get_layer("chnode")
    assert layer.gamma == 2.0 and layer.steps == 2
    np.testing.assert_allclose(layer.L.numpy()[0], 0.3 * np.eye(8), rtol=1e-6)


def test_gamma_auto_stays_a_string():
    assert builders.parse_gamma("auto") == "auto" and builders.parse_gamma("3.5") == 3.5


def test_learning_rate_decays_once_per_epoch():
    optimizer = builders.build_optimizer(TrainConfig(learning_rate=0.04, lr_decay=0.8), steps_per_epoch=10)
    rates = []
    for step in (0, 9, 10, 25):
        optimizer.iterations.assign(step)
        rates.append(float(optimizer.learning_rate))
    np.testing.assert_allclose(rates, [0.04, 0.04, 0.032, 0.04 * 0.64], rtol=1e-6)
