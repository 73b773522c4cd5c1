"""models (the registry and its builders): the reference MNIST architectures,
the certified presets and their hyperparameters."""

import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

from contractive_keras import certify, models
from contractive_keras.layers import CHNODE, HDNN, ResNetODE


def build(name, depth=2, **overrides):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)   # h = 0.5 is not certified
        return models.build(name, depth=depth, **overrides)


@pytest.mark.parametrize("name, layer_cls", [("chnode", CHNODE), ("hdnn", HDNN),
                                             ("resnet", ResNetODE)])
def test_reference_architecture_and_regularization(name, layer_cls):
    model = build(name, depth=3)
    assert model.input_shape == (None, 28, 28, 1)
    assert model.output_shape == (None, 10)
    ode = [l for l in model.layers if isinstance(l, layer_cls)][0]
    assert ode.steps == 3 and ode.step_size == 0.5 and ode.solver == "euler"
    assert ode.K.shape == (3, 8, 8)
    hp = models.REFERENCE_HPARAMS[name]
    # Weight decay on conv / dense kernels and biases, smoothness + decay on K and b.
    assert len(model.losses) == 6
    K = ode.K.numpy()
    smooth = hp["smoothness"] * 0.5 * sum(0.5 * np.sum((K[j + 1] - K[j]) ** 2) for j in range(2))
    expected_K = smooth + hp["weight_decay"] / 2 * np.sum(K ** 2)
    assert float(ode.K.regularizer(ode.K)) == pytest.approx(expected_K, rel=1e-5)
    x = np.random.default_rng(0).uniform(size=(2, 28, 28, 1)).astype("float32")
    assert model(x).shape == (2, 10)


def test_normalisation_is_inside_the_model():
    model = build("resnet")
    rescale = model.get_layer("normalize")
    x = np.full((1, 28, 28, 1), 0.1307, "float32")
    np.testing.assert_allclose(rescale(x).numpy(), 0.0, atol=1e-6)
    np.testing.assert_allclose(rescale(x + 0.3081).numpy(), 1.0, atol=1e-5)


def test_the_reference_chnode_keeps_its_dissipation_fixed():
    """L = 0.02 I, not trained (shared/DESIGN.md); the recipe values themselves
    are checked against docs/reproduction.md and their users in test_recipes.py."""
    chnode = build("chnode").get_layer("chnode")
    assert not chnode.dissipation_trainable and np.allclose(chnode.L.numpy()[0], 0.02 * np.eye(8))


def test_overrides_reach_the_layer_and_training_settings_are_ignored():
    model = build("chnode", depth=2, gamma=50.0, eps=1e-3, step_size=0.1, learning_rate=0.1,
                  batch_size=7, weight_decay=0.0, smoothness=0.0)
    ode = model.get_layer("chnode")
    assert ode.gamma == 50.0 and ode.step_size == 0.1
    assert len(model.losses) == 0


def test_l_scale_sets_the_fixed_dissipation_matrix():
    ode = build("chnode", depth=2, L_scale=0.3).get_layer("chnode")
    np.testing.assert_allclose(ode.L.numpy(), np.stack([0.3 * np.eye(8)] * 2), rtol=1e-6)


def test_registry_lists_each_model_once_with_its_family_recipe_and_options():
    assert models.NAMES == ("chnode", "hdnn", "resnet", "node", "stable_node", "lipschitz_cnn",
                            "chnode_certified", "stable_node_certified")
    assert models.HAMILTONIAN == ("chnode", "hdnn", "resnet")
    assert models.STABILIZED == ("node", "stable_node")
    assert models.CERTIFIED == ("lipschitz_cnn", "chnode_certified", "stable_node_certified")
    assert set(models.REFERENCE_HPARAMS) == set(models.BUILDERS) == set(models.NAMES)
    for name, spec in models.MODELS.items():
        assert spec.name == name and dict(spec.recipe) == models.REFERENCE_HPARAMS[name]
        assert set(models.options(name)) >= set(models.COMMON_OPTIONS)
        # one spelling: the learning rate is "learning_rate" everywhere
        assert "learning_rate" in spec.recipe and "lr" not in spec.recipe


