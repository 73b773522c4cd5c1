#!/usr/bin/env python3
"""The figures of the documentation (docs/figures.md), one function each.

    python docs/figures.py                      # every figure
    python docs/figures.py toy_trajectories     # some figures
    python docs/figures.py --list               # names and what each shows

Each figure is written to ``docs/<name>.png`` (``--output_dir`` to change) by
the function of the same name, which also prints the numbers quoted in
docs/figures.md.  Everything is computed here from a fixed seed (the toy
figures train their models in a minute or two of CPU each), except the
accuracy figures, which read the ``runs/zoo/<name>/evaluation.json`` files
written by ``zoo/build.py``.  Needs the ``plots`` extra (matplotlib); the
backend is Agg (no display).
"""

import argparse
import functools
import glob
import json
import math
import os
import sys
import time
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# The certificates do thousands of small (64 x 64) eigen-decompositions; a
# multi-threaded OpenBLAS makes each one ~10x slower on a busy 2-core machine.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np

DOCS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(DOCS)
RUNS_ZOO = os.path.join(ROOT, "runs", "zoo")
RESULTS_L2 = os.path.join(DOCS, "results", "l2")
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

#: name -> function; filled by ``@figure``.
FIGURES = {}


def figure(function):
    """Registers a figure function under its name."""
    FIGURES[function.__name__] = function
    return function


def pyplot():
    """matplotlib.pyplot on the Agg backend, with a clear error when it is missing."""
    try:
        import matplotlib
    except ImportError as e:
        raise SystemExit("docs/figures.py needs matplotlib: pip install -e '.[plots]'") from e
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"figure.dpi": 110, "savefig.dpi": 110, "font.size": 10,
                         "axes.grid": True, "grid.alpha": 0.3})
    return plt


def quiet_tensorflow():
    """Silences TensorFlow's Python-side INFO/WARNING logs (AutoGraph notes)."""
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")
    tf.autograph.set_verbosity(0)


def plain_log_axis(ax, axis="y"):
    """Plain numbers (0.5, 2, 20) instead of 5 x 10^-1 on a log axis, after plotting."""
    from matplotlib import ticker

    target = ax.yaxis if axis == "y" else ax.xaxis
    lo, hi = ax.get_ylim() if axis == "y" else ax.get_xlim()
    keep = (2.0, 5.0) if math.log10(hi / lo) > 1.0 else (2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0)

    def minor(value, _):
        mantissa = round(value / 10.0 ** math.floor(math.log10(value)), 6)
        return f"{value:g}" if mantissa in keep else ""

    target.set_major_formatter(ticker.FuncFormatter(lambda value, _: f"{value:g}"))
    target.set_minor_formatter(ticker.FuncFormatter(minor))


def report(name, values):
    """Prints the numbers a figure's description quotes."""
    print(f"[{name}]")
    for key, value in values.items():
        if isinstance(value, float):
            value = f"{value:.6g}"
        print(f"  {key}: {value}")
    sys.stdout.flush()


# --- the 2-D toy ("double circles") ------------------------------------------

#: (radius, class) of each ring.  The reference generator draws rings of
#: radius 1, 2, 3, 4 with classes 0, 1, 0, 1; we use its first two rings
#: (see docs/figures.md for why).
RINGS = ((1.0, 0), (2.0, 1))
STATE_SIZE = 4

#: Full-size settings of the toy trainings and the small ones of the tests.
TOY = {
    "full": dict(train_points=4000, test_points=2000, epochs=40, batch_size=250,
                 steps=16, learning_rate=0.05, bsm_inputs=64),
    "quick": dict(train_points=64, test_points=32, epochs=1, batch_size=32,
                  steps=4, learning_rate=0.05, bsm_inputs=4),
}

#: CH-NODE of the toy: gamma fixed, L = 0, so c1 = kappa and the projection
#: of K keeps c2 / c1 <= q_max(gamma, eps); the Euler step h is below the
#: step size certified non-expansive for every weight training can reach
#: (``certify.discrete_certificate(...)["invariant_max_step_size"]``).
CHNODE_TOY = dict(step_size=0.25, gamma=1.0, kappa=0.2, eps=0.2, units=8)


def double_circles(points, seed):
    """The reference's "double circles" toy: rings with uniform jitter.

    Points at angles 4 pi i / q on each ring of ``RINGS`` (radius r, class c),
    plus independent uniform jitter in [-0.3, 0.3] per coordinate, as in the
    reference generator.

    Returns:
        (points (P, 2) float32, labels (P,) float32).
    """
    rng = np.random.default_rng(seed)
    per_ring = points // len(RINGS)
    theta = np.arange(per_ring) / per_ring * 4.0 * np.pi
    xs, ys = [], []
    for radius, label in RINGS:
        ring = radius * np.stack([np.cos(theta), np.sin(theta)], axis=1)
        xs.append(ring + 0.6 * (rng.random((per_ring, 2)) - 0.5))
        ys.append(np.full(per_ring, label))
    return np.concatenate(xs).astype("float32"), np.concatenate(ys).astype("float32")


def lift(points, n=STATE_SIZE):
    """Zero-padding of 2-D points to the state size n, as the reference does.

    x goes to the first state coordinate and y to the last (the reference's
    default ``input_ch``), the others are 0.
    """
    state = np.zeros((len(points), n), "float32")
    state[:, 0] = points[:, 0]
    state[:, -1] = points[:, 1]
    return state


