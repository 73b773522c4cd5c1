"""training.config: TrainConfig from the recipe, the option rules, path checks."""

import os

import pytest

from contractive_keras import models
from contractive_keras.training import config as cfg


def test_make_config_fills_unset_fields_from_the_recipe():
    config = cfg.make_config("hdnn", depth=8, epochs=3, learning_rate=None)
    recipe = models.REFERENCE_HPARAMS["hdnn"]
    assert config.depth == 8 and config.epochs == 3
    assert config.learning_rate == recipe["learning_rate"]
    assert config.weight_decay == recipe["weight_decay"] and config.smoothness == recipe["smoothness"]
    assert config.model_dir == os.path.join("runs", "hdnn_mnist_n8")


def test_make_config_of_a_stabilized_model_has_no_depth_in_its_directory():
    config = cfg.make_config("stable_node", dataset="fashion_mnist")
    assert config.depth is None and config.delta_bar == 0.0 and config.min_slope == 0.1
    assert config.model_dir == os.path.join("runs", "stable_node_fashion_mnist")


@pytest.mark.parametrize("model, values, message", [
    ("resnet", {"gamma": 3.0}, "--gamma applies to --model=chnode or chnode_certified only"),
    ("hdnn", {"L_scale": 0.3}, "--L_scale applies to --model=chnode or chnode_certified only"),
    ("chnode", {"delta_bar": 0.5},
     "--delta_bar applies to --model=stable_node or stable_node_certified only"),
    ("chnode", {"min_slope": 0.5},
     "--min_slope applies to --model=node, stable_node or stable_node_certified only"),
    ("node", {"depth": 4}, "--depth applies to --model=chnode, hdnn, resnet, chnode_certified "
                           "or stable_node_certified only"),
    ("stable_node", {"smoothness": 1e-3}, "--smoothness applies to --model=chnode, hdnn or resnet only"),
])
def test_option_problems_name_the_models_an_option_applies_to(model, values, message):
    assert cfg.option_problems(model, values) == [message]
    with pytest.raises(ValueError, match="applies to"):
        cfg.make_config(model, **values)


@pytest.mark.parametrize("model", models.NAMES)
def test_common_options_and_unset_options_apply_to_every_model(model):
    values = {option: 1.0 for option in models.COMMON_OPTIONS}
    values.update({option: None for option in models.MODEL_OPTIONS})
    assert cfg.option_problems(model, values) == []


def test_certified_recipes_train_against_the_certificate():
    config = cfg.make_config("stable_node_certified", dataset="fashion_mnist", train_eps=0.5)
    assert (config.loss, config.train_eps, config.loss_bound) == ("lipschitz_margin", 0.5, "exact")
    assert cfg.make_config("chnode").loss == "cross_entropy"
    with pytest.raises(ValueError, match="unknown loss 'margin'"):
        cfg.make_config("chnode", loss="margin")
    with pytest.raises(ValueError, match="train_eps must be >= 0"):
        cfg.make_config("lipschitz_cnn", train_eps=-1.0)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        cfg.make_config("lipschitz_cnn", temperature=0.0)


def test_make_config_refuses_unknown_models_and_fields():
    with pytest.raises(ValueError, match="unknown model 'transformer'"):
        cfg.make_config("transformer")
    with pytest.raises(ValueError, match="unknown TrainConfig fields"):
        cfg.make_config("chnode", lr=0.1)


def test_check_paths_creates_a_writable_model_dir(tmp_path):
    cfg.check_paths(cfg.TrainConfig(model_dir=str(tmp_path / "new" / "run")))
    assert (tmp_path / "new" / "run").is_dir()
    assert os.listdir(tmp_path / "new" / "run") == []


def test_check_paths_refuses_a_model_dir_below_a_file(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match=r"--model_dir=.*file/run is not a writable directory"):
        cfg.check_paths(cfg.TrainConfig(model_dir=str(tmp_path / "file" / "run")))


def test_check_paths_refuses_a_missing_or_non_keras_init_from(tmp_path):
    run = str(tmp_path / "run")
    with pytest.raises(ValueError, match="--init_from: no .keras file at"):
        cfg.check_paths(cfg.TrainConfig(model_dir=run, init_from=str(tmp_path / "missing.keras")))
    with pytest.raises(ValueError, match="--init_from: no .keras file at .*export/model.keras"):
        cfg.check_paths(cfg.TrainConfig(model_dir=run, init_from=str(tmp_path)))
    (tmp_path / "text.keras").write_text("not a zip")
    with pytest.raises(ValueError, match="is not a .keras file"):
        cfg.check_paths(cfg.TrainConfig(model_dir=run, init_from=str(tmp_path / "text.keras")))


def test_init_from_is_not_checked_when_resuming_from_a_checkpoint(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "checkpoint").write_text('model_checkpoint_path: "ckpt-1"\n')
    cfg.check_paths(cfg.TrainConfig(model_dir=str(tmp_path), init_from=str(tmp_path / "gone.keras")))
