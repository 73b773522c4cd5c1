"""Certified-training study: 1-Lipschitz CNNs with and without an ODE block.

Trains one model per call against the Lipschitz-margin certificate
(``contractive_keras.losses``) and measures, on the test set, clean accuracy
and certified accuracy at L2 radii with the pairwise read-out bound

    radius(x) = min_{j != y} (z_y - z_j) / (L_body ||w_y - w_j||_2)

(and the looser sqrt(2) L form for comparison), L_body the certified bound of
the map up to the read-out, computed in float64 from the trained weights:
convolutions by the circulant embedding (max over 2-D FFT frequencies of the
transfer matrix's spectral norm), dense kernels by their spectral norm,
GroupSort and L2-norm pooling 1, a StabilizedNODE by
``stability.lipschitz_bound`` of its computed (Euler) map, a CHNODE by
``certify.discrete_certificate``.  Before any number is written, PGD-L2 on a
sample must not break a single point certified at a radius it attacks.

Architecture (inputs are [0, 1] pixels, no standardisation; with the
defaults, the layers and layer names of ``models.build("lipschitz_cnn")``,
``"chnode_certified"`` (``--ode=chnode``) and ``"stable_node_certified"``
(``--ode=stable_conv``), so zoo/certified.py loads these runs into the presets):

    conv 3x3 (ConvNormClip) -> GroupSort2 -> L2-norm pool 2
    [--ode=stable_conv: StabilizedNODE per pixel on these channels]
    [--ode=chnode: CHNODE per pixel, gamma fixed, certified Euler step]
    [--ode=chnode_conv: the same with K(t) a 3x3 convolution (spatial mixing)]
    -> conv 3x3 (ConvNormClip) -> GroupSort2 -> L2-norm pool 2 -> flatten
    -> dense (SpectralNormClip) -> GroupSort2
    [--ode=stable: StabilizedNODE on the dense features]
    -> dense read-out (free, or SpectralNormClip with --readout_max_norm)

Resumable: weights are saved after every epoch under --run_dir/<name>; a
call with the same --name continues from the last saved epoch (the Adam
moments and the shuffling order restart; the JSON lists the epochs after
which it resumed, ``resumed_after_epochs``), and a finished run (its JSON
exists) is skipped unless --force.  Results: --out_dir/<name>.json.

With --validation_size=N the last N training images are held out: the
per-epoch figures are on them, the JSON gets a ``validation`` block beside
the test figures, and training radii can be chosen on them, not on the
test set.

Example (a short ranking run, then a full one):

    python scripts/certified_study.py --name=probe --epochs=1 --train_size=10000 --test_size=2000
    python scripts/certified_study.py --name=probe_val --epochs=1 --validation_size=5000 \
        --train_size=10000 --test_size=2000
    nice -n 10 python scripts/certified_study.py --name=lipcnn_mnist_lmce158 --train_eps=1.58
"""

import argparse
import json
import math
import os
import time

import numpy as np

