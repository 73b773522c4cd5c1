"""Where the CH-NODE step's extra time goes: the ODE block alone, part by part.

``chnode_step.py`` times the whole training step of the depth-12 MNIST
CH-NODE against the ResNet-ODE of the same depth.  This script times only
the block (forward and backward of 12 Euler steps, h = 0.5, on the
(100, 28, 28, 8) feature maps of a batch of 100: 78,400 vectors of R^8),
the layer of ``models.build("chnode", depth=12)`` against four variants in
the same process, interleaved:

* ``chnode``: the layer as shipped,
  xi' = A K^T tanh(K xi + b) + A M xi, A = J - gamma I, M = L^T L + kappa I,
  with gamma recomputed from the weights in every call (Theorem 1);
* ``chnode_fixed_gamma``: the same with gamma a constant (no float64
  eigenvalues of the 12 + 12 Gram matrices in the call);
* ``chnode_no_dissipation``: the same without the A M xi product
  (not a CH-NODE: what the Hamiltonian part alone costs);
* ``chnode_hamiltonian_only``: both removed;
* ``resnet``: the ResNet-ODE layer, xi' = tanh(K^T xi + b).

The Hamiltonian part applies two products per step (K xi and (A K^T)
tanh(.)) where the ResNet-ODE applies one, so ``chnode_hamiltonian_only /
resnet`` is the ratio that remains when everything the CH-NODE adds to its
Hamiltonian field is free.  Variants are subclasses defined here, not
package code.

Run: ``python -m benchmarks chnode_block`` (or ``make bench``); JSON in
``benchmarks/results/chnode_block.json``.
"""

import argparse
import os
import statistics
import time
import warnings

import numpy as np

from benchmarks._report import print_table, write_json

DEPTH, BATCH, CHANNELS, STEP_SIZE = 12, 100, 8, 0.5
DEFAULT_OUTPUT = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                              "results", "chnode_block.json")


def _variants():
    """name -> layer class (the shipped CHNODE and ResNetODE, and three CHNODE subclasses)."""
    import tensorflow as tf

    from contractive_keras.layers.chnode import CHNODE
    from contractive_keras.layers.resnet_ode import ResNetODE

    class FixedGamma(CHNODE):
        def _scale_and_gamma(self):
            return (tf.ones([self.weight_steps, 1, 1], self.compute_dtype),
                    tf.constant(0.1, self.compute_dtype))

    class NoDissipation(CHNODE):
        def field_closure(self):
            factor, A, _ = self._field_operators()
            dtype = self.compute_dtype
            K = tf.cast(tf.convert_to_tensor(self.K) * factor, dtype)
            stacked = (K, tf.cast(self.b, dtype)[..., None],
                       tf.matmul(A, K, transpose_b=True))

            def field(t, y, step):
                K, b, W_act = (self.select(w, step) for w in stacked)
                return tf.matmul(W_act, self.activation_fn(tf.matmul(K, y) + b))

            return field

    class HamiltonianOnly(NoDissipation):
        _scale_and_gamma = FixedGamma._scale_and_gamma

    return {"chnode": CHNODE, "chnode_fixed_gamma": FixedGamma,
            "chnode_no_dissipation": NoDissipation,
            "chnode_hamiltonian_only": HamiltonianOnly, "resnet": ResNetODE}


def prepare(layer_class, jit_compile, seed=0):
    """A compiled forward + backward of one block on a fixed batch; returns a callable."""
    import tensorflow as tf

    from contractive_keras.solvers import SolverSpec

    rng = np.random.default_rng(seed)
    x = tf.constant(rng.normal(size=(BATCH, 28, 28, CHANNELS)).astype(np.float32))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")    # the reference h = 0.5 is not certified
        kwargs = {} if layer_class.__name__ == "ResNetODE" else dict(discrete_check="ignore")
        layer = layer_class(SolverSpec("euler", steps=DEPTH, step_size=STEP_SIZE), **kwargs)
        layer.build(x.shape)

    @tf.function(jit_compile=jit_compile)
    def step(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(tf.square(layer(x)))
        return tape.gradient(loss, [x] + layer.trainable_variables)

    def run():
        for g in step(x):
            g.numpy()

    run()
    return run


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--calls_per_round", type=int, default=5)
    parser.add_argument("--output", default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    cases = {}
    for jit in (True, False):
        mode = "xla" if jit else "graph"
        for name, layer_class in _variants().items():
            cases[f"{name}_{mode}"] = prepare(layer_class, jit)
    samples = {name: [] for name in cases}
    for _ in range(args.rounds):
        for name, run in cases.items():
            start = time.perf_counter()
            for _ in range(args.calls_per_round):
                run()
            samples[name].append((time.perf_counter() - start) / args.calls_per_round)
    medians = {name: statistics.median(v) for name, v in samples.items()}
    ratios = {}
    for mode in ("xla", "graph"):
        reference = medians[f"resnet_{mode}"]
        for name in _variants():
            if name != "resnet":
                ratios[f"{name}_{mode}_over_resnet"] = medians[f"{name}_{mode}"] / reference
    results = {
        "setting": {"depth": DEPTH, "batch": BATCH, "channels": CHANNELS,
                    "step_size": STEP_SIZE, "rounds": args.rounds,
                    "calls_per_round": args.calls_per_round,
                    "tensorflow": tf.__version__, "cpus": os.cpu_count(),
                    "load_average": os.getloadavg()},
        "seconds_per_call": medians,
        "min_seconds_per_call": {name: min(v) for name, v in samples.items()},
        "ratios": ratios,
    }
    print_table("case (block forward + backward)", "ms, min ms",
                {name: (value, min(samples[name])) for name, value in medians.items()}, ratios)
    return write_json(results, args.output)


if __name__ == "__main__":
    main()
