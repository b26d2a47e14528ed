#!/usr/bin/env bash
# Rebuild models/shapes_default from nothing: held-out data, the weak (caption-only) run, the
# supervised upper bound, held-out evaluation of three rows and the model card.
# Usage: bash training/ship_shapes_default.sh [RUNS_DIR]   (default: runs/)
# Every step's exit code is checked (set -e); the model folder is replaced only at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
RUNS=${1:-runs}
CONFIG=training/configs/shapes.yaml
WEAK_CMD="$PY -m training.train --config $CONFIG --out $RUNS/shapes_weak --threads 2"

$PY -m training.synth --out "$RUNS/heldout" --videos 60 --seed 7 --frames 12
$WEAK_CMD
$PY -m training.train --config $CONFIG --out "$RUNS/shapes_supervised" --supervised --threads 2
$PY -m training.model_card --weak "$RUNS/shapes_weak/model" \
    --supervised "$RUNS/shapes_supervised/model" --heldout "$RUNS/heldout" \
    --concepts config/concepts/shapes.yaml --summary "$RUNS/shapes_weak/summary.json" \
    --command "${WEAK_CMD/$PY/python}" --out models/shapes_default
