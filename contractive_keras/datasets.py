"""The datasets' facts: names, image shape, classes, sizes, pixel statistics and
the radii of certified accuracy. Plain Python, no TensorFlow: the models, the
robustness protocols and the data pipelines (``contractive_keras.data``, which
re-exports every name here) read them from this one place.

Example:

>>> from contractive_keras import datasets
>>> datasets.INPUT_SHAPE, datasets.NORMALIZATION["mnist"]
((28, 28, 1), (0.1307, 0.3081))
"""

__all__ = ["CERTIFIED_RADII", "DATASETS", "INPUT_SHAPE", "NORMALIZATION", "NUM_CLASSES",
           "NUM_EXAMPLES", "SPLITS"]

#: The datasets this package loads (train.py's ``--dataset`` values).
DATASETS = ("mnist", "fashion_mnist")
SPLITS = ("train", "test")
#: Shape of one image as the models take it: 28 x 28 pixels, one channel.
INPUT_SHAPE = (28, 28, 1)
NUM_CLASSES = 10
NUM_EXAMPLES = {"train": 60000, "test": 10000}

#: Per-dataset pixel mean and standard deviation (of uint8 / 255), used by
#: ``data.load(..., normalize=True)``. The MNIST values are those of the
#: reference experiment (shared/DESIGN.md, "CH-NODE"); the models of
#: ``contractive_keras.models`` standardise their inputs with them for both
#: datasets.
NORMALIZATION = {
    "mnist": (0.1307, 0.3081),
    "fashion_mnist": (0.2860, 0.3530),
}

#: The L2 radii (on [0, 1] pixels) at which certified accuracy is reported:
#: MNIST's standard 1.58 (GloRo, the SoK leaderboard) and smaller ones.
CERTIFIED_RADII = {"mnist": (0.1, 0.3, 0.5, 1.0, 1.58), "fashion_mnist": (0.1, 0.25, 0.5, 1.0)}
