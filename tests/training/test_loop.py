"""training.loop.Trainer in-process: every model, validation split, noise table, fine-tuning."""

import json
import os

import numpy as np
import pytest

from contractive_keras.training import TrainConfig, Trainer

HAS_MNIST = bool(os.environ.get("CONTRACTIVE_KERAS_DATA")) and os.path.isfile(
    os.path.join(os.environ.get("CONTRACTIVE_KERAS_DATA", ""), "mnist.npz")
)
needs_mnist = pytest.mark.skipif(not HAS_MNIST, reason="MNIST offline copy absent: run `make data`")


def _write_easy_dataset(directory, seed=0):
    """An MNIST-shaped ``mnist.npz`` that a few steps learn: class k is a
    bright 7x7 square at the k-th cell of a 4x4 grid on faint uniform noise,
    so the classes are linearly separable (chance accuracy 0.1)."""
    rng = np.random.default_rng(seed)

    def split(n):
        labels = rng.permutation(np.arange(n) % 10)
        images = rng.integers(0, 20, (n, 28, 28)).astype(np.uint8)
        for k in range(10):
            row, col = divmod(k, 4)
            images[labels == k, 7 * row:7 * row + 7, 7 * col:7 * col + 7] = 128
        return images, labels

    (x_train, y_train), (x_test, y_test) = split(2000), split(500)
    np.savez(os.path.join(directory, "mnist.npz"), x_train=x_train, y_train=y_train,
             x_test=x_test, y_test=y_test)
    return str(directory)


@pytest.fixture(scope="module")
def easy_data(tmp_path_factory):
    return _write_easy_dataset(tmp_path_factory.mktemp("easy_data"))


def _median_loss(trainer, n=200):
    """Median per-example training loss of the first ``n`` training images
    (the median: the reference CH-NODE's expansive h = 0.5 steps give a few
    images huge logits, which would dominate a mean)."""
    images = trainer.x_train[:n, :, :, None].astype("float32") / 255.0
    labels = trainer.y_train[:n].astype("int32")
    return float(np.median(trainer.loss_fn(labels, trainer.model(images, training=False))))


# (steps, learning rate): the per-pixel Hamiltonian models take cheap steps
# and need more of them; the stabilized NODE's steps are slower (projection).
_EASY_SCHEDULE = {"chnode": (20, 1e-2), "hdnn": (20, 1e-2), "resnet": (20, 1e-2),
                  "node": (10, 5e-3), "stable_node": (10, 5e-3)}


@pytest.mark.parametrize("model", sorted(_EASY_SCHEDULE))
def test_every_model_learns_an_easy_task_far_above_chance(tmp_path, easy_data, model):
    """A short run on separable data lowers the training loss and ends with
    train and test accuracy far above chance (0.1): a broken gradient,
    optimizer, loss or data pipeline stays near chance."""
    steps, learning_rate = _EASY_SCHEDULE[model]
    config = TrainConfig(
        model=model, depth=2 if model in ("chnode", "hdnn", "resnet") else None,
        epochs=1, steps_per_epoch=steps, batch_size=20, learning_rate=learning_rate,
        model_dir=str(tmp_path), data_dir=easy_data, checkpoint_every=0, verbose=0,
        eval_take=100,
    )
    trainer = Trainer(config)
    before = _median_loss(trainer)
    summary = trainer.run()
    after = _median_loss(trainer)
    assert np.isfinite(summary["history"][0]["train_loss"])
    assert after < 0.5 * before, (before, after)
    assert summary["final"]["test_accuracy"] >= 0.7, summary["final"]
    assert summary["final"]["train_accuracy"] >= 0.7, summary["final"]


@needs_mnist
@pytest.mark.parametrize("model", ["chnode", "stable_node"])
def test_certificate_values_are_logged_every_epoch_and_in_the_summary(tmp_path, model):
    """Both ODE families log through certify.summary; TensorBoard and the
    history keep its numbers."""
    config = TrainConfig(model=model, depth=2 if model == "chnode" else None, epochs=1,
                         steps_per_epoch=2, batch_size=20, learning_rate=1e-3,
                         model_dir=str(tmp_path), verbose=0, eval_take=100)
    summary = Trainer(config).run()
    assert "certify_error" not in summary["certificate"], summary["certificate"]
    assert summary["certificate"]["lipschitz_bound"] > 0
    assert summary["history"][0]["certificate/lipschitz_bound"] > 0
    assert all(isinstance(v, (int, float)) for k, v in summary["history"][0].items()
               if k.startswith("certificate/"))


@needs_mnist
@pytest.mark.parametrize("model", ["lipschitz_cnn", "chnode_certified", "stable_node_certified"])
def test_certified_models_train_against_their_certificate_and_report_it(tmp_path, model):
    """The recipe's Lipschitz-margin loss trains; every epoch logs certified
    accuracy at MNIST's radii, never above the clean accuracy, and falling
    with the radius."""
    config = TrainConfig(model=model, depth=2 if model != "lipschitz_cnn" else None, epochs=1,
                         steps_per_epoch=3, batch_size=32, loss="lipschitz_margin",
                         train_eps=1.58, model_dir=str(tmp_path), verbose=0, eval_take=200)
    summary = Trainer(config).run()
    record = summary["history"][0]
    assert np.isfinite(record["train_loss"])
    certified = [record[f"certified/{r:g}"] for r in (0.1, 0.3, 0.5, 1.0, 1.58)]
    assert certified == sorted(certified, reverse=True)
    assert certified[0] <= record["test_accuracy"] + 1e-12
    assert summary["certified_accuracy"]["certified/body_bound"] > 0


