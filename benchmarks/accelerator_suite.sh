#!/usr/bin/env bash
# One-GPU performance run (H100 / H200 with jax[cuda] and torch preinstalled): < 8 minutes.
#
#   benchmarks/accelerator_suite.sh [--smoke] [OUT_DIR]        (default OUT_DIR: results/accelerator)
#
# 1. Training throughput (images/s), XLA FLOPs and MFU of every family at its paper input size, batch 16,
#    bf16 (benchmarks/accelerator_throughput.py; peak table and its datasheet sources there). On an H200
#    one compile takes 5-75 s (XLA's autotuning), so 8 minutes hold one batch size in one dtype for every
#    family; the sweep over batch 1, 4, 16, 64 and both dtypes is SUITE_BATCHES=1,4,16,64
#    SUITE_DTYPES=bf16,f32 with a longer run. The input pipeline's examples/s against the best 192x320
#    step rate (its dataset is built in the background while the sweep runs).
# 2. The PyTorch ratio: benchmarks/compare.py (same weights, outputs checked equal first) for every family
#    with a reference, train mode, per dtype (rows saved as measured; the time limit keeps the first few).
# 3. Paper 004's efficiency table: DS-SIDENet (low / high) next to DeepLab-v2-SID, inference at 640x480,
#    batch 1, float32, parameters and XLA FLOPs (benchmarks/ds_sidenet_speed.py).
# Writes OUT_DIR/accelerator_results.md (device name, versions, all tables) and the JSON files next to it.
#
# --smoke: CPU, tiny sizes, batch 1, one step, so the script cannot rot (tests/test_compare_smoke.py).
# Environment overrides: PYTHON (interpreter), SUITE_PRESETS (comma-separated configs presets),
# SUITE_DTYPES (bf16), SUITE_BATCHES (16), SUITE_MODELS (compare.py --models; default every family,
# cheapest first), SUITE_BUDGET_S (throughput budget when SUITE_BATCHES lists several, 200).
set -euo pipefail

SMOKE=0
if [[ "${1:-}" == "--smoke" ]]; then
  SMOKE=1
  shift
fi
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${1:-$ROOT/results/accelerator}"
PY="${PYTHON:-python}"
DTYPES="${SUITE_DTYPES:-bf16}"
# Cheapest builds first: compare.py keeps the rows finished before its time limit, and the ResNet-101 /
# VGG16 / 440M-parameter-FC families compile and convert for much longer than paper 000's nets.
MODELS="${SUITE_MODELS:-unet,scrx,ds_sidenet,semantic_md,cnn3d_up,cnn3d_s,ssegdepnet,hybridnet_a1,deeplab_sid,deeplab_vgg,hybridnet_a2,depthnet,deeplab_v2,deeplab_regression}"
mkdir -p "$OUT"
cd "$ROOT"

THROUGHPUT_ARGS=(--dtypes "$DTYPES" --out "$OUT/throughput.json")
DATA_DIR="$OUT/tfds"
COMPARE_ARGS=(--models "$MODELS" --mode train)
if [[ -n "${SUITE_PRESETS:-}" ]]; then
  THROUGHPUT_ARGS+=(--presets "$SUITE_PRESETS")
fi
if [[ "$SMOKE" == 1 ]]; then
  export JAX_PLATFORMS=cpu
  THROUGHPUT_ARGS+=(--smoke)
  COMPARE_ARGS+=(--smoke)
  SPEED_ARGS=(--smoke --models low --dtypes float32)
  DATASET=synthetic_city/tiny
  LIMIT_THROUGHPUT=3000
  LIMIT_PIPELINE=600
  LIMIT_COMPARE=1500
  LIMIT_SPEED=600
else
  THROUGHPUT_ARGS+=(--budget_s "${SUITE_BUDGET_S:-200}" --batches "${SUITE_BATCHES:-16}")
  COMPARE_ARGS+=(--repeats 5 --warmup 2)
  SPEED_ARGS=(--reps 10 --batches 1 --dtypes float32)
  DATASET=synthetic_city
  # Hard limits: 250 + 40 + 90 per dtype + 70 s + the environment lines < 8 minutes. Every script saves
  # after each point / model / row, so a run stopped by its limit still leaves what it measured (marked
  # incomplete / missing).
  LIMIT_THROUGHPUT=250
  LIMIT_PIPELINE=40
  LIMIT_COMPARE=90
  LIMIT_SPEED=70
