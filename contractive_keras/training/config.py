"""What a training run depends on: ``TrainConfig`` and the rules on its options.

A ``TrainConfig`` field and the train.py flag that sets it have the same
name. ``make_config`` fills the fields left unset from the model's reference
recipe (``models.REFERENCE_HPARAMS``); ``option_problems`` states which
options do not apply to the chosen model (the rule comes from the model
registry, ``models.options``); ``check_paths`` refuses a ``model_dir`` that
cannot be written and an ``init_from`` that is not a model file before any
data is read.

Example:

>>> from contractive_keras.training import config
>>> config.make_config("hdnn", depth=4).learning_rate
0.04
>>> config.option_problems("resnet", {"gamma": 3.0})
['--gamma applies to --model=chnode only']
"""

import dataclasses
import os
import tempfile
import zipfile

from contractive_keras import models


@dataclasses.dataclass
class TrainConfig:
    """Everything a training run depends on (train.py's flags)."""

    model: str = "chnode"
    depth: int | None = None
    dataset: str = "mnist"
    data_dir: str | None = None
    epochs: int = 10
    batch_size: int = 100
    learning_rate: float = 0.04
    lr_decay: float = 0.8
    final_learning_rate: float | None = None
    weight_decay: float | None = None
    smoothness: float | None = None
    solver: str | None = None
    step_size: float | None = None
    gamma: str | None = None
    eps: float | None = None
    L_scale: float | None = None
    kernel_size: int | None = None
    kernels: str | None = None
    dense: int | None = None
    lift_max_norm: float | None = None
    readout_max_norm: float | None = None
    delta_bar: float | None = None
    min_slope: float | None = None
    normalize_inputs: bool | None = None
    loss: str = "cross_entropy"
    train_eps: float = 0.0
    temperature: float = 1.0
    loss_bound: str = "exact"
    seed: int = 0
    strategy: str = "auto"
    model_dir: str = "runs/default"
    steps_per_epoch: int | None = None
    checkpoint_every: int = 100
    eval_noise: bool = False
    export: bool = False
    mixed_precision: bool = False
    jit_compile: bool = False
    eval_batch_size: int = 500
    eval_take: int | None = None
    init_from: str | None = None
    validation_size: int = 0
    verbose: int = 1


#: The training losses (train.py ``--loss``): plain cross-entropy, the
#: Lipschitz-margin cross-entropy at ``train_eps`` and the hinge-KR loss
#: (``contractive_keras.losses``).
LOSSES = ("cross_entropy", "lipschitz_margin", "hinge_kr")
#: How the Lipschitz-margin loss bounds the body (``certify.body_bound_fn``).
LOSS_BOUNDS = ("exact", "constraint")

#: The fields that configure the model (``models.build`` options).
MODEL_FIELDS = tuple(dict.fromkeys(models.COMMON_OPTIONS + models.MODEL_OPTIONS))


def option_problems(model, values):
    """One message per option set in ``values`` that ``model`` does not take.

    Args:
        model: a name of ``models.NAMES``.
        values: option name -> value; None means unset.

    Returns:
        list of messages such as ``"--gamma applies to --model=chnode only"``,
        empty when every set option applies.
    """
    accepted = models.options(model)
    problems = []
    for option in MODEL_FIELDS:
        if values.get(option) is not None and option not in accepted:
            names = models.models_accepting(option)
            listed = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"
            problems.append(f"--{option} applies to --model={listed} only")
    return problems


def loss_problems(loss, values):
    """Raises ``ValueError`` for an unknown loss or a loss setting out of range."""
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}; known: {', '.join(LOSSES)}")
    train_eps, temperature = values.get("train_eps"), values.get("temperature")
    if train_eps is not None and not train_eps >= 0:
        raise ValueError(f"--train_eps must be >= 0 (an L2 radius), got {train_eps}")
    if temperature is not None and not temperature > 0:
        raise ValueError(f"--temperature must be > 0, got {temperature}")
    bound = values.get("loss_bound")
    if bound is not None and bound not in LOSS_BOUNDS:
        raise ValueError(f"unknown loss_bound {bound!r}; known: {', '.join(LOSS_BOUNDS)}")


def default_model_dir(model, dataset, depth=None):
    """``runs/<model>_<dataset>``, with ``_n<depth>`` for the Hamiltonian family."""
    name = f"{model}_{dataset}"
    if model in models.HAMILTONIAN:
        name += f"_n{depth}"
    return os.path.join("runs", name)


def make_config(model, **values):
    """A ``TrainConfig`` for ``model``: ``values`` where not None, else the recipe.

    Fields neither given nor in the recipe keep the ``TrainConfig`` default;
    ``model_dir`` defaults to ``default_model_dir``.

    Raises:
        ValueError: an unknown model or field, or an option the model does
            not take (``option_problems``).
    """
    fields = TrainConfig.__dataclass_fields__
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ValueError(f"unknown TrainConfig fields {unknown}")
    if model not in models.MODELS:
        raise ValueError(f"unknown model {model!r}; known: {', '.join(models.NAMES)}")
    recipe = models.REFERENCE_HPARAMS[model]
    problems = option_problems(model, values)
    if problems:
        raise ValueError("; ".join(problems))
    loss_problems(values.get("loss") or recipe.get("loss", "cross_entropy"), values)
    chosen = {"model": model}
    for field in fields:
        if values.get(field) is not None:
            chosen[field] = values[field]
        elif field in recipe:
            chosen[field] = recipe[field]
    if chosen.get("model_dir") is None:
        chosen["model_dir"] = default_model_dir(model, chosen.get("dataset", "mnist"), chosen.get("depth"))
    return TrainConfig(**chosen)


def check_paths(config):
    """Refuses, with a one-line ``ValueError``, paths a run cannot use.

    ``model_dir`` must be (or become) a writable directory: it is created and
    a temporary file written to it. ``init_from`` (used only when
    ``model_dir`` holds no checkpoint yet) must be a ``.keras`` file (a zip
    archive) or a train.py ``model_dir`` run with ``--export``. Paths with a
    URL scheme (``gs://...``) are left to TensorFlow's file system.
    """
    model_dir = os.fspath(config.model_dir)
    if "://" not in model_dir:
        try:
            os.makedirs(model_dir, exist_ok=True)
            with tempfile.TemporaryFile(dir=model_dir):
                pass
        except OSError as e:
            raise ValueError(f"--model_dir={model_dir} is not a writable directory "
                             f"({e.strerror or type(e).__name__})") from None
    if not config.init_from or "://" in os.fspath(config.init_from):
        return
    # resuming (TensorFlow's index, or the Keras loop's): init_from is ignored
    if any(os.path.isfile(os.path.join(model_dir, "checkpoints", index)) for index in ("checkpoint", "latest.json")):
        return
    path = keras_file(config.init_from)
    if not os.path.isfile(path):
        raise ValueError(f"--init_from: no .keras file at {path} (give a .keras file or a "
                         f"train.py --model_dir that was run with --export)")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"--init_from: {path} is not a .keras file (not a zip archive)")


def keras_file(init_from):
    """The ``.keras`` file an ``init_from`` value names: the path itself, or
    ``<dir>/export/model.keras`` for a train.py ``model_dir``."""
    path = os.fspath(init_from)
    if os.path.isdir(path):
        return os.path.join(path, "export", "model.keras")
    return path