@needs_mnist
def test_a_model_the_margin_loss_cannot_bound_is_refused_with_why(tmp_path):
    config = TrainConfig(model="node", epochs=1, steps_per_epoch=2, batch_size=20,
                         loss="lipschitz_margin", train_eps=0.3, model_dir=str(tmp_path),
                         verbose=0)
    with pytest.raises(ValueError, match="delta_bar"):
        Trainer(config)


@needs_mnist
def test_the_trained_split_excludes_the_held_out_images(tmp_path):
    from contractive_keras import data

    x, y = data.load_numpy("mnist", "train")
    config = TrainConfig(model="resnet", depth=2, epochs=1, steps_per_epoch=2, batch_size=20,
                         model_dir=str(tmp_path), verbose=0, eval_take=100, validation_size=700)
    trainer = Trainer(config)
    np.testing.assert_array_equal(trainer.x_train, x[:-700])
    np.testing.assert_array_equal(trainer.y_train, y[:-700])
    np.testing.assert_array_equal(trainer.x_val, x[-700:])
    np.testing.assert_array_equal(trainer.y_val, y[-700:])
    assert 0.0 <= trainer.evaluate("validation") <= 1.0
    with pytest.raises(ValueError, match="unknown split"):
        trainer.evaluate("holdout")


@needs_mnist
def test_without_validation_size_no_validation_accuracy_is_reported(tmp_path):
    config = TrainConfig(model="resnet", depth=2, epochs=1, steps_per_epoch=2, batch_size=20,
                         model_dir=str(tmp_path), verbose=0, eval_take=100)
    summary = Trainer(config).run()
    assert "validation_accuracy" not in summary["final"]
    assert "validation_accuracy" not in summary["history"][0]


@needs_mnist
def test_validation_size_that_leaves_no_training_image_is_refused(tmp_path):
    config = TrainConfig(model="resnet", depth=2, epochs=1, model_dir=str(tmp_path), verbose=0,
                         validation_size=60000)
    with pytest.raises(ValueError, match="leaves no training example"):
        Trainer(config)


@needs_mnist
def test_eval_noise_adds_the_robustness_table_to_the_summary(tmp_path):
    config = TrainConfig(model="resnet", depth=2, epochs=1, steps_per_epoch=3, batch_size=20,
                         learning_rate=1e-3, model_dir=str(tmp_path), verbose=0, eval_take=100,
                         eval_noise=True)
    summary = Trainer(config).run()
    kinds = {row["kind"] for row in summary["robustness"]["rows"]}
    assert {"clean", "gaussian", "salt_pepper", "fgsm", "worst_case"} <= kinds
    assert summary["robustness"]["metadata"]["n_examples"] == 100
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved["robustness"]["rows"][0]["kind"] == "clean"


@needs_mnist
def test_fine_tuning_a_node_into_a_stable_node_starts_constrained(tmp_path):
    import keras

    from contractive_keras import certify

    common = dict(epochs=1, steps_per_epoch=3, batch_size=32, learning_rate=1e-3, verbose=0,
                  eval_take=100)
    Trainer(TrainConfig(model="node", model_dir=str(tmp_path / "node"), export=True, **common)).run()
    tuned = Trainer(TrainConfig(model="stable_node", delta_bar=0.0, model_dir=str(tmp_path / "tuned"),
                                init_from=str(tmp_path / "node"), **common))
    lift = tuned.model.get_layer("lift").kernel.numpy()
    source = keras.saving.load_model(tmp_path / "node" / "export" / "model.keras")
    np.testing.assert_array_equal(lift, source.get_layer("lift").kernel.numpy())
    layer = tuned.model.get_layer("stabilized_node")
    assert certify.layer_certificate(layer).value <= 1.0 + 1e-6  # constrained before any step
    tuned.run()


def test_unwritable_model_dir_is_refused_before_any_data_is_read(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    config = TrainConfig(model="resnet", depth=2, model_dir=str(blocker / "run"),
                         data_dir=str(tmp_path / "no_data_here"))
    with pytest.raises(ValueError, match="is not a writable directory"):
        Trainer(config)


@needs_mnist
def test_a_run_is_reproduced_bit_for_bit_by_its_seed(tmp_path):
    """The seed study relies on it: the same command retrains the same weights."""
    def weights(run, seed):
        config = TrainConfig(model="chnode", depth=2, epochs=1, steps_per_epoch=4, batch_size=20,
                             checkpoint_every=0, model_dir=str(tmp_path / run), verbose=0,
                             eval_take=100, seed=seed)
        trainer = Trainer(config)
        trainer.run()
        return [v.numpy() for v in trainer.model.trainable_variables]

    first, again, other = weights("a", 5), weights("b", 5), weights("c", 6)
    assert all(np.array_equal(x, y) for x, y in zip(first, again))
    assert not all(np.array_equal(x, y) for x, y in zip(first, other))
