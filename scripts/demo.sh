#!/usr/bin/env bash
# `make demo`: run every eegfm stage that exists, end to end, on the built-in simulated corpus.
# Stages today: simulate -> preprocess. Later stages (pretrain, fine-tune, evaluate, export)
# append themselves here and read the previous stage's output.
set -euo pipefail
PY=${1:-.venv/bin/python}
OUT=${2:-outputs/demo}
start=$(date +%s)
mkdir -p "$OUT"
echo "demo: [1/2] simulate a 4-site corpus (EDF + Kaggle HMS layout) -> $OUT/corpus"
"$PY" -m pipelines.simulate --output "$OUT/corpus" --sites 4 --subjects-per-site 2 \
  --recordings-per-subject 1 --minutes 4 --seed 0 --format both --overwrite --quiet
# The demo keeps its own pseudonym key next to its outputs; real runs keep theirs private.
[ -f "$OUT/pseudonym.key" ] || "$PY" -c "from pipelines.deid import create_key; create_key('$OUT/pseudonym.key')"
echo "demo: [2/2] preprocess both layouts with Beam (DirectRunner, 2 worker processes) -> $OUT/tfrecords"
rm -rf "$OUT/tfrecords"
"$PY" -m pipelines.preprocess --input "$OUT/corpus/edf" --input "$OUT/corpus/hms" \
  --output "$OUT/tfrecords" --pseudonym_key_file "$OUT/pseudonym.key" \
  --runner DirectRunner --direct_running_mode multi_processing --direct_num_workers 2
echo
echo "demo: finished in $(( $(date +%s) - start )) s. Outputs:"
echo "  simulated corpus   $OUT/corpus      (corpus.json: sites; edf/ and hms/: recordings; truth.jsonl: ground truth)"
echo "  TFRecords          $OUT/tfrecords   (site-*/part-*.tfrecord, manifest.json, quarantine.jsonl, artifact_ae.npz)"
