#!/usr/bin/env python3
"""Trains a contractive_keras model on MNIST or Fashion-MNIST.

    python train.py --model=chnode --depth=12

runs the reference recipe of the chosen model (shared/DESIGN.md): its
defaults come from ``contractive_keras.models.REFERENCE_HPARAMS`` and every
flag left unset keeps them. The allowed models, datasets, solvers and
strategies, and which flag applies to which model, come from the package
(``models``, ``data``, ``solvers``, ``training``); the loop is
``contractive_keras.training.Trainer``, on the Keras backend KERAS_BACKEND
names. On TensorFlow one custom loop serves every ``tf.distribute`` strategy
(one CPU, several GPUs, several hosts through ``TF_CONFIG``, TPU); on JAX the
run is data parallel over the local devices (``keras.distribution``), on
PyTorch it trains on one device; ``--strategy=multi_worker`` / ``tpu`` are
TensorFlow's and refuse elsewhere, and ``--export`` writes the SavedModel on
TensorFlow only (``export/model.keras`` on every backend). Checkpoints,
resuming (also mid-epoch), TensorBoard logs, ``history.jsonl`` and
``summary.json`` are the same on every backend; TensorFlow is imported only
when Keras runs on it. ``--validation_size=n`` trains on the first N - n
training images only and reports the accuracy on the last n after every
epoch. ``--loss=lipschitz_margin --train_eps=1.58`` trains against the
certificate (the recipe of the certified models ``lipschitz_cnn``,
``chnode_certified`` and ``stable_node_certified``); after every epoch the
certified accuracy on the test set at the dataset's L2 radii is logged
(``certified/<radius>``) for every model ``certify`` can bound. ``--model_dir`` receives checkpoints (resumed automatically),
TensorBoard logs, ``summary.json`` and, with ``--export``,
``export/model.keras`` plus ``export/saved_model`` (endpoints ``serve`` for
float32 images in [0, 1] of shape (N, 28, 28, 1) and ``serve_uint8`` for raw
uint8 pixels of the same shape; both return logits (N, 10)).

Exit codes: 0 success, 1 no usable data, 2 bad flags or settings, 3 training
diverged (NaN/Inf loss).
"""

import math
import os
import sys

# NumPy's certificate computations (many small eigen-decompositions) run
# 20-90x slower with multi-threaded OpenBLAS beside TensorFlow's own threads;
# must be set before NumPy is imported.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags, logging  # noqa: E402  (after the environment settings above)