def toy_layer(kind, steps):
    """A fresh ODE layer of the toy: "node", "chnode", "hdnn" or "resnet".

    All are 16-step (``steps``) forward-Euler blocks on R^4, so they have
    the same depth:

    * "node": ``NeuralODE`` with an MLP field f(xi) = W2 tanh(W1 xi + c1) + c2
      (32 hidden units), shared over time, t1 = 2 -- the vanilla neural ODE;
    * "chnode": ``CHNODE`` with ``CHNODE_TOY`` (per-step K_k, b_k);
    * "hdnn": ``HDNN`` (xi' = J K_k^T tanh(K_k xi + b_k)), h = 0.25;
    * "resnet": ``ResNetODE`` (xi' = tanh(K_k^T xi + b_k)), h = 0.25.
    """
    import keras

    from contractive_keras.layers import CHNODE, HDNN, NeuralODE, ResNetODE

    normal = lambda std: keras.initializers.RandomNormal(stddev=std, seed=1)  # noqa: E731
    if kind == "node":
        field = keras.Sequential([keras.layers.Dense(32, activation="tanh"),
                                  keras.layers.Dense(STATE_SIZE)], name="mlp_field")
        return NeuralODE(field, t1=2.0, steps=steps, solver="euler", name="node")
    if kind == "chnode":
        return CHNODE(steps=steps, L_initializer="zeros", K_initializer=normal(0.3),
                      b_initializer=normal(1.0), discrete_check="raise", name="chnode",
                      **CHNODE_TOY)
    if kind == "hdnn":
        return HDNN(steps=steps, step_size=0.25, units=8, K_initializer=normal(0.5),
                    b_initializer=normal(1.0), name="hdnn")
    if kind == "resnet":
        return ResNetODE(steps=steps, step_size=0.25, K_initializer=normal(0.5),
                         b_initializer=normal(1.0), name="resnet")
    raise ValueError(f"unknown toy model {kind!r}")


