"""The ``python -m contractive_keras.evaluate`` command: tables from a .keras file,
a SavedModel directory or a zoo name, and one-line errors (exit 2) for bad flags
and for every bad --model."""

import json
import os
import subprocess
import sys
import zipfile

import keras
import numpy as np
import pytest

from contractive_keras import robustness, zoo
from contractive_keras.evaluate import RobustnessTable, load_source, main
from tests.robustness.classifiers import tiny_mnist_model
from tests.test_zoo import NAME, build_tiny_zoo

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def keras_file(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("cli") / "model.keras")
    tiny_mnist_model(hidden=0).save(path)
    return path


CLI_FAST = ["--take=100", "--draws=2", "--eps=0.1", "--pgd_steps=3", "--quiet"]


def test_cli_on_a_keras_file_prints_and_writes_the_table(keras_file, tmp_path, capsys):
    out_json, out_csv = str(tmp_path / "r.json"), str(tmp_path / "r.csv")
    table = main([f"--model={keras_file}", "--dataset=mnist", f"--output={out_json}",
                  f"--output={out_csv}", "--lipschitz=30", "--attacks=pgd,quick", "--diagnostics_take=20",
                  *CLI_FAST])
    printed = capsys.readouterr().out
    assert "| clean |" in printed and "| pgd linf eps=0.1 |" in printed and "certified" in printed
    assert "| quick (upper bound) linf eps=0.1 |" in printed and "gradient masking detected**" in printed
    saved = json.load(open(out_json))
    assert saved["metadata"]["dataset"] == "mnist" and saved["metadata"]["n_examples"] == 100
    assert RobustnessTable.from_dict(saved).rows == table.rows
    assert open(out_csv).readline().startswith("kind,level,norm,mean,std")


