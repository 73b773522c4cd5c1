"""Logits of every zoo/*/model.keras on 8 fixed seeded inputs (a regression reference).

    python scripts/zoo_reference_logits.py OUT.npz          # write the reference
    python scripts/zoo_reference_logits.py --check REF.npz  # compare, max abs diff must be 0

tests/layers/test_legacy_configs.py compares against the stored reference.
"""

import glob
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def zoo_paths():
    return sorted(glob.glob(os.path.join(ROOT, "zoo", "*", "model.keras")))


def entry_name(path):
    return os.path.basename(os.path.dirname(path))


def fixed_inputs(input_shape, count=8, seed=0):
    import numpy as np
    rng = np.random.default_rng(seed)
    return rng.uniform(0.0, 1.0, (count,) + tuple(input_shape[1:])).astype("float32")


def zoo_logits(path):
    import keras
    import numpy as np

    import contractive_keras  # noqa: F401  (registers the layers)

    model = keras.models.load_model(path, compile=False)
    x = fixed_inputs(model.input_shape)
    return keras.ops.convert_to_numpy(model(x, training=False))


def main(argv):
    import numpy as np
    if argv[:1] == ["--check"]:
        reference = np.load(argv[1])
        worst = 0.0
        for path in zoo_paths():
            name = entry_name(path)
            diff = float(np.max(np.abs(zoo_logits(path) - reference[name])))
            worst = max(worst, diff)
            print(f"{name}: max abs diff {diff:g}")
        missing = set(reference.files) - {entry_name(p) for p in zoo_paths()}
        if missing:
            print("missing entries:", sorted(missing))
        return 0 if worst == 0.0 and not missing else 1
    np.savez(argv[0], **{entry_name(p): zoo_logits(p) for p in zoo_paths()})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