@functools.lru_cache(maxsize=None)
def train_toy(kind, size="full"):
    """Trains ``toy_layer(kind)`` + a linear read-out on the toy (cached per process).

    Binary cross-entropy on the logit w^T xi(T) + c, Adam (lr 0.05, the
    reference's), batches of 250, ``TOY[size]["epochs"]`` epochs, seed 0.  For
    the per-step layers the backward sensitivity norms
    ``certify.bsm_norms(layer, xi(0))`` (exact per-input Jacobians, max over
    ``bsm_inputs`` training inputs) are recorded before training and after
    every epoch.

    Returns:
        dict: model, layer, history (keras), bsm and certified ((epochs + 1,
        N + 1) arrays of measured norms and of their certified bounds
        prod_{j >= k} ||step j|| from ``certify.discrete_certificate``, or
        None for the NODE), accuracies, seconds, test data.
    """
    import keras

    from contractive_keras import certify

    config = TOY[size]
    keras.utils.set_random_seed(0)
    x, y = double_circles(config["train_points"], seed=0)
    x_test, y_test = double_circles(config["test_points"], seed=1)
    layer = toy_layer(kind, config["steps"])
    inputs = keras.Input((STATE_SIZE,))
    logits = keras.layers.Dense(1, name="readout")(layer(inputs))
    model = keras.Model(inputs, logits)
    model.compile(keras.optimizers.Adam(config["learning_rate"]),
                  keras.losses.BinaryCrossentropy(from_logits=True),
                  metrics=[keras.metrics.BinaryAccuracy(threshold=0.0, name="accuracy")],
                  jit_compile=size == "full")
    probe = lift(x[:: max(1, len(x) // config["bsm_inputs"])][: config["bsm_inputs"]])
    bsm, certified = [], []

    def record(*_):
        bsm.append(certify.bsm_norms(layer, probe, method="exact"))
        per_step = np.array(certify.discrete_certificate(layer)["per_step_bounds"])
        # certified bound of ||d xi(t_N) / d xi(t_k)||: prod_{j >= k} ||step j||
        certified.append(np.append(np.cumprod(per_step[::-1])[::-1], 1.0))

    callbacks = []
    if kind != "node":
        record()
        callbacks.append(keras.callbacks.LambdaCallback(on_epoch_end=record))
    start = time.perf_counter()
    history = model.fit(lift(x), y, batch_size=config["batch_size"], epochs=config["epochs"],
                        verbose=0, shuffle=True, callbacks=callbacks)
    seconds = time.perf_counter() - start

    def accuracy(points, labels):
        predicted = np.asarray(model(lift(points), training=False))[:, 0] > 0
        return float(np.mean(predicted == (labels > 0.5)))

    return {
        "model": model, "layer": layer, "history": history.history,
        "bsm": np.array(bsm) if bsm else None,
        "certified": np.array(certified) if certified else None,
        "train_accuracy": accuracy(x, y), "test_accuracy": accuracy(x_test, y_test),
        "seconds": seconds, "x_test": x_test, "y_test": y_test, "bsm_inputs": len(probe),
    }


def flow_map(trained):
    """xi(0) (P, 4) -> the states xi(t_k) (P, N + 1, 4) of a trained toy model."""
    layer = trained["layer"]
    if hasattr(layer, "integrate"):                       # per-step layers
        times = [k * layer.step_size for k in range(layer.steps + 1)]
        times[-1] = layer.t1

        def states(xi0):
            import tensorflow as tf

            rows = tf.convert_to_tensor(xi0, layer.compute_dtype)
            return np.transpose(np.asarray(layer.integrate(rows, times)), (1, 0, 2))
        return states

    from contractive_keras.layers import NeuralODE

    twin = NeuralODE(layer.vector_field, t1=layer.t1, steps=layer.steps, solver=layer.solver,
                     return_trajectory=True)
    return lambda xi0: np.asarray(twin(np.asarray(xi0, "float32")))


def perturbation_ratios(states, points, radius, seed):
    """||xi(T) - xi'(T)|| / ||xi(0) - xi'(0)|| for random input perturbations.

    xi'(0) is the lift of the input moved by ``radius`` in a uniformly random
    direction of the input plane.
    """
    rng = np.random.default_rng(seed)
    angle = rng.uniform(0.0, 2.0 * np.pi, len(points))
    moved = points + radius * np.stack([np.cos(angle), np.sin(angle)], 1).astype("float32")
    a, b = lift(points), lift(moved)
    end_a, end_b = states(a)[:, -1], states(b)[:, -1]
    return np.linalg.norm(end_a - end_b, axis=1) / np.linalg.norm(a - b, axis=1)


@figure
def toy_trajectories(output, size="full"):
    """Vanilla NODE vs CH-NODE on the toy: trajectories of inputs and of perturbed copies.

    Two panels (one per model) show the projection on the two input
    coordinates (xi_1, xi_4) of: the trajectories xi(t_k), k = 0..16, of 12
    points on the two rings (grey), a circle of perturbed copies of each input
    (radius 0.3 in the input plane, purple) and its image at t = T (orange).
    A third panel gives, over the whole test set, the distribution of the
    ratio ||xi(T) - xi'(T)|| / ||xi(0) - xi'(0)|| for random perturbations of
    size 0.1.  CH-NODE's certificate: the discrete Euler block is certified
    non-expansive (``certify.discrete_certificate``), so its ratios are <= the
    printed bound < 1 at every input; the vanilla NODE has no such bound.
    """
    from contractive_keras import certify

    plt = pyplot()
    trained = {kind: train_toy(kind, size) for kind in ("node", "chnode")}
    node, chnode = trained["node"]["layer"], trained["chnode"]["layer"]
    models = {"node": f"vanilla NODE (MLP field, {node.steps} Euler steps, h = "
                      f"{node.t1 / node.steps:g})",
              "chnode": f"CH-NODE ({chnode.steps} Euler steps, h = {chnode.step_size:g})"}
    fig, axes = plt.subplots(1, 3, figsize=(15, 5.4))
    values = {}
    ratios = {}
    anchors_angle = np.linspace(0.0, 2.0 * np.pi, 7)[:-1] + 0.3
    anchors = np.concatenate([r * np.stack([np.cos(anchors_angle + 0.5 * i),
                                            np.sin(anchors_angle + 0.5 * i)], 1)
                              for i, (r, _) in enumerate(RINGS)]).astype("float32")
    anchor_class = np.repeat([c for _, c in RINGS], len(anchors_angle))
    circle = np.linspace(0.0, 2.0 * np.pi, 60)
    for ax, (kind, title) in zip(axes[:2], models.items()):
        run = trained[kind]
        states = flow_map(run)
        paths = states(lift(anchors))
        for path, label in zip(paths, anchor_class):
            ax.plot(path[:, 0], path[:, -1], "-", color="0.45", lw=1.0, zorder=1)
            ax.plot(path[0, 0], path[0, -1], "o" if label else "x", color="C3" if label else "C0",
                    ms=6, zorder=3)
        for point in anchors:
            ring = point + 0.3 * np.stack([np.cos(circle), np.sin(circle)], 1).astype("float32")
            end = states(lift(ring))[:, -1]
            ax.plot(ring[:, 0], ring[:, 1], "-", color="purple", lw=1.0, zorder=2)
            ax.plot(end[:, 0], end[:, -1], "-", color="darkorange", lw=1.6, zorder=4)
        ax.set_aspect("equal", adjustable="datalim")
        ax.set_xlabel(r"$\xi_1$")
        ax.set_ylabel(r"$\xi_4$")
        ax.set_title(f"{title}\ntest accuracy {100 * run['test_accuracy']:.1f}%", fontsize=10)
        ratios[kind] = perturbation_ratios(states, run["x_test"], 0.1, seed=2)
        values[f"{kind}/train_accuracy"] = run["train_accuracy"]
        values[f"{kind}/test_accuracy"] = run["test_accuracy"]
        values[f"{kind}/train_seconds"] = run["seconds"]
        for q in (50, 90, 100):
            values[f"{kind}/ratio_p{q}"] = float(np.percentile(ratios[kind], q))
        values[f"{kind}/fraction_ratio_above_1"] = float(np.mean(ratios[kind] > 1.0))
    cert = certify.discrete_certificate(trained["chnode"]["layer"])
    values["chnode/certified_lipschitz_bound"] = cert["lipschitz_bound"]
    values["chnode/max_step_size"] = cert["max_step_size"]
    values["chnode/invariant_max_step_size"] = cert.get("invariant_max_step_size", float("nan"))
    values["chnode/step_size"] = cert["step_size"]
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color="0.45", label=r"trajectory $\xi(t_k)$"),
               Line2D([], [], color="purple", label="perturbed inputs (radius 0.3)"),
               Line2D([], [], color="darkorange", label=r"their images at $T$"),
               Line2D([], [], ls="", marker="x", color="C0", label="class 0 (r = 1)"),
               Line2D([], [], ls="", marker="o", color="C3", label="class 1 (r = 2)")]
    fig.legend(handles=handles, loc="lower center", ncol=5, fontsize=9, frameon=False)
    ax = axes[2]
    all_ratios = np.concatenate(list(ratios.values()))
    bins = np.logspace(np.log10(max(all_ratios.min(), 1e-6)) - 0.05,
                       np.log10(all_ratios.max()) + 0.05, 50)
    for kind, color in (("node", "C1"), ("chnode", "C2")):
        ax.hist(ratios[kind], bins=bins, alpha=0.6, color=color,
                label=f"{'vanilla NODE' if kind == 'node' else 'CH-NODE'}: median "
                      f"{np.median(ratios[kind]):.2f}, max {ratios[kind].max():.2f}")
    ax.axvline(1.0, color="k", ls="--", lw=1)
    ax.axvline(cert["lipschitz_bound"], color="C2", ls=":", lw=1.5,
               label=f"CH-NODE certified bound {cert['lipschitz_bound']:.3f}")
    ax.set_xscale("log")
    plain_log_axis(ax, "x")
    ax.set_xlabel(r"$\|\xi(T)-\xi'(T)\| \,/\, \|\xi(0)-\xi'(0)\|$")
    ax.set_ylabel("test inputs")
    ax.set_title(f"perturbation growth over {len(ratios['node'])} test inputs\n"
                 "(random direction, size 0.1)", fontsize=10)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.savefig(output)
    plt.close(fig)
    report("toy_trajectories", values)
    return values


@figure
def bsm_training(output, size="full"):
    """BSM norms ||d xi(T) / d xi(T - t)||_2 of 16-step blocks during training on the toy.

    One panel per model (CH-NODE, H-DNN, ResNet-ODE, all 16 forward-Euler
    steps, h = 0.25, trained as in ``train_toy``): one line per depth
    l = N - k (colour), the backward sensitivity norm ||d xi(t_N) / d xi(t_k)||_2
    (``certify.bsm_norms``, exact Jacobians, max over 64 training inputs)
    before training and after every epoch.  CH-NODE (Theorem 2 in continuous
    time; here the discrete certificate) stays <= 1 at every depth; the
    certified bounds prod_{j >= k} ||step j|| (``certify.discrete_certificate``,
    recorded with the norms) of depth l = 1 and l = N are drawn dashed.
    """
    plt = pyplot()
    import matplotlib as mpl

    kinds = {"chnode": "CH-NODE", "hdnn": "H-DNN", "resnet": "ResNet-ODE"}
    runs = {kind: train_toy(kind, size) for kind in kinds}
    steps = runs["chnode"]["layer"].steps
    norm = mpl.colors.Normalize(vmin=1, vmax=steps)
    cmap = mpl.colormaps["viridis"]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.8), layout="constrained")
    values = {}
    for ax, (kind, title) in zip(axes, kinds.items()):
        bsm = runs[kind]["bsm"]                        # (epochs + 1, N + 1)
        epochs = np.arange(bsm.shape[0])
        for k in range(steps):                          # depth l = N - k
            ax.plot(epochs, bsm[:, k], color=cmap(norm(steps - k)), lw=1.2)
        ax.axhline(1.0, color="k", lw=1.2)
        certified = runs[kind]["certified"]
        if kind == "chnode":
            for depth, style in ((1, "-."), (steps, "--")):
                ax.plot(epochs, certified[:, steps - depth], ls=style, lw=1.6, color="C3",
                        label=f"certified bound, depth {depth}")
            ax.legend(loc="lower right", fontsize=8)
            values["chnode/max_measured_over_certified"] = float(
                np.max(bsm[:, :steps] / certified[:, :steps]))
        ax.set_yscale("log")
        plain_log_axis(ax)
        ax.set_xlabel("epoch (0 = before training)")
        ax.set_title(f"{title} (test accuracy {100 * runs[kind]['test_accuracy']:.1f}%)",
                     fontsize=10)
        values[f"{kind}/max_bsm"] = float(bsm[:, :steps].max())
        values[f"{kind}/min_bsm"] = float(bsm[:, :steps].min())
        values[f"{kind}/final_whole_block_bsm"] = float(bsm[-1, 0])
        values[f"{kind}/certified_whole_block_bound_max"] = float(certified[:, 0].max())
        values[f"{kind}/test_accuracy"] = runs[kind]["test_accuracy"]
    axes[0].set_ylabel(r"$\|\partial \xi(T) / \partial \xi(T - t_\ell)\|_2$ (max over inputs)")
    chnode = runs["chnode"]
    fig.suptitle(f"Backward sensitivity during training on the toy ({steps} Euler steps, "
                 f"h = {chnode['layer'].step_size:g}; exact Jacobians, max over "
                 f"{chnode['bsm_inputs']} training inputs; black line: 1)", fontsize=11)
    bar = fig.colorbar(mpl.cm.ScalarMappable(norm=norm, cmap=cmap), ax=axes, pad=0.01,
                       fraction=0.02)
    bar.set_label(r"depth $\ell$ (steps from the output)")
    fig.savefig(output)
    plt.close(fig)
    report("bsm_training", values)
    return values


