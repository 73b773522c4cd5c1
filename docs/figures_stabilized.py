"""Figure of the stabilized NODE: certified and measured Lipschitz bounds vs delta_bar."""

import math
import time

from figure_tools import figure, plain_log_axis, pyplot, report  # first: thread settings before NumPy

import numpy as np

# --- stabilized NODE: Lipschitz bound vs delta_bar ----------------------------

#: delta_bar grid of the stabilized-NODE figure and the training budget.  The
#: Euler-covering projection needs 1 + h delta_bar > (1 - a) / (1 + a), a the
#: minimum activation slope: delta_bar > -1.82 for h = 0.1, a = 0.1.
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
    (``certify.layer_certificate(layer)``: product of the per-step bounds
    max_D ||I + h D A||_2), the design bound (1 + h delta_bar)^N, exp(delta_bar)
    and two measured lower bounds, from random pairs of test states and from
    adversarial (gradient-ascent) pairs.  Middle: certified upper bound and
    ascent lower bound of delta = max_D mu_2(D A) (``stability.delta``)
    against delta_bar.  Right: test accuracy (10k images).
    """
    import keras

    from contractive_keras import certify, models, stability

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
        certificate = certify.layer_certificate(layer)
        kernel = np.asarray(layer.kernel, np.float64)
        lower = stability.delta(kernel, layer.min_slope, "lower")
        states = np.asarray(lift(x_test[: config["pair_states"]]))
        random_pairs, adversarial = empirical_lipschitz(layer, states, config["ascent_steps"], 3)
        h, steps = layer.step_size, layer.steps
        rows.append({
            "delta_bar": delta_bar, "accuracy": accuracy, "seconds": seconds,
            "certified_map": float(certificate.value), "certifies": certificate.certifies,
            "delta_upper": float(certificate.details["delta"].value),
            "delta_kind": certificate.details["delta"].kind,
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
                 f"min slope a = {layer.min_slope:g}", fontsize=10)
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
