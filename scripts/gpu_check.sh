#!/usr/bin/env bash
# GPU check of the sgclip_ros engines, for a machine with an NVIDIA GPU (<= 8 minutes on an
# H100/H200): builds what the machine supports and checks each against torch eager fp32 on real
# crops, then prints frames/s for 1, 4 and 8 objects (ViT-B-32 x 3 towers, window 8):
#   - fp32 ONNX, and fp16 ONNX (python -m training.export --formats onnx --precision fp16:
#     fp16 weights and compute, float32 I/O) in ONNX Runtime under every provider present
#     (TensorrtExecutionProvider, CUDAExecutionProvider with onnxruntime-gpu, CPU);
#   - AOTInductor CUDA fp16;
#   - TensorRT 10.x or 11.x when `import tensorrt` works: strongly typed engines built from
#     the fp16 ONNX (python -m training.build_engine --onnx MODEL/onnx_fp16 --fp16; no
#     weak-typing flags, which TensorRT 11 removed), with the installed TensorRT's API facts
#     recorded in the JSON.
# The Python is bench/gpu_check.py.
#
#   scripts/gpu_check.sh [OUT_PREFIX] [extra bench.gpu_check args]
#       writes OUT_PREFIX.json and OUT_PREFIX.md (default: ./gpu_check.{json,md})
#   PYTHON=/path/to/python scripts/gpu_check.sh      # choose the interpreter
#   scripts/gpu_check.sh /tmp/gc --dry-run          # CPU, tiny model: checks the script itself
set -uo pipefail

OUT="${1:-gpu_check}"
shift || true
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-}"
if [[ -z "$PY" ]]; then
    if [[ -x "$REPO/.venv/bin/python" ]]; then PY="$REPO/.venv/bin/python"; else PY=python3; fi
fi
LIMIT_S="${GPU_CHECK_LIMIT_S:-470}"      # hard stop, below the 8-minute target
BUDGET_S="${GPU_CHECK_BUDGET_S:-400}"    # optional stages are skipped when this runs short
cd "$REPO" || exit 2

if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi --query-gpu=name,compute_cap,driver_version,memory.total --format=csv,noheader
else
    echo "note: nvidia-smi not found"
fi

# Preflight: name every missing Python package instead of failing half-way.
if ! "$PY" - <<'PYEOF'
import importlib.util
import sys
missing = [m for m in ("torch", "open_clip", "onnx", "onnxruntime", "safetensors", "cv2", "yaml",
                       "numpy") if importlib.util.find_spec(m) is None]
if missing:
    print(f"missing Python packages: {', '.join(missing)} (pip install torch open_clip_torch "
          "onnx onnxruntime-gpu safetensors opencv-python-headless pyyaml)", file=sys.stderr)
    sys.exit(1)
import torch
print(f"torch {torch.__version__}, CUDA available: {torch.cuda.is_available()}")
PYEOF
then
    exit 2
fi

export TORCHINDUCTOR_COMPILE_THREADS="${TORCHINDUCTOR_COMPILE_THREADS:-$(nproc)}"
start=$(date +%s)
timeout --signal=TERM --kill-after=15 "$LIMIT_S" \
    "$PY" -m bench.gpu_check --out "$OUT" --budget-s "$BUDGET_S" "$@"
rc=$?
elapsed=$(( $(date +%s) - start ))
case "$rc" in
    0) echo "gpu_check: ok in ${elapsed} s; table in ${OUT}.md and ${OUT}.json" ;;
    1) echo "gpu_check: a backend disagrees with torch (see the parity table) after ${elapsed} s" ;;
    124|137) echo "gpu_check: stopped at the ${LIMIT_S} s limit (lower GPU_CHECK_BUDGET_S)" ;;
    *) echo "gpu_check: failed with exit code $rc after ${elapsed} s" ;;
esac
exit "$rc"
