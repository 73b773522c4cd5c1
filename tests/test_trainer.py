"""contractive_keras.trainer keeps its old public names (now in training/)."""

from contractive_keras import trainer, training


def test_old_names_are_the_training_package_names():
    for name in ("Trainer", "TrainConfig", "TrainingDiverged", "select_strategy", "is_chief",
                 "build_model", "build_optimizer", "hardware_summary", "write_json"):
        assert getattr(trainer, name) is getattr(training, name), name