# --- stabilized NODE: Lipschitz bound vs delta_bar ----------------------------

#: delta_bar grid of the stabilized-NODE figure and the training budget.  The
#: Euler-covering projection needs 1 + h delta_bar > (1 - alpha) / (1 + alpha),
#: i.e. delta_bar > -1.82 for h = 0.1, alpha = 0.1.
STABILIZED = {
    "full": dict(delta_bars=(1.0, 0.5, 0.0, -0.5, -1.0, -1.5), train_images=60000,
                 epochs=3, test_images=10000, pair_states=500, ascent_steps=30, width=64),
    "quick": dict(delta_bars=(-1.0,), train_images=64, epochs=1, test_images=64,
                  pair_states=16, ascent_steps=2, width=8),
}


def mnist_or_noise(size):
    """MNIST (full size), or random images and labels (quick: no dataset needed).

    Returns ((x_train, y_train), (x_test, y_test)), images float32 in [0, 1]
    of shape (N, 28, 28, 1).
    """
    config = STABILIZED[size]
    if size == "quick":
        rng = np.random.default_rng(0)
        images = rng.random((config["train_images"] + config["test_images"], 28, 28, 1))
        labels = rng.integers(0, 10, len(images))
        images = images.astype("float32")
        cut = config["train_images"]
        return (images[:cut], labels[:cut]), (images[cut:], labels[cut:])
    from contractive_keras import data

    def part(split, count):
        images, labels = data.load_numpy("mnist", split)
        return (images[:count, :, :, None].astype("float32") / 255.0,
                labels[:count].astype("int64"))

    return part("train", config["train_images"]), part("test", config["test_images"])