from contractive_keras import backend, data, models, solvers, training  # noqa: E402
from contractive_keras.models import lipschitz_cnn  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_enum("model", "chnode", models.NAMES, "Architecture to train.")
flags.DEFINE_integer("depth", None, "Number of ODE steps/layers N (Hamiltonian models; default from the recipe).")
flags.DEFINE_enum("dataset", "mnist", data.DATASETS, "Dataset.")
flags.DEFINE_string("data_dir", None, "Directory with <dataset>.npz or IDX files (default: $CONTRACTIVE_KERAS_DATA, then tensorflow_datasets).")
flags.DEFINE_integer("epochs", None, "Number of epochs (default from the recipe).")
flags.DEFINE_integer("batch_size", None, "Global batch size, split over replicas (default from the recipe).")
flags.DEFINE_float("learning_rate", None, "Initial Adam learning rate (default from the recipe).")
flags.DEFINE_float("lr_decay", None, "Learning-rate factor applied after every epoch, in (0, 1] (default from the recipe).")
flags.DEFINE_float("final_learning_rate", None, "Decay the learning rate linearly per step to this value at the end of the run, instead of --lr_decay per epoch (default from the recipe: 1e-4 for the certified models).")
flags.DEFINE_float("weight_decay", None, "Weight decay as in PyTorch Adam, an L2 penalty wd/2 ||w||^2 (default from the recipe).")
flags.DEFINE_float("smoothness", None, "Factor of the penalty h * sum_j 0.5 (||K_{j+1}-K_j||^2 + ||b_{j+1}-b_j||^2) (Hamiltonian models; default from the recipe).")
flags.DEFINE_enum("solver", None, solvers.KNOWN_METHODS, "ODE solver (default from the recipe: euler).")
flags.DEFINE_float("step_size", None, "Fixed step h of the ODE solver (default from the recipe, 0.5 for the Hamiltonian models).")
flags.DEFINE_string("gamma", None, "CH-NODE damping: 'auto' (Theorem 1 from the weights after every step) or a positive float held fixed.")
flags.DEFINE_float("eps", None, "CH-NODE: margin of Theorem 1, in (0, 1); with a fixed --gamma a larger eps leaves a larger certified Euler step (default 1e-6, the reference).")
flags.DEFINE_float("L_scale", None, "CH-NODE: the fixed dissipation factor L = L_scale * I (default 0.02, the reference); it sets c1 = L_scale^2 of Theorem 1.")
flags.DEFINE_integer("kernel_size", None, "Certified CH-NODE: K(t) is a kernel_size x kernel_size convolution (odd), mixing neighbouring pixels inside the block (default: per pixel).")
flags.DEFINE_enum("kernels", None, lipschitz_cnn.KERNELS, "Certified models: how the convolution and dense kernels keep norm 1: orthonormal (Bjorck reparametrisation in every call, the default) or clipped (rescaled after every optimizer step).")
flags.DEFINE_integer("dense", None, "Certified models: width of the hidden dense layer (even, for GroupSort2; default 128).")
flags.DEFINE_float("lift_max_norm", None, "Bound on the l2 operator norm of the lift (conv or dense), kept after every step (default: free, the reference); with --readout_max_norm and a non-expansive ODE block the whole model has a certified Lipschitz bound.")
flags.DEFINE_float("readout_max_norm", None, "Bound on the spectral norm of the dense read-out, kept after every step (default: free, the reference).")
flags.DEFINE_float("delta_bar", None, "Stabilized NODE: target bound on delta = max_D mu_2(D A) (stable_node only).")
flags.DEFINE_float("min_slope", None, "Stabilized NODE: lower slope bound of the activation, in (0, 1].")
flags.DEFINE_boolean("normalize_inputs", None, "Put (x - mean) / std inside the model (default: on for the reference models, off for the certified ones, where it would multiply every certified bound by 1 / std = 3.25).")
flags.DEFINE_enum("loss", None, training.LOSSES, "Training loss: cross_entropy (the reference), lipschitz_margin (train against the certificate at --train_eps, docs/certified.md) or hinge_kr (default from the recipe).")
flags.DEFINE_float("train_eps", None, "L2 training radius of --loss=lipschitz_margin, in [0, 1] pixel units (the hinge margin of hinge_kr); default from the recipe (1.58 for the certified models).")
flags.DEFINE_float("temperature", None, "Softmax temperature T of the cross-entropy losses: T * CE(logits / T) (default 1).")
flags.DEFINE_enum("loss_bound", None, training.LOSS_BOUNDS, "How --loss=lipschitz_margin bounds the body: exact (the current operator norms, differentiable) or constraint (the norm constraints' max_norm values).")
flags.DEFINE_integer("seed", 0, "Random seed (initialisation and data order).")
flags.DEFINE_enum("strategy", "auto", training.STRATEGIES, "How to use the devices. TensorFlow: the tf.distribute strategy; auto picks TPU, several GPUs, multi-worker from TF_CONFIG, or one device. JAX: auto and mirrored are data parallel over the local devices (keras.distribution). PyTorch: one device. multi_worker and tpu need TensorFlow.")
flags.DEFINE_string("model_dir", None, "Where checkpoints, TensorBoard logs, summary.json and exports go (default runs/<model>_<dataset>[_n<depth>]).")
flags.DEFINE_integer("steps_per_epoch", None, "Cap on the number of steps per epoch (default: one pass over the training set).")
flags.DEFINE_integer("checkpoint_every", 100, "Save a checkpoint every this many steps (and at each epoch end); 0 = epoch ends only.")
flags.DEFINE_boolean("eval_noise", False, "At the end, evaluate the robustness table (Gaussian and salt-and-pepper noise, FGSM).")
flags.DEFINE_boolean("export", False, "At the end, write export/model.keras and export/saved_model.")
flags.DEFINE_boolean("mixed_precision", False, "Compute in float16 (GPU) or bfloat16 (CPU/TPU); variables stay float32.")
flags.DEFINE_boolean("jit_compile", False, "Compile the forward and backward pass with XLA (TensorFlow; JAX always compiles its step with XLA; PyTorch: torch.compile).")
flags.DEFINE_integer("eval_batch_size", 500, "Global batch size for evaluation.")
flags.DEFINE_string("init_from", None, "Fine-tune: start from the weights of a trained model of the same architecture (a .keras file, or a --model_dir run with --export), e.g. a node model for --model=stable_node; constraints are applied before the first step. Ignored when resuming from a checkpoint.")
flags.DEFINE_integer("validation_size", 0, "Hold out the last this many training images as a validation split: training uses the first N - validation_size only; validation accuracy is reported after every epoch and in summary.json.")
flags.DEFINE_integer("cpu_devices", None, "Split the CPU into this many logical devices (to run --strategy=mirrored without accelerators, e.g. in tests; TensorFlow and JAX).")
flags.DEFINE_integer("verbose", 1, "0 = silent, 1 = progress bar, 2 = one line per epoch.")


def _positive(name):
    flags.register_validator(name, lambda v: v is None or v > 0, message=f"--{name} must be positive")