@pytest.mark.parametrize("option, accepting", [
    ("gamma", ("chnode", "chnode_certified")), ("eps", ("chnode", "chnode_certified")),
    ("L_scale", ("chnode", "chnode_certified")),
    ("delta_bar", ("stable_node", "stable_node_certified")),
    ("min_slope", ("node", "stable_node", "stable_node_certified")),
    ("depth", ("chnode", "hdnn", "resnet", "chnode_certified", "stable_node_certified")),
    ("smoothness", ("chnode", "hdnn", "resnet")),
    ("weight_decay", models.NAMES), ("lift_max_norm", models.NAMES),
])
def test_models_accepting_an_option(option, accepting):
    assert models.models_accepting(option) == accepting


def test_models_use_the_dataset_statistics_and_input_shape_of_datasets():
    from contractive_keras import datasets

    mean, std = datasets.NORMALIZATION["mnist"]
    for name in ("resnet", "node"):
        model = build(name) if name == "resnet" else models.build(name)
        assert model.input_shape == (None, *datasets.INPUT_SHAPE)
        assert model.output_shape == (None, datasets.NUM_CLASSES)
        rescale = model.get_layer("normalize")
        assert rescale.scale == pytest.approx(1.0 / std) and rescale.offset == pytest.approx(-mean / std)


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"known: \['chnode', 'chnode_certified', 'hdnn', "
                                         r"'lipschitz_cnn', 'node', 'resnet', 'stable_node', "
                                         r"'stable_node_certified'\]"):
        models.build("transformer")


def test_trains_with_fit_saves_with_safe_mode_and_reports_certificates(tmp_path):
    model = build("chnode", depth=2)
    rng = np.random.default_rng(1)
    x = rng.uniform(size=(8, 28, 28, 1)).astype("float32")
    y = rng.integers(0, 10, 8)
    model.compile(keras.optimizers.Adam(0.04),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    path = str(tmp_path / "c.keras")
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_array_equal(loaded(x).numpy(), model(x).numpy())
    with pytest.warns(RuntimeWarning, match="NOT certified"):
        certify.summary(model)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        values = certify.summary(model, warn=False)
    assert values["lipschitz_bound"] > 1.0    # the reference h = 0.5: no guarantee
    assert values["gamma"] > 1.0


@pytest.mark.slow
def test_chnode_learns_mnist_in_one_epoch():
    """Far above chance after one epoch (0.69 and 0.8+ seen on two seeds: the
    reference h = 0.5 dynamics are expansive, so single-epoch accuracy varies)."""
    from contractive_keras import data

    model = build("chnode", depth=4)
    model.compile(keras.optimizers.Adam(0.04),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    model.fit(data.load("mnist", "train", batch_size=100), epochs=1, verbose=0)
    _, accuracy = model.evaluate(data.load("mnist", "test", batch_size=500).take(4), verbose=0)
    assert accuracy >= 0.5


@pytest.mark.parametrize("name", ["lipschitz_cnn", "chnode_certified", "stable_node_certified"])
def test_certified_presets_take_pixels_and_have_a_training_bound(name):
    from contractive_keras import certify

    model = models.build(name)
    assert model.output_shape == (None, 10)
    assert not any(isinstance(l, keras.layers.Rescaling) for l in model.layers)
    certified = certify.body_and_readout(model)[0]
    assert float(certify.body_bound_fn(model)()) >= certified.value
    assert float(certify.body_bound_fn(model, "constraint")()) >= certified.value
    if name != "lipschitz_cnn":
        assert certify.ode_guarantee(model.get_layer("ode")) <= 1.0
        assert certify.layer_certificate(model.get_layer("ode")).value <= 1.0 + 1e-12
    names = [l.name for l in models.build("lipschitz_cnn").layers]
    assert [n for n in (l.name for l in model.layers) if n != "ode"] == names


def test_certified_presets_check_their_options():
    with_norm = models.build("lipschitz_cnn", normalize_inputs=True)
    assert isinstance(with_norm.get_layer("normalize"), keras.layers.Rescaling)
    ode = models.build("chnode_certified", depth=2, gamma=3.0).get_layer("ode")
    assert (ode.steps, ode.step_size, ode.gamma) == (2, 0.5, 3.0)
    conv = models.build("chnode_certified", depth=2, kernel_size=3)
    assert conv.get_layer("ode").kernel_size == (3, 3)
    assert certify.ode_guarantee(conv.get_layer("ode")) == 1.0
    with pytest.raises(ValueError, match="lift_max_norm"):
        models.build("lipschitz_cnn", lift_max_norm=2.0)
    assert models.build("node", normalize_inputs=False).layers[1].name == "flatten"