def empirical_lipschitz(block, states, ascent_steps, seed):
    """Lower bounds of the Lipschitz constant of ``block`` from pairs of states.

    * random pairs: ||phi(u_i) - phi(u_j)|| / ||u_i - u_j|| over pairs of
      distinct states (a random pairing), max;
    * adversarial pairs: for each u, v = u + r w with ||w|| = 1, w improved by
      ``ascent_steps`` normalised gradient-ascent steps on ||phi(u + r w) -
      phi(u)|| (r = 1e-2 of the median state norm), max of the ratio.

    Both are ratios of actual pairs, hence lower bounds of the true constant.
    """
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    u = tf.constant(states, tf.float32)
    out = np.asarray(block(u))
    other = rng.permutation(len(states))
    keep = other != np.arange(len(states))
    random_ratio = (np.linalg.norm(out - out[other], axis=1)[keep]
                    / np.linalg.norm(states - states[other], axis=1)[keep])
    radius = 1e-2 * float(np.median(np.linalg.norm(states, axis=1)))
    w = tf.Variable(tf.math.l2_normalize(
        tf.constant(rng.standard_normal(states.shape), tf.float32), axis=1))
    for _ in range(ascent_steps):
        with tf.GradientTape() as tape:
            gap = tf.reduce_sum(tf.norm(block(u + radius * w) - out, axis=1))
        step = tf.math.l2_normalize(tape.gradient(gap, w), axis=1)
        w.assign(tf.math.l2_normalize(w + 0.5 * step, axis=1))
    adversarial = np.linalg.norm(np.asarray(block(u + radius * w)) - out, axis=1) / radius
    return float(random_ratio.max()), float(adversarial.max())