def test_cli_on_a_zoo_name_uses_its_dataset_and_lipschitz_bound(tmp_path, monkeypatch, capsys):
    build_tiny_zoo(tmp_path / "zoo")
    monkeypatch.setenv("CONTRACTIVE_KERAS_ZOO", str(tmp_path / "zoo"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    for model_format in ("keras", "saved_model"):
        table = main([f"--model={NAME}", f"--format={model_format}", "--attacks=fgsm", "--noise=", *CLI_FAST])
        assert table.metadata["lipschitz_constant"] == 12.5  # from the card
        assert [r.kind for r in table] == ["clean", "fgsm", "worst_case", "certified"]
    assert f"{NAME} on mnist test (100 examples)" in capsys.readouterr().out


def test_cli_lipschitz_auto_certifies_a_keras_chain_model(keras_file, tmp_path):
    inputs = keras.Input((28, 28, 1))
    h = keras.layers.Rescaling(1 / 0.3081, offset=-0.1307 / 0.3081)(inputs)
    model = keras.Model(inputs, keras.layers.Dense(10)(keras.layers.Flatten()(h)))
    path = str(tmp_path / "chain.keras")
    model.save(path)
    table = main([f"--model={path}", "--dataset=mnist", "--lipschitz=auto", "--attacks=", "--noise=",
                  *CLI_FAST])
    expected = np.linalg.norm(model.layers[-1].kernel.numpy().astype(np.float64), 2) / 0.3081
    assert table.metadata["lipschitz_constant"] == pytest.approx(expected, rel=1e-6)
    assert [r.kind for r in table] == ["clean", "certified"]
    assert main([f"--model={path}", "--dataset=mnist", "--lipschitz=none", *CLI_FAST,
                 "--attacks=", "--noise="]).metadata["lipschitz_constant"] is None
    own = main([f"--model={path}", "--dataset=mnist", "--lipschitz=certify", "--attacks=", "--noise=",
                *CLI_FAST, "--norm=l2", "--eps=0.5"])
    assert own.metadata["lipschitz_constant"] == "certify"
    # The model's own (pairwise) radii certify at least what the global bound does.
    assert own.lookup("certified", 0.5).mean >= main(
        [f"--model={path}", "--dataset=mnist", "--lipschitz=auto", "--attacks=", "--noise=",
         *CLI_FAST, "--norm=l2", "--eps=0.5"]).lookup("certified", 0.5).mean


@pytest.mark.parametrize("argv,message", [
    (["--model=MODEL", "--dataset=mnist", "--lipschitz=-1"], "expected a number > 0, 'auto', 'certify' or 'none'"),
    (["--model=MODEL", "--dataset=mnist", "--eps=0.1,-1"], "values must be >= 0"),
    (["--model=MODEL", "--dataset=mnist", "--attacks=fgsm,cw"], "allowed are fgsm, pgd"),
    (["--model=MODEL", "--dataset=mnist", "--output=r.txt"], "extension must be one of"),
    (["--model=MODEL", "--dataset=mnist", "--draws=0"], "expected a positive integer"),
    (["--model=MODEL", "--dataset=cifar10"], "invalid choice: 'cifar10'"),
    (["--model=MODEL", "--dataset=mnist", "--noise=gaussian"], "KIND:LEVEL"),
    (["--model=MODEL"], "--dataset is required when --model is a path"),
    (["--model=no_such_model", "--dataset=mnist"], "neither an existing path nor a zoo model; zoo models:"),
])
def test_cli_bad_values_exit_2_with_a_clear_message(keras_file, capsys, argv, message):
    argv = [a.replace("MODEL", keras_file) for a in argv]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.fixture
def bad_models(tmp_path):
    """name -> (a --model value that is not a model, the message it must give)."""
    (tmp_path / "text.keras").write_text("not a zip archive\n")
    (tmp_path / "weights.h5").write_bytes(b"\x89HDF\r\n")
    (tmp_path / "empty_dir").mkdir()
    with zipfile.ZipFile(tmp_path / "other.keras", "w") as archive:
        archive.writestr("readme.txt", "a zip, but no Keras model in it")
    return {
        "missing": (str(tmp_path / "missing.keras"), "is neither an existing path nor a zoo model"),
        "not_a_zip": (str(tmp_path / "text.keras"), "is not a .keras file: a .keras file is a zip archive"),
        "other_extension": (str(tmp_path / "weights.h5"), "is a file but not a .keras file"),
        "zip_without_model": (str(tmp_path / "other.keras"), "could not be loaded"),
        "not_a_saved_model": (str(tmp_path / "empty_dir"), "directory without saved_model.pb"),
        "unknown_zoo_name": ("no_such_model", "is neither an existing path nor a zoo model; zoo models:"),
    }


@pytest.mark.parametrize("case", ["missing", "not_a_zip", "other_extension", "zip_without_model",
                                  "not_a_saved_model", "unknown_zoo_name"])
def test_every_bad_model_is_a_one_line_error_with_exit_2(bad_models, capsys, case):
    model, message = bad_models[case]
    with pytest.raises(SystemExit) as exit_info:
        main([f"--model={model}", "--dataset=mnist", *CLI_FAST])
    assert exit_info.value.code == 2
    error_lines = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(error_lines) == 1 and message in error_lines[0] and "--model" in error_lines[0]


def test_a_file_that_is_not_a_zip_fails_cleanly_in_a_fresh_process(tmp_path):
    # The reported bug: keras said "file not found" with a traceback for a file that exists.
    (tmp_path / "model.keras").write_text("not a zip archive\n")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run(
        [sys.executable, "-m", "contractive_keras.evaluate", f"--model={tmp_path / 'model.keras'}",
         "--dataset=mnist"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].endswith(
        "is not a .keras file: a .keras file is a zip archive, this one is not (truncated, or another format)")


def test_cli_on_a_savedmodel_directory(tmp_path):
    tiny_mnist_model(hidden=0).export(str(tmp_path / "sm"), verbose=False)
    table = main([f"--model={tmp_path / 'sm'}", "--dataset=mnist", "--attacks=fgsm", "--noise=",
                  *CLI_FAST])
    assert [r.kind for r in table] == ["clean", "fgsm", "worst_case"]
    assert table.lookup("clean").mean > 0.8


def test_python_dash_m_entry_point_runs_on_a_chnode_keras_file(tmp_path):
    # A fresh process: loading the .keras file must register CHNODE itself.
    import warnings

    from contractive_keras import models

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # untrained: not certified contractive
        models.build("chnode", depth=2).save(str(tmp_path / "chnode.keras"))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run(
        [sys.executable, "-m", "contractive_keras.evaluate", f"--model={tmp_path / 'chnode.keras'}",
         "--dataset=mnist",
         "--take=50", "--draws=1", "--attacks=fgsm", "--eps=0.1", f"--output={tmp_path / 'r.md'}"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "| fgsm linf eps=0.1 |" in result.stdout
    assert open(tmp_path / "r.md").read().startswith("| setting |")



def test_load_source_takes_a_path_or_a_zoo_name_to_the_same_logits(keras_file, tmp_path, monkeypatch):
    build_tiny_zoo(tmp_path / "zoo")
    monkeypatch.setenv(zoo.ENV_VAR, str(tmp_path / "zoo"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    x = np.random.default_rng(0).uniform(size=(8, 28, 28, 1)).astype("float32")
    from_path, info = load_source(keras_file)
    assert info is None and isinstance(from_path, keras.Model)
    as_keras, info = load_source(NAME)
    assert isinstance(as_keras, keras.Model) and info == zoo.info(NAME)
    as_saved_model, _ = load_source(NAME, format="saved_model")
    np.testing.assert_allclose(robustness.logit_function(as_saved_model)(x), as_keras(x), atol=1e-5)
    with pytest.raises(ValueError, match="format must be one of"):
        load_source(NAME, format="h5")


def test_load_source_errors_are_one_line(tmp_path, monkeypatch):
    build_tiny_zoo(tmp_path / "zoo")
    os.remove(tmp_path / "zoo" / NAME / "model.keras")
    monkeypatch.setenv(zoo.ENV_VAR, str(tmp_path / "zoo"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    monkeypatch.setattr(zoo, "SOURCE_ZOO", str(tmp_path / "source_zoo"))
    with pytest.raises(robustness.ModelSourceError, match="not found. Places tried:") as error:
        load_source(NAME)
    assert "\n" not in str(error.value)
    with pytest.raises(robustness.ModelSourceError,
                       match="neither an existing path nor a zoo model; zoo models: ") as error:
        load_source(str(tmp_path / "missing.keras"))
    assert "\n" not in str(error.value) and NAME in str(error.value)
