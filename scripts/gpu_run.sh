#!/usr/bin/env bash
# The GPU run of issue 30: on a host with JAX (CUDA) but no TensorFlow and no
# network, install the carried wheels offline (scripts/carry_wheels.sh made
# them), run the backends-marked test suite under JAX, train the N = 12
# CH-NODE for one epoch of MNIST with train.py, and print examples per second
# and the GPU's utilisation. It runs unchanged on a CPU with JAX (that is how
# tests/test_gpu_script.py checks it).
#
#   usage: scripts/gpu_run.sh [--wheels DIR] [--data DIR] [--out DIR]
#                             [--tests "PYTEST ARGS"] [--skip-tests]
#                             [--no-tensorflow] [-- TRAIN.PY FLAGS]
#   --wheels DIR     wheels to install offline into a private folder (default .whl;
#                    none there: use what is installed)
#   --data DIR       where mnist.npz lies (default data, as `make data` leaves it)
#   --out DIR        run folder, logs and results (default runs/gpu_run)
#   --tests ARGS     what pytest runs (default: -m backends tests)
#   --no-tensorflow  make `import tensorflow` fail (scripts/no_tensorflow), to
#                    check on a machine that has TensorFlow that nothing needs it
#   TRAIN.PY FLAGS   added after the defaults (e.g. --steps_per_epoch=3 for a smoke run)
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$PWD"
wheels=.whl data=data out=runs/gpu_run tests="-m backends tests" skip_tests=0 block_tf=0
while [ $# -gt 0 ]; do
  case "$1" in
    --wheels) wheels="$2"; shift 2 ;;
    --data) data="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --tests) tests="$2"; shift 2 ;;
    --skip-tests) skip_tests=1; shift ;;
    --no-tensorflow) block_tf=1; shift ;;
    --) shift; break ;;
    *) echo "gpu_run.sh: unknown argument $1 (see the usage at the top of the script)" >&2; exit 2 ;;
  esac
done
py="${PYTHON:-python3}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
data="$(cd "$data" && pwd)"
pythonpath="$repo"
if compgen -G "$wheels/*.whl" >/dev/null; then
  site="$out/site"
  "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$site" "$wheels"/*.whl
  pythonpath="$site:$pythonpath"
  echo "[gpu_run] installed offline: $(cd "$wheels" && ls *.whl | tr '\n' ' ')"
else
  echo "[gpu_run] no wheels in $wheels: using the installed packages"
fi
if [ "$block_tf" = 1 ]; then
  pythonpath="$repo/scripts/no_tensorflow:$pythonpath"
  export CONTRACTIVE_KERAS_NO_TENSORFLOW=1
fi
export PYTHONPATH="$pythonpath${PYTHONPATH:+:$PYTHONPATH}"
export KERAS_BACKEND=jax CONTRACTIVE_KERAS_DATA="$data" PYTHONUNBUFFERED=1
"$py" - <<'PY'
import jax, keras
print(f"[gpu_run] keras {keras.__version__} on {keras.backend.backend()}, jax {jax.__version__}, "
      f"devices: {', '.join(str(d) for d in jax.devices())}")
try:
    import tensorflow  # noqa: F401
    print("[gpu_run] TensorFlow is importable here (not needed)")
except ImportError:
    print("[gpu_run] no TensorFlow here")
PY

if [ "$skip_tests" = 0 ]; then
  start=$(date +%s)
  # shellcheck disable=SC2086
  "$py" -m pytest -q -p no:cacheprovider $tests 2>&1 | tee "$out/tests.log" | tail -n 15
  echo "[gpu_run] tests finished in $(( $(date +%s) - start )) s (log: $out/tests.log)"
fi

monitor=""
if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=name,utilization.gpu,memory.used --format=csv,noheader,nounits \
    -lms 500 > "$out/gpu_utilisation.csv" &
  monitor=$!
fi
rm -rf "$out/chnode_n12"
start=$(date +%s)
"$py" train.py --model=chnode --depth=12 --epochs=1 --dataset=mnist --data_dir="$data" \
  --model_dir="$out/chnode_n12" --verbose=2 "$@" 2>&1 | tee "$out/train.log" | tail -n 8
wall=$(( $(date +%s) - start ))
[ -n "$monitor" ] && kill "$monitor" 2>/dev/null || true
"$py" - "$out" "$wall" <<'PY'
import csv, json, os, sys
out, wall = sys.argv[1], int(sys.argv[2])
with open(os.path.join(out, "chnode_n12", "summary.json")) as f:
    summary = json.load(f)
timings = summary.get("timings", {})
rate = timings.get("examples_per_second")
result = {"wall_seconds": wall, "examples_per_second": rate,
          "test_accuracy": summary.get("final", {}).get("test_accuracy"), "backend": "jax"}
path = os.path.join(out, "gpu_utilisation.csv")
if os.path.exists(path):
    rows = [r for r in csv.reader(open(path)) if len(r) == 3]
    util = [float(r[1]) for r in rows]
    result.update(gpu=rows[0][0].strip() if rows else None,
                  gpu_utilisation_mean=sum(util) / len(util) if util else None,
                  gpu_utilisation_max=max(util) if util else None,
                  gpu_memory_used_max_mib=max(float(r[2]) for r in rows) if rows else None)
else:
    result["gpu"] = None   # no nvidia-smi: a CPU run
with open(os.path.join(out, "gpu_run.json"), "w") as f:
    json.dump(result, f, indent=1)
rate_text = "unknown" if rate is None else f"{rate:.0f}"
print(f"[gpu_run] one epoch of the N = 12 CH-NODE: {rate_text} examples/s (after the first step), "
      f"{wall} s wall, test accuracy {result['test_accuracy']}")
if result["gpu"]:
    print(f"[gpu_run] {result['gpu']}: utilisation mean {result['gpu_utilisation_mean']:.0f} %, "
          f"max {result['gpu_utilisation_max']:.0f} %, memory up to {result['gpu_memory_used_max_mib']:.0f} MiB")
else:
    print("[gpu_run] no nvidia-smi: GPU utilisation not measured (a CPU run)")
PY
