"""train.py's Keras loop (the JAX / PyTorch trainer: NumPy batch order,
Keras's own train step) run on the TensorFlow backend, with train.py's flags.

It separates the backend from the batch order when comparing a JAX run with
a TensorFlow one (benchmarks/README.md, "Backends"):

    KERAS_BACKEND=tensorflow python scripts/keras_loop_on_tensorflow.py \\
        --model=chnode --depth=12 --seed=0 --model_dir=runs/kl_tf
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import train  # noqa: E402  (defines train.py's flags)
from contractive_keras.training.keras_loop import KerasTrainer  # noqa: E402

if __name__ == "__main__":
    train.FLAGS(["train.py"] + sys.argv[1:])
    print("final", KerasTrainer(train.make_config()).run()["final"])