@figure
def lipschitz_vs_delta_bar(output, size="full"):
    """Stabilized NODE on MNIST: certified and measured Lipschitz constant vs delta_bar.

    For each delta_bar of ``STABILIZED``, ``models.build("stable_node",
    delta_bar=...)`` (flatten -> dense lift to d = 64 -> StabilizedNODE
    u' = leaky_relu_0.1(A u + b), 10 Euler steps on [0, 1] -> dense 10) is
    trained on the 60,000 MNIST training images (3 epochs, Adam 1e-3, batch
    128; ``DeltaBarProjection`` after every step), and the unconstrained
    ``models.build("node")`` alike.  Left: for the ODE block (lifted state ->
    u(1)), the certified Lipschitz bound of the computed Euler map
    (``stability.lipschitz_bound(layer)``: product of the per-step bounds
    max_D ||I + h D A||_2), the design bound (1 + h delta_bar)^N, exp(delta_bar)
    and two measured lower bounds, from random pairs of test states and from
    adversarial (gradient-ascent) pairs.  Middle: certified upper bound and
    ascent lower bound of delta = max_D mu_2(D A) (``stability.delta``)
    against delta_bar.  Right: test accuracy (10k images).
    """
    import keras

    from contractive_keras import models, stability

    plt = pyplot()
    config = STABILIZED[size]
    (x, y), (x_test, y_test) = mnist_or_noise(size)
    settings = [("node", None)] + [("stable_node", d) for d in config["delta_bars"]]
    rows = []
    for name, delta_bar in settings:
        keras.utils.set_random_seed(0)
        kwargs = {} if delta_bar is None else {"delta_bar": delta_bar}
        model = models.build(name, width=config["width"], **kwargs)
        model.compile(keras.optimizers.Adam(1e-3),
                      keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=["accuracy"])
        start = time.perf_counter()
        model.fit(x, y, batch_size=128, epochs=config["epochs"], verbose=0, shuffle=True)
        seconds = time.perf_counter() - start
        layer = model.get_layer("stabilized_node")
        lift = keras.Model(model.input, layer.input)
        accuracy = float(model.evaluate(x_test, y_test, batch_size=1000, verbose=0)[1])
        certificate = stability.lipschitz_bound(layer)
        kernel = np.asarray(layer.kernel, np.float64)
        lower = stability.delta(kernel, layer.alpha, "lower")
        states = np.asarray(lift(x_test[: config["pair_states"]]))
        random_pairs, adversarial = empirical_lipschitz(layer, states, config["ascent_steps"], 3)
        h, steps = layer.step_size, layer.steps
        rows.append({
            "delta_bar": delta_bar, "accuracy": accuracy, "seconds": seconds,
            "certified_map": float(certificate.value), "certifies": certificate.certifies,
            "delta_upper": float(certificate.delta.value), "delta_kind": certificate.delta.kind,
            "delta_lower": float(lower.value), "random_pairs": random_pairs,
            "adversarial_pairs": adversarial,
            "design_bound": None if delta_bar is None else (1 + h * delta_bar) ** steps,
        })
    constrained = [r for r in rows if r["delta_bar"] is not None]
    plain = rows[0]
    grid = np.array([r["delta_bar"] for r in constrained])
    spot = grid.max() + 0.6                          # where the plain NODE is drawn
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8), layout="constrained",
                             gridspec_kw={"width_ratios": [1.35, 1, 1]})

    def both(ax, key, **style):
        line = ax.plot(grid, [r[key] for r in constrained], **style)[0]
        ax.plot([spot], [plain[key]], ls="", marker=style.get("marker", "o"),
                color=line.get_color(), ms=7, mfc="none", mew=1.6)
        return line

    ax = axes[0]
    fine = np.linspace(grid.min(), grid.max(), 100)
    ax.plot(fine, np.exp(fine), color="0.6", ls=":", label=r"$e^{\bar\delta t_1}$ (flow bound)")
    ax.plot(fine, (1 + h * fine) ** steps, color="k", ls="--", lw=1.2,
            label=r"$(1 + h\bar\delta)^N$ (what the projection certifies)")
    both(ax, "certified_map", color="C3", marker="s", label="certified bound of the Euler map")
    both(ax, "adversarial_pairs", color="C0", marker="o", label="measured: adversarial pairs")
    both(ax, "random_pairs", color="C2", marker="^", label="measured: random pairs of test states")
    ax.set_yscale("log")
    plain_log_axis(ax)
    ax.set_ylabel("Lipschitz constant of the ODE block (2-norm)")
    ax.set_title(f"ODE block, d = {config['width']}, {steps} Euler steps, h = {h:g}, "
                 f"alpha = {layer.alpha:g}", fontsize=10)
    ax.legend(fontsize=8, loc="upper left")
    ax = axes[1]
    ax.plot(fine, fine, color="k", ls="--", lw=1.2, label=r"$\delta = \bar\delta$")
    kinds = sorted({r["delta_kind"] for r in rows})
    both(ax, "delta_upper", color="C3", marker="s",
         label=r"certified $\delta$ (%s, used by the bound)" % "/".join(kinds))
    both(ax, "delta_lower", color="C0", marker="o", label=r"lower bound of $\delta$ (ascent on D)")
    ax.set_ylabel(r"$\delta = \max_D \mu_2(DA)$")
    ax.set_title(r"$\delta$ of the trained kernel", fontsize=10)
    ax.legend(fontsize=8, loc="upper left")
    ax = axes[2]
    for r in rows:
        r["accuracy_percent"] = 100 * r["accuracy"]
    both(ax, "accuracy_percent", color="C4", marker="o")
    ax.set_ylabel("test accuracy (%)")
    low = min(r["accuracy_percent"] for r in rows)
    ax.set_ylim(max(0.0, math.floor(low) - 5.0), 100.0)
    ax.set_title(f"MNIST test accuracy ({len(y_test)} images)" if size == "full"
                 else "test accuracy (random data)", fontsize=10)
    for ax in axes:
        ax.axvline(0.5 * (grid.max() + spot), color="0.5", lw=0.8)
        ticks = list(grid) + [spot]
        ax.set_xticks(ticks, [f"{t:g}" for t in grid] + ["plain\nNODE"])
        ax.set_xlabel(r"$\bar\delta$ (open markers: unconstrained NODE)")
    data_name = "MNIST" if size == "full" else "random data"
    fig.suptitle("Stabilized NODE: certified vs measured Lipschitz constant against "
                 r"$\bar\delta$ (trained on %s, one model per $\bar\delta$)" % data_name,
                 fontsize=11)
    fig.savefig(output)
    plt.close(fig)
    values = {}
    for r in rows:
        tag = "node" if r["delta_bar"] is None else f"delta_bar={r['delta_bar']:g}"
        for key in ("accuracy", "certified_map", "design_bound", "adversarial_pairs",
                    "random_pairs", "delta_upper", "delta_lower", "seconds"):
            if r[key] is not None:
                values[f"{tag}/{key}"] = r[key]
        values[f"{tag}/delta_kind"] = r["delta_kind"]
        values[f"{tag}/certifies"] = r["certifies"]
    report("lipschitz_vs_delta_bar", values)
    return values


# --- zoo accuracy figures -----------------------------------------------------