fi
THROUGHPUT_ARGS+=(--data_dir "$DATA_DIR" --no-pipeline)

RESULTS="$OUT/accelerator_results.md"
{
  echo "# Accelerator run ($(date -u +%Y-%m-%dT%H:%M:%SZ))"
  echo
  echo '```'
  if command -v nvidia-smi > /dev/null 2>&1; then
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
  else
    echo "no nvidia-smi"
  fi
  "$PY" - << 'PYEOF'
import platform

import jax
import jaxlib

print(f"python {platform.python_version()}, jax {jax.__version__}, jaxlib {jaxlib.__version__}")
print(f"jax devices: {jax.devices()}")
try:
  import torch

  cuda = torch.cuda.get_device_name() if torch.cuda.is_available() else "no CUDA"
  print(f"torch {torch.__version__} ({cuda})")
except ImportError:
  print("torch: not installed (compare.py needs it)")
PYEOF
  echo '```'
  echo
} > "$RESULTS"

# The input pipeline's dataset builds on the CPU (about 60 s) while the GPU parts run.
JAX_PLATFORMS=cpu "$PY" -c "import sys; sys.path.insert(0, 'benchmarks'); import bench_pipeline; \
bench_pipeline.ensure_built('$DATASET', '$DATA_DIR')" > "$OUT/dataset_build.log" 2>&1 &
BUILD_PID=$!

status=0
# run_part HEADING LIMIT LOG MD TIMEOUT_NOTE CMD...: runs CMD under the time limit (output to LOG), then
# appends "## HEADINGexit RC)" and the table MD (or a pointer to LOG) to the results file.
run_part() {
  local heading="$1" limit="$2" log="$3" md="$4" timeout_note="$5"
  shift 5
  local rc=0
  timeout "$limit" "$@" > "$log" 2>&1 || rc=$?
  if [[ "$rc" != 0 ]]; then
    status=1
    tail -20 "$log" >&2
  fi
  {
    echo "## ${heading}exit $rc$([[ $rc == 124 ]] && echo ": $timeout_note"))"
    echo
    if [[ -f "$md" ]]; then
      cat "$md"
    else
      echo "no results, see $(basename "$log")"
    fi
    echo
  } >> "$RESULTS"
}

echo "== throughput" >&2
run_part "Training throughput and MFU (" "$LIMIT_THROUGHPUT" "$OUT/throughput.log" \
  "$OUT/throughput.md" "time limit" \
  "$PY" benchmarks/accelerator_throughput.py "${THROUGHPUT_ARGS[@]}"

echo "== input pipeline" >&2
wait "$BUILD_PID" || echo "dataset build failed: $OUT/dataset_build.log" >&2
run_part "Input pipeline (" "$LIMIT_PIPELINE" "$OUT/pipeline.log" "$OUT/throughput_pipeline.md" "time limit" \
  "$PY" benchmarks/accelerator_throughput.py "${THROUGHPUT_ARGS[@]/--no-pipeline/--pipeline_only}"

for dtype in ${DTYPES//,/ }; do
  echo "== compare.py $dtype" >&2
  run_part "JAX vs PyTorch ($dtype; " "$LIMIT_COMPARE" "$OUT/compare_$dtype.log" \
    "$OUT/compare_train_$dtype.md" "time limit, rows missing" \
    "$PY" benchmarks/compare.py "${COMPARE_ARGS[@]}" --dtype "$dtype" --out "$OUT"
done

echo "== ds_sidenet_speed.py" >&2
run_part "DS-SIDENet vs DeepLab-v2-SID inference (" "$LIMIT_SPEED" "$OUT/ds_sidenet_speed.log" \
  "$OUT/ds_sidenet_speed.md" "time limit, rows missing" \
  "$PY" benchmarks/ds_sidenet_speed.py "${SPEED_ARGS[@]}" --out "$OUT/ds_sidenet_speed.md"

echo "results: $RESULTS" >&2
exit "$status"
