"""Figures of the 2-D toy ("double circles"): flows of the four ODE blocks and the BSM norm in training."""

import functools
import time

from figure_tools import figure, plain_log_axis, pyplot, report  # first: thread settings before NumPy

import numpy as np

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
#: (``certify.layer_certificate(...).details["invariant_max_step_size"]``).
TOY_STEP_SIZE = 0.25   # h of the CH-NODE, HDNN and ResNet toys
CHNODE_TOY = dict(gamma=1.0, kappa=0.2, eps=0.2, units=8)


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
    * "chnode": ``CHNODE`` with ``CHNODE_TOY`` (per-step K_k, b_k), h = 0.25;
    * "hdnn": ``HDNN`` (xi' = J K_k^T tanh(K_k xi + b_k)), h = 0.25;
    * "resnet": ``ResNetODE`` (xi' = tanh(K_k^T xi + b_k)), h = 0.25.
    """
    import keras

    from contractive_keras.layers import CHNODE, HDNN, NeuralODE, ResNetODE
    from contractive_keras.solvers import SolverSpec

    normal = lambda std: keras.initializers.RandomNormal(stddev=std, seed=1)  # noqa: E731
    if kind == "node":
        field = keras.Sequential([keras.layers.Dense(32, activation="tanh"),
                                  keras.layers.Dense(STATE_SIZE)], name="mlp_field")
        return NeuralODE(SolverSpec("euler", steps=steps, t1=2.0), vector_field=field,
                         name="node")
    euler = SolverSpec("euler", steps=steps, step_size=TOY_STEP_SIZE)
    if kind == "chnode":
        return CHNODE(euler, dissipation_initializer="zeros", kernel_initializer=normal(0.3),
                      bias_initializer=normal(1.0), discrete_check="raise", name="chnode",
                      **CHNODE_TOY)
    if kind == "hdnn":
        return HDNN(euler, units=8, kernel_initializer=normal(0.5),
                    bias_initializer=normal(1.0), name="hdnn")
    if kind == "resnet":
        return ResNetODE(euler, kernel_initializer=normal(0.5),
                         bias_initializer=normal(1.0), name="resnet")
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
        prod_{j >= k} ||step j|| from ``certify.layer_certificate``, or
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
    if kind == "chnode":
        certify.check_discretization(layer, weights="initial")   # discrete_check="raise"
    model.compile(keras.optimizers.Adam(config["learning_rate"]),
                  keras.losses.BinaryCrossentropy(from_logits=True),
                  metrics=[keras.metrics.BinaryAccuracy(threshold=0.0, name="accuracy")],
                  jit_compile=size == "full")
    probe = lift(x[:: max(1, len(x) // config["bsm_inputs"])][: config["bsm_inputs"]])
    bsm, certified = [], []

    def record(*_):
        bsm.append(certify.bsm_norms(layer, probe, method="exact"))
        per_step = np.array(certify.layer_certificate(layer).details["per_step_bounds"])
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

    twin = NeuralODE(layer.solver_spec, vector_field=layer.vector_field, return_trajectory=True)
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
    non-expansive (``certify.layer_certificate``), so its ratios are <= the
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
    cert = certify.layer_certificate(trained["chnode"]["layer"])
    values["chnode/certified_lipschitz_bound"] = cert.value
    values["chnode/max_step_size"] = cert.details["max_step_size"]
    values["chnode/invariant_max_step_size"] = cert.details.get("invariant_max_step_size", float("nan"))
    values["chnode/step_size"] = trained["chnode"]["layer"].step_size
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
    ax.axvline(cert.value, color="C2", ls=":", lw=1.5,
               label=f"CH-NODE certified bound {cert.value:.3f}")
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
    certified bounds prod_{j >= k} ||step j|| (``certify.layer_certificate``,
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
