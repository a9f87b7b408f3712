#!/usr/bin/env bash
# `make demo`: run every eegfm stage that exists, end to end, on the built-in simulated corpus.
# Stages today: simulate. Each later stage (preprocess, pretrain, fine-tune, evaluate, export)
# appends itself here and reads the previous stage's output.
set -euo pipefail
PY=${1:-.venv/bin/python}
OUT=${2:-outputs/demo}
start=$(date +%s)
mkdir -p "$OUT"
echo "demo: [1/1] simulate a 4-site corpus (EDF + Kaggle HMS layout) -> $OUT/corpus"
"$PY" -m pipelines.simulate --output "$OUT/corpus" --sites 4 --subjects-per-site 2 \
  --recordings-per-subject 1 --minutes 4 --seed 0 --format both --overwrite
echo
echo "demo: finished in $(( $(date +%s) - start )) s. Outputs:"
echo "  simulated corpus   $OUT/corpus   (corpus.json describes the sites; edf/ and hms/ hold the recordings)"
