#!/usr/bin/env bash
# The GPU check in one command: both GPU benchmarks in order, each under its own time limit,
# everything written under one folder.
#
#   bash benchmarks/gpu_session.sh [OUT_DIR]             # on one GPU; OUT_DIR defaults to benchmarks/results/
#   bash benchmarks/gpu_session.sh --dry-run [OUT_DIR]   # both dry runs on the CPU (OUT_DIR: a new temporary folder)
#
# Writes OUT_DIR/gpu_throughput_<gpu>.json (our LoRA step against a bare transformers step, one-forward
# scoring against generate(); LLaVA-1.5-7B dimensions), OUT_DIR/gpu_end_to_end_<gpu>.json (deqa train
# --recipe official and deqa score as commands against a bare step and forward; Qwen2.5-VL-3B dimensions)
# and OUT_DIR/gpu_session.log (everything printed). A dry run names its files *_dry-run.json.
#
# Needs only a python3 (or $PYTHON) with torch, transformers, peft, numpy, scipy, pandas, pillow and tqdm:
# deqa runs from this checkout (PYTHONPATH), nothing is installed or downloaded (HF_HUB_OFFLINE=1).
# Extra options for one benchmark (a second try with other settings): GPU_THROUGHPUT_ARGS, GPU_E2E_ARGS,
# e.g. GPU_E2E_ARGS="--steps 8 --save-every 4".
#
# Time: at most 5 minutes on one H100, so that a second try fits in 15 minutes of device time with the
# machine's start-up. The limits are 95 s and 175 s, each plus 10 s between SIGTERM and SIGKILL: 290 s at
# worst. The expected times come from the bare-transformers floors measured on one H200 (an H100 has the
# same dense bf16 peak, 989 TFLOP/s, and less memory bandwidth, so a little slower):
#   gpu_throughput.py, ~60 s: ~15 s imports and building the 7 B model on the GPU; 21 scoring forwards
#     and 7 generate() calls of 16 images (53.3 and 32.7 images/s: ~10 s) and 16 single-image forwards x 7
#     (~5 s); 14 training steps of 8 images (15.9 images/s: ~7 s) and 14 of 16 (16.8 images/s, 96 GiB on
#     the H200: out of memory on an 80 GB H100, a few seconds).
#   gpu_end_to_end.py, ~130 s: ~20 s imports, building and saving the 3.75 B model (7.5 GB); a bare forward
#     and generate() (~5 s) and 4 bare steps of 32 images (~10 s: about 10.6 TFLOP per image with the vision
#     tower trained in full and checkpointing, against 5.2 for the LoRA-only 25.9 images/s measured at
#     batch 16, so ~13 images/s); deqa train (~70 s: ~25 s start-up, 10 steps ~25 s, three writes of the
#     0.9 B trainable weights, one with the optimizer state, ~26 GB in all, ~20 s); deqa score of 336 images
#     (~25 s: ~15 s start-up, ~10 s scoring).
set -uo pipefail

DRY=()
case "${1:-}" in
  --dry-run) DRY=(--dry-run); shift ;;
  -h|--help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  -*) echo "error: unknown option $1 (use --dry-run, or give the output folder)" >&2; exit 2 ;;
esac
if [ $# -gt 1 ]; then
  echo "error: expected at most one output folder, got $#: $*" >&2
  exit 2
fi

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ $# -eq 1 ]; then
  OUT="$1"
elif [ ${#DRY[@]} -gt 0 ]; then
  OUT="$(mktemp -d "${TMPDIR:-/tmp}/deqa-gpu-session-dry-run.XXXXXX")"
else
  OUT="$ROOT/benchmarks/results"
fi
mkdir -p "$OUT" || { echo "error: cannot create the output folder $OUT" >&2; exit 2; }
OUT="$(cd "$OUT" && pwd)"
PY="${PYTHON:-python3}"
LOG="$OUT/gpu_session.log"

export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
if [ ${#DRY[@]} -gt 0 ]; then
  export OMP_NUM_THREADS=1
fi
cd "$ROOT" || exit 2
exec > >(tee "$LOG") 2>&1

COMMIT="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
echo "gpu_session: $(date -u '+%Y-%m-%dT%H:%M:%SZ'), commit $COMMIT${DRY[*]:+, dry run}"
echo "output folder: $OUT"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
# what the benchmarks import, looked up without importing it (seconds saved on every run)
if ! "$PY" - <<'PYTHON'; then
import importlib.metadata as md, importlib.util, sys
need = {"torch": "torch", "transformers": "transformers", "peft": "peft", "numpy": "numpy", "scipy": "scipy",
        "pandas": "pandas", "PIL": "pillow", "tqdm": "tqdm", "deqa": None}
missing = [name for name in need if importlib.util.find_spec(name) is None]
if missing:
    sys.exit(f"error: {sys.executable} cannot import {', '.join(missing)}")
print("python", sys.version.split()[0], "|", " | ".join(f"{d} {md.version(d)}" for d in need.values() if d))
PYTHON
  echo "error: set PYTHON to a python that has them" >&2
  exit 2
fi

status=0
run() {  # run LIMIT_SECONDS SCRIPT [EXTRA_OPTIONS]: one benchmark under its own time limit
  local limit="$1" script="$2" extra="${3:-}" start rc
  start=$(date +%s)
  echo
  echo "=== $script ${DRY[*]} $extra (limit ${limit} s)"
  # shellcheck disable=SC2086  # the extra options are split into words on purpose
  timeout -k 10 "$limit" "$PY" "benchmarks/$script" "${DRY[@]}" --out-dir "$OUT" $extra
  rc=$?
  case $rc in
    0) echo "=== $script: done in $(( $(date +%s) - start )) s" ;;
    124|137) echo "=== $script: stopped by its ${limit} s limit (what it wrote so far is kept)"; status=1 ;;
    *) echo "=== $script: failed with exit code $rc after $(( $(date +%s) - start )) s"; status=1 ;;
  esac
}

SESSION_START=$(date +%s)
run 95 gpu_throughput.py "${GPU_THROUGHPUT_ARGS:-}"
run 175 gpu_end_to_end.py "${GPU_E2E_ARGS:-}"
echo
echo "session: $(( $(date +%s) - SESSION_START )) s; files:"
ls -l "$OUT"/gpu_*.json 2>/dev/null
exit $status