#: family prefix -> (label, colour)
FAMILIES = {
    "chnode": ("CH-NODE", "C2"),
    "hdnn": ("H-DNN", "C0"),
    "resnet": ("ResNet-ODE", "C1"),
    "node": ("NODE", "C4"),
    "stable_node": ("stabilized NODE", "C3"),
}
DEPTH_STYLES = {"n4": "-", "n8": "--", "n12": ":"}


def zoo_evaluations(runs_dir=RUNS_ZOO):
    """{name: evaluation dict} of every ``<runs_dir>/<name>/evaluation.json``."""
    found = {}
    for path in sorted(glob.glob(os.path.join(runs_dir, "*", "evaluation.json"))):
        with open(path) as f:
            found[os.path.basename(os.path.dirname(path))] = json.load(f)
    return found


def zoo_style(name):
    """(label, colour, line style, marker) of a zoo entry name."""
    if name.endswith("_certified"):
        label, _, _, _ = zoo_style(name[:-len("_certified")])
        color = "C6" if name.startswith("chnode") else "C9"
        return f"{label}, certified", color, "-", "D"
    family = "stable_node" if name.startswith("stable_node") else name.split("_")[0]
    label, color = FAMILIES.get(family, (family, "0.4"))
    depth = name.rsplit("_", 1)[-1]
    if depth in DEPTH_STYLES:
        return f"{label} N={depth[1:]}", color, DEPTH_STYLES[depth], "o"
    dataset = "Fashion-MNIST" if "fashion" in name else "MNIST"
    return f"{label} ({dataset})", color, "-" if dataset == "MNIST" else "-.", "s"


def zoo_order(name):
    """Sort key: family (as in ``FAMILIES``), then dataset, then depth."""
    if name.endswith("_certified"):
        return zoo_order(name[:-len("_certified")])[:3] + (name,)
    family = "stable_node" if name.startswith("stable_node") else name.split("_")[0]
    rank = list(FAMILIES).index(family) if family in FAMILIES else len(FAMILIES)
    depth = name.rsplit("_n", 1)[-1]
    return rank, "fashion" in name, int(depth) if depth.isdigit() else 0, name


def _series(table, kind, norm=None):
    """(levels, means, stds) of ``kind`` with the clean row as level 0."""
    from contractive_keras.robustness import RobustnessTable

    table = RobustnessTable.from_dict(table)
    clean = table.lookup("clean")
    levels, means, stds = table.series(kind, norm)
    if not np.any(np.isclose(levels, 0.0)):
        levels = np.concatenate([[0.0], levels])
        means = np.concatenate([[clean.mean], means])
        stds = np.concatenate([[clean.std], stds])
    return levels, means, stds


def _require(evaluations, runs_dir):
    if not evaluations:
        raise FileNotFoundError(
            f"no evaluation.json under {runs_dir}: run `python zoo/build.py` first "
            "(these figures plot its results).")


def _accuracy_panels(evaluations, panels, output, suptitle):
    plt = pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(5.6 * len(panels) + 2.4, 4.8),
                             sharey=True, layout="constrained")
    axes = np.atleast_1d(axes)
    for ax, (table_key, kind, norm, xlabel, title) in zip(axes, panels):
        for name, evaluation in sorted(evaluations.items(), key=lambda item: zoo_order(item[0])):
            if table_key not in evaluation:
                continue
            levels, means, stds = _series(evaluation[table_key], kind, norm)
            if len(levels) < 2:
                continue
            label, color, style, marker = zoo_style(name)
            ax.errorbar(levels, 100 * means, yerr=100 * stds, color=color, ls=style,
                        marker=marker, ms=4, lw=1.4, capsize=2, label=label)
        ax.set_xlabel(xlabel)
        ax.set_title(title, fontsize=10)
        ax.set_ylim(-2, 102)
    axes[0].set_ylabel("test accuracy (%)")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right center", fontsize=8, frameon=True)
    fig.suptitle(suptitle, fontsize=11)
    fig.savefig(output)
    plt.close(fig)


@figure
def accuracy_vs_noise(output, runs_dir=RUNS_ZOO):
    """Test accuracy of every zoo model vs the noise level of the reference protocol.

    Left: Gaussian noise of variance 0, 0.05, 0.2; right: salt-and-pepper of
    amount 0, 0.05, 0.2; both on normalised images, clipped to [-1, 1]
    (``robustness.reference_noise``), mean and standard deviation over the
    draws of ``zoo/build.py`` (10 draws over the 10k test images).
    """
    evaluations = zoo_evaluations(runs_dir)
    _require(evaluations, runs_dir)
    _accuracy_panels(evaluations, [
        ("test", "gaussian", None, "Gaussian noise variance", "Gaussian noise"),
        ("test", "salt_pepper", None, "salt-and-pepper amount", "salt-and-pepper noise"),
    ], output, "Accuracy under input noise (zoo models, test set; error bars: std over draws)")
    values = {}
    for name, evaluation in evaluations.items():
        for kind in ("gaussian", "salt_pepper"):
            levels, means, _ = _series(evaluation["test"], kind)
            values.update({f"{name}/{kind}_{l:g}": float(m) for l, m in zip(levels, means)})
    report("accuracy_vs_noise", values)
    return values


def _has_rows(evaluations, table_key, kind):
    return any(row["kind"] == kind for e in evaluations.values()
               for row in e.get(table_key, {}).get("rows", []))


