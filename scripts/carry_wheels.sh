#!/usr/bin/env bash
# Downloads, here, the wheels that the JAX path of contractive_keras needs on a
# GPU host that has JAX, CUDA and Python 3.12 but no TensorFlow and no network
# (what is already there: numpy, absl-py, h5py, rich, ml-dtypes, packaging,
# tensorboard, pytest, pytest-xdist, hypothesis). scripts/gpu_run.sh installs
# them there, offline. Pinned to the versions the project is tested with.
#   usage: scripts/carry_wheels.sh [DEST]   (default .whl, ignored by git)
set -euo pipefail
cd "$(dirname "$0")/.."
dest="${1:-.whl}"
mkdir -p "$dest"
platforms=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64
           --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp "${platforms[@]}" -d "$dest" \
  keras==3.15.1 namex==0.1.0 optree==0.20.0
ls -l "$dest"