for _name in ("cpu_devices", "kernel_size", "dense", "depth", "epochs", "batch_size", "learning_rate", "final_learning_rate", "step_size", "steps_per_epoch", "eval_batch_size"):
    _positive(_name)
for _name in ("weight_decay", "smoothness", "checkpoint_every", "validation_size"):
    flags.register_validator(_name, lambda v: v is None or v >= 0, message=f"--{_name} must be >= 0")
flags.register_validator("lr_decay", lambda v: v is None or 0 < v <= 1, message="--lr_decay must be in (0, 1]")
flags.register_validator("min_slope", lambda v: v is None or 0 < v <= 1,
                         message="--min_slope must be in (0, 1]")
flags.register_validator(
    "delta_bar", lambda v: v is None or math.isfinite(v), message="--delta_bar must be a finite number"
)
flags.register_validator("eps", lambda v: v is None or 0 < v < 1, message="--eps must lie in (0, 1)")
flags.register_validator("train_eps", lambda v: v is None or (v >= 0 and math.isfinite(v)),
                         message="--train_eps must be a finite radius >= 0")
flags.register_validator("temperature", lambda v: v is None or (v > 0 and math.isfinite(v)),
                         message="--temperature must be a positive number")
for _name in ("L_scale", "lift_max_norm", "readout_max_norm"):
    flags.register_validator(_name, lambda v: v is None or (v > 0 and math.isfinite(v)),
                             message=f"--{_name} must be a positive number")


def _valid_gamma(value):
    if value is None or value == "auto":
        return True
    try:
        return float(value) > 0 and math.isfinite(float(value))
    except ValueError:
        return False


flags.register_validator("gamma", _valid_gamma, message="--gamma must be 'auto' or a positive number")


@flags.multi_flags_validator(["model", *training.MODEL_FIELDS], message="a flag does not apply to the chosen --model")
def _model_specific_flags(values):
    problems = training.option_problems(values["model"], values)
    if problems:
        raise flags.ValidationError("; ".join(problems))
    return True


def make_config(argv_flags=FLAGS):
    """A TrainConfig from the parsed flags, unset ones from the recipe."""
    values = {field: argv_flags[field].value for field in training.TrainConfig.__dataclass_fields__
              if field in argv_flags and field != "model"}
    return training.make_config(argv_flags.model, **values)


def _parse_flags_or_exit(argv):
    """absl parsing, with bad values reported on stderr and exit code 2."""
    try:
        return FLAGS(argv)
    except flags.Error as e:
        sys.stderr.write(f"train.py: error: {e}\nRun `python train.py --helpfull` for the allowed values.\n")
        sys.exit(2)


def _split_cpu(count):
    """Splits the CPU into ``count`` logical devices, before the backend first uses them."""
    # pylint: disable=import-outside-toplevel
    backend_name = backend.name()
    if backend_name == "tensorflow":
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * count)
    elif backend_name == "jax":
        import jax
        jax.config.update("jax_num_cpu_devices", count)
    else:
        sys.stderr.write(f"train.py: error: --cpu_devices applies to Keras's TensorFlow and JAX "
                         f"backends; this process uses {backend_name!r}\n")
        sys.exit(2)


def main(argv):
    if len(argv) > 1:
        sys.stderr.write(f"train.py: error: unexpected arguments {argv[1:]}\n")
        sys.exit(2)
    logging.set_verbosity(logging.WARNING)  # TensorFlow's INFO lines drown the progress bar
    if FLAGS.cpu_devices:
        _split_cpu(FLAGS.cpu_devices)
    try:
        config = make_config()
        trainer = training.Trainer(config)
    except (data.DataSourceError, data.CorruptDataError) as e:
        sys.stderr.write(f"train.py: no usable data: {e}\n")
        sys.exit(1)
    except (ValueError, NotImplementedError) as e:
        sys.stderr.write(f"train.py: error: {e}\n")
        sys.exit(2)
    try:
        summary = trainer.run()
    except training.TrainingDiverged as e:
        sys.stderr.write(f"train.py: training diverged: {e}\n")
        sys.exit(3)
    if trainer.chief and config.verbose:
        final = summary["final"]
        speed = summary["timings"]["examples_per_second"]
        print(
            f"Done: test accuracy {final['test_accuracy']:.4f}, train accuracy "
            f"{final['train_accuracy']:.4f}"
            + (f", validation accuracy {final['validation_accuracy']:.4f}"
               if "validation_accuracy" in final else "")
            + (f", {speed:.0f} examples/s" if speed else "")
            + f"; summary in {os.path.join(config.model_dir, 'summary.json')}",
            flush=True,
        )


if __name__ == "__main__":
    app.run(main, flags_parser=_parse_flags_or_exit)