@figure
def accuracy_vs_fgsm(output, runs_dir=RUNS_ZOO):
    """Test accuracy of every zoo model vs the L-inf attack radius eps (pixels in [0, 1]).

    Left: FGSM on the whole test set (eps = 0 is the clean accuracy).  Where
    ``zoo/build.py`` wrote them, on the first ``pgd_take`` test images: PGD
    (40 steps, random start) and the worst case, an image counting as robust
    at eps only if neither FGSM nor PGD broke it at any radius <= eps (the
    union of the attacks; monotone in eps even when one attack is not).
    """
    evaluations = zoo_evaluations(runs_dir)
    _require(evaluations, runs_dir)
    take = {e.get("pgd_take") for e in evaluations.values()} - {None}
    subset = "first %s test images" % "/".join(str(t) for t in sorted(take)) if take else "subset"
    radius = r"radius $\epsilon$ ($L_\infty$, pixels in [0, 1])"
    panels = [("test", "fgsm", "linf", radius, "FGSM, test set")]
    if _has_rows(evaluations, "pgd_subset", "pgd"):
        panels.append(("pgd_subset", "pgd", "linf", radius, f"PGD-40, {subset}"))
    if _has_rows(evaluations, "pgd_subset", "worst_case"):
        panels.append(("pgd_subset", "worst_case", "linf", radius,
                       f"worst case of FGSM and PGD, {subset}"))
    _accuracy_panels(evaluations, panels, output,
                     "Accuracy under adversarial attack (zoo models)")
    values = {}
    for name, evaluation in evaluations.items():
        for table_key, kind in (("test", "fgsm"), ("pgd_subset", "pgd"),
                                ("pgd_subset", "worst_case")):
            if _has_rows({name: evaluation}, table_key, kind):
                levels, means, _ = _series(evaluation[table_key], kind, "linf")
                values.update({f"{name}/{kind}_{l:g}": float(m) for l, m in zip(levels, means)})
    report("accuracy_vs_fgsm", values)
    return values


@figure
def certified_accuracy_l2(output, results_dir=RESULTS_L2):
    """Certified and attacked accuracy of every zoo model vs the L2 radius (first 1000 test images).

    Reads the ``python -m contractive_keras.evaluate --norm=l2`` tables in
    ``results_dir`` (docs/reproduction.md, section 3) whose names are zoo
    entries.  Left: certified accuracy (logit margin > sqrt(2) L eps, a
    lower bound of the robust accuracy); right: the union of PGD-L2 attacks
    at every radius <= eps (an upper bound).
    """
    import glob

    tables = {}
    for path in sorted(glob.glob(os.path.join(results_dir, "*.json"))):
        name = os.path.splitext(os.path.basename(path))[0]
        with open(path) as f:
            table = json.load(f)
        if name in _zoo_names() and any(row["kind"] == "certified" for row in table["rows"]):
            tables[name] = {"l2": table}
    if not tables:
        raise FileNotFoundError(
            f"no L2 evaluation tables of zoo models under {results_dir}: run the loop "
            "in docs/reproduction.md, section 3.")
    radius = r"radius $\epsilon$ ($L_2$, pixels in [0, 1])"
    _accuracy_panels(tables, [("l2", "certified", "l2", radius, "certified (lower bound)"),
                              ("l2", "worst_case", "l2", radius, "PGD-40, union over radii (upper bound)")],
                     output, "Robust accuracy at L2 radii (zoo models, first 1000 test images)")
    values = {}
    for name, table in tables.items():
        for kind in ("certified", "worst_case"):
            levels, means, _ = _series(table["l2"], kind, "l2")
            values.update({f"{name}/{kind}_{l:g}": float(m) for l, m in zip(levels, means)})
    report("certified_accuracy_l2", values)
    return values


def _zoo_names():
    with open(os.path.join(ROOT, "zoo", "manifest.json")) as f:
        return set(json.load(f)["models"])


# --- command line ------------------------------------------------------------


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="figures to make (default: all)")
    parser.add_argument("--list", action="store_true", help="list the figures and exit")
    parser.add_argument("--output_dir", default=DOCS, help="where the PNGs go (default docs/)")
    parser.add_argument("--results_dir", default=RESULTS_L2,
                        help="L2 evaluation tables (default docs/results/l2)")
    parser.add_argument("--runs_dir", default=RUNS_ZOO,
                        help="zoo runs with evaluation.json files (default runs/zoo)")
    args = parser.parse_args(argv)
    if args.list:
        for name, function in FIGURES.items():
            print(f"{name:26s} {function.__doc__.splitlines()[0]}")
        return 0
    unknown = [n for n in args.names if n not in FIGURES]
    if unknown:
        parser.error(f"unknown figures {unknown}; known: {sorted(FIGURES)}")
    warnings.simplefilter("ignore", category=UserWarning)
    quiet_tensorflow()
    for name in args.names or list(FIGURES):
        output = os.path.join(args.output_dir, f"{name}.png")
        start = time.perf_counter()
        kwargs = {"runs_dir": args.runs_dir} if name.startswith("accuracy") else {}
        if name == "certified_accuracy_l2":
            kwargs = {"results_dir": args.results_dir}
        FIGURES[name](output, **kwargs)
        print(f"wrote {os.path.relpath(output)} ({time.perf_counter() - start:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
