"""Checkpoints without TensorFlow: Keras weight files, the optimizer state and the position.

``Checkpoints(directory)`` saves, under ``directory/ckpt-<n>/``:

* ``model.weights.h5``: ``model.save_weights`` (every model variable);
* ``optimizer.npz``: every optimizer variable (its step counter, moments and
  loss-scale state), in ``optimizer.variables`` order, keyed by position (their
  paths beside them, for reading; restoring checks the shapes);
* ``position.json``: the position in the data (``epoch``, ``step_in_epoch``)
  and the optimizer step ``n``.

A checkpoint is written to a temporary directory and renamed into place, then
``directory/latest.json`` (the index, itself replaced atomically) names it, so
a ``kill -9`` at any moment leaves the last complete checkpoint in place; the
last ``max_to_keep`` are kept. ``training.keras_loop`` uses it on JAX and
PyTorch (TensorFlow runs keep ``tf.train.CheckpointManager``).
"""

import json
import os
import shutil
import tempfile

import numpy as np

from contractive_keras import backend

#: The index file of a checkpoint directory (``config.check_paths`` looks for it).
INDEX = "latest.json"


class Checkpoints:
    """Saves and restores a model, its optimizer and a position, atomically."""

    def __init__(self, directory, max_to_keep=3):
        self.directory = directory
        self.max_to_keep = int(max_to_keep)

    def _index(self):
        path = os.path.join(self.directory, INDEX)
        if not os.path.isfile(path):
            return {"checkpoints": []}
        with open(path, encoding="utf-8") as f:
            return json.load(f)

    def latest(self):
        """The path of the latest complete checkpoint, or None."""
        names = self._index()["checkpoints"]
        return os.path.join(self.directory, names[-1]) if names else None

    def save(self, number, model, optimizer, position):
        """Writes checkpoint ``ckpt-<number>``; returns its path."""
        os.makedirs(self.directory, exist_ok=True)
        name = f"ckpt-{int(number)}"
        tmp = tempfile.mkdtemp(dir=self.directory, prefix=".tmp_ckpt_")
        try:
            model.save_weights(os.path.join(tmp, "model.weights.h5"))
            arrays = {str(i): backend.to_numpy(v) for i, v in enumerate(optimizer.variables)}
            np.savez(os.path.join(tmp, "optimizer.npz"),
                     paths=np.array([v.path for v in optimizer.variables]), **arrays)
            with open(os.path.join(tmp, "position.json"), "w", encoding="utf-8") as f:
                json.dump({**{k: int(v) for k, v in position.items()}, "n": int(number)}, f)
            final = os.path.join(self.directory, name)
            if os.path.exists(final):
                shutil.rmtree(final)
            os.replace(tmp, final)
        finally:
            if os.path.exists(tmp):
                shutil.rmtree(tmp)
        names = [n for n in self._index()["checkpoints"] if n != name] + [name]
        kept, dropped = names[-self.max_to_keep:], names[:-self.max_to_keep]
        index = os.path.join(self.directory, INDEX)
        with open(f"{index}.tmp", "w", encoding="utf-8") as f:
            json.dump({"checkpoints": kept}, f)
        os.replace(f"{index}.tmp", index)
        for old in dropped:
            shutil.rmtree(os.path.join(self.directory, old), ignore_errors=True)
        return final

    @staticmethod
    def restore(path, model, optimizer):
        """Loads checkpoint ``path`` into ``model`` and ``optimizer`` (built);
        returns its position dict."""
        model.load_weights(os.path.join(path, "model.weights.h5"))
        with np.load(os.path.join(path, "optimizer.npz"), allow_pickle=False) as arrays:
            saved = [tuple(arrays[str(i)].shape) for i in range(len(arrays["paths"]))]
            mine = [tuple(v.shape) for v in optimizer.variables]
            if saved != mine:   # the paths carry per-process name counters: compare shapes
                raise ValueError(f"checkpoint {path}: optimizer variable shapes {saved} do not "
                                 f"match this optimizer's {mine}")
            for i, variable in enumerate(optimizer.variables):
                variable.assign(arrays[str(i)])
        with open(os.path.join(path, "position.json"), encoding="utf-8") as f:
            return json.load(f)