RADII = {"mnist": (0.1, 0.3, 0.5, 1.0, 1.58), "fashion_mnist": (0.1, 0.25, 0.5, 1.0)}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--name", help="run name: results JSON and checkpoint folder")
    p.add_argument("--table", action="store_true",
                   help="print a markdown table of every result in --out_dir and exit")
    p.add_argument("--dataset", default="mnist", choices=sorted(RADII))
    p.add_argument("--ode", default="none", choices=["none", "stable", "stable_conv", "chnode", "chnode_conv"])
    p.add_argument("--loss", default="lmce", choices=["lmce", "lmce_global", "hkr", "ce"],
                   help="lmce: Lipschitz-margin CE with the pairwise bound; lmce_global: the "
                        "sqrt(2) L form; hkr: hinge-KR; ce: plain cross-entropy")
    p.add_argument("--train_eps", type=float, default=1.58, help="training radius of lmce")
    p.add_argument("--eps_warmup", type=float, default=0.0,
                   help="epochs over which the training radius ramps up linearly from 0")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--hkr_alpha", type=float, default=10.0)
    p.add_argument("--hkr_margin", type=float, default=1.0)
    p.add_argument("--bound", default="exact", choices=["exact", "constraint"],
                   help="body bound inside the loss: exact (differentiable circulant and "
                        "spectral norms of the current kernels) or constraint (product of "
                        "the max_norm values)")
    p.add_argument("--conv_constraint", default="reshaped", choices=["reshaped", "circulant"],
                   help="ConvNormClip(1) on the reshaped kernel (sqrt(kh kw) ||K_mat||, loose) "
                        "or on the circulant norm of the input grid (needs a ConvNormClip "
                        "that takes input_shape)")
    p.add_argument("--kernel_norms", default="clip", choices=["clip", "exact", "orthogonal"],
                   help="clip: the constraints only clip norms above 1; exact: every conv / "
                        "dense kernel is rescaled to circulant / spectral norm exactly 1 after "
                        "each step (the loss then uses the constant 1); orthogonal: dense "
                        "kernels projected to their polar factor (all singular values 1), "
                        "conv kernels to the polar factor of the reshaped kernel, then "
                        "rescaled to circulant norm 1")
    p.add_argument("--kernels", default="clipped",
                   choices=["clipped", "orthonormal_dense", "orthonormal"],
                   help="clipped: Conv2D / Dense with norm-clipping constraints (see "
                        "--kernel_norms); orthonormal_dense: the dense layer is "
                        "layers.OrthonormalDense (Bjorck-orthonormalised kernel, Anil et al. "
                        "2019); orthonormal: the convolutions too (layers.OrthonormalConv2D, "
                        "operator norm 1), as lipschitz_cnn(kernels='orthonormal')")
    p.add_argument("--bjorck_iterations", type=int, default=15)
    p.add_argument("--channels", default="16,32", help="channels of the two convolutions")
    p.add_argument("--dense", type=int, default=128, help="width of the dense layer (even)")
    p.add_argument("--readout_max_norm", type=float, default=None)
    p.add_argument("--ode_steps", type=int, default=4)
    p.add_argument("--ode_t1", type=float, default=1.0)
    p.add_argument("--ode_alpha", type=float, default=0.5, help="StabilizedNODE slope bound")
    p.add_argument("--ode_delta_bar", type=float, default=0.0)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch_size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--lr_final", type=float, default=1e-4, help="end of the per-step linear decay")
    p.add_argument("--validation_size", type=int, default=0,
                   help="hold out the last N training images (never trained on): the per-epoch "
                        "figures and a final 'validation' block are on them, so that training "
                        "radii and runs can be chosen without the test set")
    p.add_argument("--train_size", type=int, default=None,
                   help="first N training images (after the validation split)")
    p.add_argument("--test_size", type=int, default=None, help="first N test images (None: all)")
    p.add_argument("--attack_size", type=int, default=200, help="PGD-L2 check sample")
    p.add_argument("--attack_steps", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--run_dir", default="runs/certified_study")
    p.add_argument("--out_dir", default="docs/results/certified")
    p.add_argument("--force", action="store_true", help="retrain even if the JSON exists")
    return p.parse_args(argv)


# --- model -------------------------------------------------------------------

def build_model(args):
    import keras

    from contractive_keras.constraints import ConvNormClip, SpectralNormClip
    from contractive_keras.layers import OrthonormalConv2D, OrthonormalDense
    from contractive_keras.layers.group_sort import GroupSort
    from contractive_keras.layers.l2_norm_pooling import L2NormPooling2D

    def conv_constraint(grid):
        if args.kernel_norms != "clip":
            return _UnitNorm(grid, args.kernel_norms == "orthogonal")
        if args.conv_constraint == "circulant":
            return ConvNormClip(1.0, input_shape=grid)
        return ConvNormClip(1.0)

    c1, c2 = (int(c) for c in args.channels.split(","))
    Conv, conv_kw = keras.layers.Conv2D, {}
    Dense, dense_kw = keras.layers.Dense, {}
    if args.kernels in ("orthonormal_dense", "orthonormal"):
        Dense, dense_kw = OrthonormalDense, {"iterations": args.bjorck_iterations}
    if args.kernels == "orthonormal":
        Conv, conv_kw = OrthonormalConv2D, {"iterations": args.bjorck_iterations}
        conv_constraint = lambda grid: None
    inputs = keras.Input((28, 28, 1), name="images")
    x = Conv(c1, 3, padding="same", kernel_constraint=conv_constraint((28, 28)),
             kernel_initializer="orthogonal", name="conv1", **conv_kw)(inputs)
    x = GroupSort(2, name="sort1")(x)
    x = L2NormPooling2D(2, name="pool1")(x)
    if args.ode == "stable_conv":
        x = _stabilized_node(args)(x)
    elif args.ode in ("chnode", "chnode_conv"):
        x = _chnode(args)(x)
    x = Conv(c2, 3, padding="same", kernel_constraint=conv_constraint((14, 14)),
             kernel_initializer="orthogonal", name="conv2", **conv_kw)(x)
    x = GroupSort(2, name="sort2")(x)
    x = L2NormPooling2D(2, name="pool2")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    dense_constraint = (SpectralNormClip(1.0) if args.kernel_norms == "clip"
                        else _UnitNorm(None, args.kernel_norms == "orthogonal"))
    if Dense is not keras.layers.Dense:
        dense_constraint = None
    x = Dense(args.dense, kernel_constraint=dense_constraint,
              kernel_initializer="orthogonal", name="dense1", **dense_kw)(x)
    x = GroupSort(2, name="sort3")(x)
    if args.ode == "stable":
        x = _stabilized_node(args)(x)
    readout_constraint = (None if args.readout_max_norm is None
                          else SpectralNormClip(args.readout_max_norm))
    outputs = keras.layers.Dense(10, kernel_constraint=readout_constraint, name="logits")(x)
    model = keras.Model(inputs, outputs, name=args.name)
    for layer in model.layers:
        kernel = getattr(layer, "kernel", None)
        if kernel is not None and getattr(kernel, "constraint", None) is not None:
            kernel.assign(kernel.constraint(kernel))
    return model


def kernel_of(layer):
    """The kernel the layer applies (the orthonormalised one for the Orthonormal layers)."""
    from contractive_keras.certify.model import applied_kernel

    return applied_kernel(layer)


class _UnitNorm:
    """Experimental: rescale a kernel to operator norm 1 (circulant for convs), optionally
    after projecting it to the polar factor of its (reshaped) matrix."""

    def __init__(self, grid, orthogonal):
        self.grid, self.orthogonal = grid, orthogonal

    def get_config(self):
        return {"grid": self.grid, "orthogonal": self.orthogonal}

    def __call__(self, w):
        import tensorflow as tf

        from contractive_keras.bounds.operator_norms import conv_operator_norms_tf

        v = tf.cast(tf.convert_to_tensor(w), tf.float64)
        shape = v.shape
        if self.orthogonal:
            mat = tf.reshape(v, (-1, shape[-1]))
            s, u, vv = tf.linalg.svd(mat)
            v = tf.reshape(tf.matmul(u, vv, adjoint_b=True), shape)
        if len(shape) == 4:
            norm = conv_operator_norms_tf(v[None], self.grid)[0]
        else:
            norm = tf.sqrt(tf.reduce_max(tf.linalg.eigvalsh(tf.matmul(v, v, transpose_a=True))))
        return tf.cast(v / (norm * (1 + 1e-6)), w.dtype)


def _stabilized_node(args):
    from contractive_keras.layers import StabilizedNODE

    return StabilizedNODE(alpha=args.ode_alpha, delta_bar=args.ode_delta_bar,
                          steps=args.ode_steps, t1=args.ode_t1, solver="euler",
                          kernel_initializer="zeros", name="ode")


def _chnode(args):
    """CH-NODE per pixel with the zoo's certified settings (gamma 2, eps 0.3, L = 0.3 I)."""
    from contractive_keras.layers import CHNODE

    try:
        from contractive_keras.layers import StepwiseIdentity
    except ImportError:     # before the restructuring: the layers' own module
        from contractive_keras.layers._hamiltonian_common import StepwiseIdentity
    return CHNODE(steps=args.ode_steps, step_size=args.ode_t1 / args.ode_steps,
                  solver="euler", activation="tanh", gamma=2.0, eps=0.3, kappa=1e-6,
                  L_initializer=StepwiseIdentity(0.3), L_trainable=False,
                  discrete_check="warn", name="ode",
                  kernel_size=3 if args.ode == "chnode_conv" else None)


# --- certified bounds ----------------------------------------------------------

def conv_norm_tf(kernel, spatial):
    """Differentiable circulant-embedding bound of a stride-1 conv's operator norm (float32).

    Max over the 2-D frequencies of the (H + kh - 1) x (W + kw - 1) torus of
    the spectral norm of the kernel's transfer matrix (Sedghi et al. 2019);
    the quantity ``certify`` computes in float64 (``bounds.conv_operator_norm``), in float32
    for the training step.
    Real kernels have conjugate-symmetric transfer matrices, so rfft2d
    covers every frequency's norm.
    """
    import tensorflow as tf

    kh, kw, cin, cout = kernel.shape
    grid = (spatial[0] + kh - 1, spatial[1] + kw - 1)
    k = tf.transpose(tf.cast(kernel, tf.float32), (2, 3, 0, 1))        # (cin, cout, kh, kw)
    transfer = tf.signal.rfft2d(k, fft_length=grid)                      # (cin, cout, H, W')
    transfer = tf.transpose(transfer, (2, 3, 0, 1))                      # (H, W', cin, cout)
    if cin == 1 or cout == 1:
        squared = tf.reduce_sum(tf.math.real(transfer * tf.math.conj(transfer)), axis=(-2, -1))
    else:
        if cin > cout:
            transfer = tf.linalg.adjoint(transfer)
        gram = tf.matmul(transfer, transfer, adjoint_b=True)
        squared = tf.math.real(tf.linalg.eigvalsh(gram)[..., -1])
    return tf.sqrt(tf.reduce_max(squared))


def _input_spatial(layer):
    return tuple(int(s) for s in layer.input.shape[1:3])


def body_layers(model):
    return model.layers[:-1]


def loss_body_bound(model, args):
    """The body bound the loss uses: a constant from the constraints, or a differentiable one."""
    import keras
    import tensorflow as tf

    # Constraint-guaranteed factor of the ODE block: delta_bar <= 0 on Euler
    # steps gives (1 + h delta_bar)^N <= 1; the fixed-gamma CH-NODE's Euler
    # step is certified non-expansive for every weight its constraint allows.
    ode_factor = 1.0
    if args.ode in ("stable", "stable_conv"):
        ode_factor = (1 + args.ode_t1 / args.ode_steps * args.ode_delta_bar) ** args.ode_steps
    if args.bound == "constraint" or args.kernel_norms != "clip":
        return 1.0 * ode_factor     # every conv / dense layer is clipped at max_norm 1
    convs = [(l, _input_spatial(l)) for l in body_layers(model)
             if isinstance(l, keras.layers.Conv2D)]
    denses = [l for l in body_layers(model) if isinstance(l, keras.layers.Dense)]

    def bound():
        total = tf.constant(ode_factor, tf.float32)
        for layer, spatial in convs:
            total = total * conv_norm_tf(tf.convert_to_tensor(kernel_of(layer)), spatial)
        for layer in denses:
            w = tf.convert_to_tensor(kernel_of(layer))
            gram = tf.matmul(w, w, transpose_a=True) if w.shape[0] >= w.shape[1] else \
                tf.matmul(w, w, transpose_b=True)
            total = total * tf.sqrt(tf.linalg.eigvalsh(gram)[-1])
        return total * (1.0 + 1e-4)     # float32 rounding margin over the float64 certifier

    return bound


# --- certification and attack --------------------------------------------------

def radii(model, x, y, batch=1000):
    """(pairwise radius, global sqrt(2) L radius, prediction, L_body, L_logits, factors).

    ``certify``'s certified radii (float64): min over j != y of
    (z_y - z_j) / (L_body ||w_y - w_j||) and (z_y - max_j z_j) / (sqrt(2) L);
    0 for a misclassified image.
    """
    from contractive_keras import certify
    from contractive_keras.certify.radius import global_radius

    logits = np.concatenate([np.asarray(model(x[i:i + batch], training=False), np.float64)
                             for i in range(0, len(x), batch)])
    body, kernel = certify.body_and_readout(model)
    lip_body = float(body.value)
    factors = [[f.name, f.kind, float(f.value)] for f in body.factors]
    lip_total = lip_body * float(np.linalg.norm(kernel, 2))
    pred = logits.argmax(1)
    correct = pred == y
    pairwise = np.where(correct, np.maximum(certify.pairwise_radius(logits, kernel, lip_body), 0.0), 0.0)
    global_r = np.where(correct, np.maximum(global_radius(logits, lip_total), 0.0), 0.0)
    return pairwise, global_r, pred, lip_body, lip_total, factors


def _pgd_step(model, x, adv, onehot, step, eps):
    """One normalised-gradient ascent step, then projection onto the box and the L2 ball."""
    import tensorflow as tf

    global _PGD_STEP
    if _PGD_STEP is None:
        @tf.function(reduce_retracing=True)
        def step_fn(model_fn, x, adv, onehot, step, eps):
            with tf.GradientTape() as tape:
                tape.watch(adv)
                z = model_fn(adv, training=False)
                margin = tf.reduce_max(z - 1e9 * onehot, 1) - tf.reduce_sum(z * onehot, 1)
                total = tf.reduce_sum(margin)
            g = tape.gradient(total, adv)
            flat = tf.reshape(g, (tf.shape(g)[0], -1))
            g = g / (tf.norm(flat, axis=1)[:, None, None, None] + 1e-12)
            adv = tf.clip_by_value(adv + step * g, 0.0, 1.0)
            delta = adv - x
            norms = tf.norm(tf.reshape(delta, (tf.shape(delta)[0], -1)), axis=1)
            # Scaling toward x keeps the point in the box (x and adv both are).
            return x + delta * tf.minimum(1.0, eps / (norms + 1e-12))[:, None, None, None]

        _PGD_STEP = step_fn
    return _PGD_STEP(model, x, adv, onehot, step, eps)


_PGD_STEP = None


def pgd_l2(model, x, y, eps, steps=50, restarts=1, seed=0):
    """PGD-L2 on the margin max_{j != y} z_j - z_y; returns adversarial images (in [0, 1])."""
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    x = tf.constant(x, tf.float32)
    onehot = tf.one_hot(y, 10)
    best = x
    best_margin = None
    for _ in range(restarts):
        noise = rng.normal(size=x.shape).astype("float32")
        noise *= eps * 0.5 / np.linalg.norm(noise.reshape(len(noise), -1), axis=1).reshape(-1, 1, 1, 1)
        adv = tf.clip_by_value(x + noise, 0.0, 1.0)
        step = 2.5 * eps / steps
        for _ in range(steps):
            adv = _pgd_step(model, x, adv, onehot, tf.constant(step, tf.float32),
                            tf.constant(eps, tf.float32))
        z = model(adv, training=False)
        margin = tf.reduce_max(z - 1e9 * onehot, 1) - tf.reduce_sum(z * onehot, 1)
        if best_margin is None:
            best, best_margin = adv, margin
        else:
            better = margin > best_margin
            best = tf.where(better[:, None, None, None], adv, best)
            best_margin = tf.maximum(margin, best_margin)
    return best.numpy()


def attack_check(model, x, y, radius, eps_list, steps, seed):
    """PGD-L2 at each radius; raises if a point certified at that radius is broken."""
    out = {}
    for eps in eps_list:
        adv = pgd_l2(model, x, y, eps, steps=steps, seed=seed)
        assert np.all(np.linalg.norm((adv - x).reshape(len(x), -1), axis=1) <= eps * (1 + 1e-5))
        pred = np.asarray(model(adv, training=False)).argmax(1)
        robust = pred == y
        certified = radius > eps
        broken = int(np.sum(certified & ~robust))
        if broken:
            raise AssertionError(f"PGD-L2 broke {broken} points certified at radius {eps}: "
                                 "the certificate is wrong.")
        out[str(eps)] = {"attacked_accuracy": float(robust.mean()),
                         "certified_accuracy": float(certified.mean()),
                         "certified_broken": broken}
    return out


# --- training ----------------------------------------------------------------

def make_loss(model, args, eps_variable):
    from contractive_keras import losses

    readout = model.get_layer("logits")
    if args.loss == "lmce":
        return losses.LipschitzMarginCrossEntropy(
            eps=eps_variable, readout=readout, body_lipschitz=loss_body_bound(model, args),
            temperature=args.temperature)
    if args.loss == "lmce_global":
        import tensorflow as tf

        body = loss_body_bound(model, args)

        def whole():
            w = tf.convert_to_tensor(readout.kernel)
            top = tf.sqrt(tf.linalg.eigvalsh(tf.matmul(w, w, transpose_b=True))[-1])
            return (body() if callable(body) else body) * top * (1.0 + 1e-4)

        return losses.LipschitzMarginCrossEntropy(eps=eps_variable, lipschitz=whole,
                                                  temperature=args.temperature)
    if args.loss == "hkr":
        return losses.MulticlassHingeKR(alpha=args.hkr_alpha, margin=args.hkr_margin)
    return losses.LipschitzMarginCrossEntropy(eps=0.0, lipschitz=0.0,
                                              temperature=args.temperature)


def load_data(args):
    """(x_train, y_train, x_val, y_val, x_test, y_test), [0, 1] pixels; validation may be empty."""
    from contractive_keras import data

    x_train, y_train = data.load_numpy(args.dataset, "train")
    x_test, y_test = data.load_numpy(args.dataset, "test")
    held = args.validation_size
    if not 0 <= held < len(x_train):
        raise SystemExit(f"--validation_size must be in [0, {len(x_train)}), got {held}")
    x_val, y_val = x_train[len(x_train) - held:], y_train[len(y_train) - held:]
    x_train, y_train = x_train[:len(x_train) - held], y_train[:len(y_train) - held]
    if args.train_size:
        x_train, y_train = x_train[:args.train_size], y_train[:args.train_size]
    if args.test_size:
        x_test, y_test = x_test[:args.test_size], y_test[:args.test_size]
    as_float = lambda a: (a.astype("float32") / 255.0)[..., None]
    return (as_float(x_train), y_train.astype("int32"), as_float(x_val),
            y_val.astype("int32"), as_float(x_test), y_test.astype("int32"))


def evaluate(model, x_test, y_test, args):
    pairwise, global_r, pred, lip_body, lip_total, factors = radii(model, x_test, y_test)
    result = {
        "clean_accuracy": float(np.mean(pred == y_test)),
        "certified_accuracy_pairwise": {str(r): float(np.mean(pairwise > r))
                                        for r in RADII[args.dataset]},
        "certified_accuracy_global": {str(r): float(np.mean(global_r > r))
                                      for r in RADII[args.dataset]},
        "median_certified_radius_pairwise": float(np.median(pairwise)),
        "mean_certified_radius_pairwise": float(np.mean(pairwise)),
        "body_lipschitz_bound": lip_body, "logit_lipschitz_bound": lip_total,
        "body_factors": factors, "test_images": int(len(y_test)),
    }
    return result, pairwise


def table(out_dir):
    """Markdown table of the result JSONs in out_dir (one row per run)."""
    rows = []
    for name in sorted(os.listdir(out_dir)):
        if not name.endswith(".json"):
            continue
        with open(os.path.join(out_dir, name)) as f:
            r = json.load(f)
        a = r["args"]
        radii_ = list(r["certified_accuracy_pairwise"])
        loss = a["loss"] + (f" eps={a['train_eps']}" if a["loss"].startswith("lmce") else
                            f" a={a['hkr_alpha']} m={a['hkr_margin']}" if a["loss"] == "hkr" else "")
        if a["loss"].startswith("lmce") and a["temperature"] != 1.0:
            loss += f" T={a['temperature']}"
        cert = " | ".join(f"{100 * r['certified_accuracy_pairwise'][k]:.1f}" for k in radii_)
        rows.append((a["dataset"], f"| {r['name']} | {a['ode']} | {loss} | {a['bound']} | "
                     f"{a['epochs']} | {r['test_images']} | {100 * r['clean_accuracy']:.1f} | "
                     f"{cert} | {r['body_lipschitz_bound']:.3f} | {r['train_seconds'] / 60:.0f} |",
                     radii_))
    for dataset in sorted({d for d, _, _ in rows}):
        chosen = [(line, radii_) for d, line, radii_ in rows if d == dataset]
        header = " | ".join(f"L2 {k}" for k in chosen[0][1])
        print(f"\n{dataset}\n\n| run | ODE block | loss | bound in loss | epochs | test images "
              f"| clean | {header} | L_body | train min |")
        print("|" + "---|" * (9 + len(chosen[0][1])))
        for line, _ in chosen:
            print(line)
    print("\nPGD-L2 check (certified / attacked %, first images of the test set)\n")
    for name in sorted(os.listdir(out_dir)):
        if name.endswith(".json"):
            with open(os.path.join(out_dir, name)) as f:
                r = json.load(f)
            check = r["pgd_l2_check"]
            cells = " | ".join(f"{k}: {100 * v['certified_accuracy']:.1f} / "
                               f"{100 * v['attacked_accuracy']:.1f}" for k, v in check.items())
            broken = sum(v["certified_broken"] for v in check.values())
            print(f"| {r['name']} | {r['args']['attack_size']} images | {cells} | broken: {broken} |")


def main(argv=None):
    args = parse_args(argv)
    if args.table:
        table(args.out_dir)
        return
    if not args.name:
        raise SystemExit("--name is required (or --table)")
    out_path = os.path.join(args.out_dir, f"{args.name}.json")
    if os.path.exists(out_path) and not args.force:
        print(f"{out_path} exists; skipping (use --force to retrain).")
        return
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    import keras

    keras.utils.set_random_seed(args.seed)
    x_train, y_train, x_val, y_val, x_test, y_test = load_data(args)
    model = build_model(args)
    run_dir = os.path.join(args.run_dir, args.name)
    os.makedirs(run_dir, exist_ok=True)
    state_path = os.path.join(run_dir, "state.json")
    state = {"epochs_done": 0, "train_seconds": 0.0, "history": []}
    if os.path.exists(state_path):
        with open(state_path) as f:
            state = json.load(f)
        model.load_weights(os.path.join(run_dir, "last.weights.h5"))
        # Weights only: Adam's moments and the shuffling order restart.
        state.setdefault("resumed_after_epochs", []).append(state["epochs_done"])
        print(f"resuming {args.name} after epoch {state['epochs_done']} (weights only)")
    steps_per_epoch = math.ceil(len(x_train) / args.batch_size)
    total_steps = steps_per_epoch * args.epochs
    schedule = keras.optimizers.schedules.PolynomialDecay(
        args.lr, total_steps, end_learning_rate=args.lr_final)
    optimizer = keras.optimizers.Adam(schedule)
    eps_variable = keras.Variable(args.train_eps, trainable=False, name="train_eps",
                                  dtype="float32")
    loss = make_loss(model, args, eps_variable)
    model.compile(optimizer=optimizer, loss=loss, metrics=["sparse_categorical_accuracy"])
    if state["epochs_done"]:
        optimizer.iterations.assign(steps_per_epoch * state["epochs_done"])
    rng = np.random.default_rng(args.seed)
    for epoch in range(state["epochs_done"], args.epochs):
        if args.eps_warmup > 0:
            eps_variable.assign(args.train_eps * min(1.0, (epoch + 1) / args.eps_warmup))
        order = rng.permutation(len(x_train))
        start = time.time()
        hist = model.fit(x_train[order], y_train[order], batch_size=args.batch_size, epochs=1,
                         verbose=0, shuffle=False)
        seconds = time.time() - start
        # Per-epoch figures on the validation split when there is one, else
        # (older runs) on the first 2,000 test images.
        split = "validation" if len(y_val) else "test2k"
        x_eval, y_eval = (x_val, y_val) if len(y_val) else (x_test[:2000], y_test[:2000])
        metrics, _ = evaluate(model, x_eval, y_eval, args)
        row = {"epoch": epoch + 1, "seconds": seconds, "loss": float(hist.history["loss"][-1]),
               "train_accuracy": float(hist.history["sparse_categorical_accuracy"][-1]),
               "train_eps": float(eps_variable.numpy()),
               f"{split}_clean": metrics["clean_accuracy"],
               f"{split}_certified": metrics["certified_accuracy_pairwise"],
               "body_lipschitz_bound": metrics["body_lipschitz_bound"]}
        print(json.dumps(row), flush=True)
        model.save_weights(os.path.join(run_dir, "last.weights.h5"))
        state["epochs_done"] = epoch + 1
        state["train_seconds"] += seconds
        state["history"].append(row)
        with open(state_path, "w") as f:
            json.dump(state, f)

    result, pairwise = evaluate(model, x_test, y_test, args)
    if len(y_val):
        result["validation"] = evaluate(model, x_val, y_val, args)[0]
    sample = slice(0, min(args.attack_size, len(y_test)))
    result["pgd_l2_check"] = attack_check(model, x_test[sample], y_test[sample],
                                          pairwise[sample], RADII[args.dataset],
                                          args.attack_steps, args.seed)
    result.update({"name": args.name, "args": vars(args), "train_seconds": state["train_seconds"],
                   "history": state["history"],
                   "resumed_after_epochs": state.get("resumed_after_epochs", []),
                   "command": "python scripts/certified_study.py " + " ".join(
                       f"--{k}={v}" for k, v in vars(args).items()
                       if v is not None and k not in ("force", "run_dir", "out_dir")
                       and v != parse_args(["--name=x"]).__dict__.get(k) or k == "name")})
    model.save(os.path.join(run_dir, "model.keras"))
    os.makedirs(args.out_dir, exist_ok=True)
    with open(out_path, "w") as f:
        json.dump(result, f, indent=1)
    print(json.dumps({k: result[k] for k in ("clean_accuracy", "certified_accuracy_pairwise",
                                              "body_lipschitz_bound", "train_seconds")}))


if __name__ == "__main__":
    main()
