#!/usr/bin/env bash
# `make demo`: run every eegfm stage that exists, end to end, on the built-in simulated corpus.
# Stages: simulate -> preprocess -> pretrain -> fine-tune -> robustness -> leave-one-site-out -> predict,
# then the cross-site report of them all.
# Each reads the previous stage's output.
set -euo pipefail
PY=${1:-.venv/bin/python}
OUT=${2:-outputs/demo}
start=$(date +%s)
mkdir -p "$OUT"
# 36 patients, 6 minutes each: about 270 labeled windows. People differ several-fold in scalp
# amplitude and some have polymorphic slowing, so the model cannot read a pattern from amplitude
# or delta power alone; with 24 such patients fine-tuned from three seeds it called 69-87 % of real
# resting eegmat windows Other, with 36, 77-91 % (and the eyes-open eegmmi runs 43-80 %).
echo "demo: [1/7] simulate a 4-site corpus (EDF + Kaggle HMS layout) -> $OUT/corpus"
"$PY" -m eegfm.simulate --output "$OUT/corpus" --sites 4 --subjects-per-site 9 \
  --recordings-per-subject 1 --minutes 6 --seed 0 --format both --overwrite --quiet
# The demo keeps its own pseudonym key next to its outputs; real runs keep theirs private.
[ -f "$OUT/pseudonym.key" ] || "$PY" -c "from eegfm.pipelines.privacy.deid import create_key; create_key('$OUT/pseudonym.key')"
echo "demo: [2/7] preprocess both layouts with Beam (DirectRunner, 2 worker processes) -> $OUT/tfrecords"
rm -rf "$OUT/tfrecords"
"$PY" -m eegfm.pipelines.job.preprocess --input "$OUT/corpus/edf" --input "$OUT/corpus/hms" \
  --output "$OUT/tfrecords" --pseudonym_key_file "$OUT/pseudonym.key" \
  --runner DirectRunner --direct_running_mode multi_processing --direct_num_workers 2 \
  --report  # the run's data quality across sites, one picture: tfrecords/report.png
echo "demo: [3/7] pretrain the tiny encoder (masked reconstruction + contrastive channels) -> $OUT/pretrain"
rm -rf "$OUT/pretrain"
# 150 steps: over 7 pseudonym keys the held-out subjects' masked reconstruction went 1.0 -> 0.57-0.95
# (60 steps: 0.84-0.94, and 1.02 once: the decay ended before the model generalised).
"$PY" -m eegfm.training.pretrain --data "$OUT/tfrecords" --output "$OUT/pretrain" --config cpu-tiny \
  --max_steps "${DEMO_PRETRAIN_STEPS:-150}" --set optim.warmup_steps=5 --set log_every=10
"$PY" - "$OUT/pretrain/metrics.jsonl" <<'PYEOF'
import json, sys
val = [row for row in map(json.loads, open(sys.argv[1])) if "val/loss" in row]
if len(val) >= 2:  # cpu-tiny holds out 10% of the subjects; their loss before and after pretraining
    a, b = val[0], val[-1]
    print(f"demo: pretraining loss on held-out subjects' windows {a['val/loss']:.3f} at step {a['step']} -> "
          f"{b['val/loss']:.3f} at step {b['step']} (masked reconstruction {a['val/reconstruction_loss']:.3f} -> "
          f"{b['val/reconstruction_loss']:.3f})")
PYEOF
SHARED=${EEGFM_SHARED_DATA:-../shared/data}
REAL_DATA=() REAL_BACKGROUND=()
if [ -d "$SHARED/eegmat" ]; then
  # Real EEG in six-class training, so the model learns the patterns, not the simulator's background:
  # the five patterns planted into eegmat people 00-13 (1-5x amplitude, the simulator's votes), and
  # people 14-27 whole as Other. People 28-31 and eegmmi's are never trained on: the checks below.
  echo "demo: [4a/7] real EEG for the six classes: patterns planted in 14 eegmat people -> $OUT/planted"
  rm -rf "$OUT/planted" "$OUT/planted_tfrecords" "$OUT/background"
  "$PY" -m eegfm.simulate.planted --background "$SHARED/eegmat" --output "$OUT/planted" --seed 0 \
    --per-recording 4 --gain-range 1 5 --person 'Subject(\d+)_' \
    --exclude 'Subject1[4-9]*' --exclude 'Subject2*' --exclude 'Subject3*'
  "$PY" -m eegfm.pipelines.job.preprocess --input "$OUT/planted" --output "$OUT/planted_tfrecords" \
    --pseudonym_key_file "$OUT/pseudonym.key"
  echo "demo: [4b/7] real EEG for the six classes: 14 other eegmat people and an ICU recording, all Other -> $OUT/background"
  "$PY" -m eegfm.pipelines.job.preprocess --background hms6 --window_seconds 50 --output "$OUT/background" \
    --input "$SHARED"/eegmat/Subject1[4-9]_*.edf "$SHARED"/eegmat/Subject2[0-7]_*.edf "$SHARED/hms/train_eegs" \
    --pseudonym_key_file "$OUT/pseudonym.key"
  REAL_DATA=("$OUT/planted_tfrecords") REAL_BACKGROUND=(--background "$OUT/background")
fi
echo "demo: [4/7] fine-tune on the six-class expert votes, held-out patients for validation -> $OUT/finetune"
rm -rf "$OUT/finetune"
# 30 epochs, stopped by the validation patients: cpu-tiny's 10 stopped the tiny model before it told
# the patterns from the background (real resting EEG then read as GPD). Gains of 1-5x on every
# training window: children's EEG is two to five times an adult's, and a gain on the real
# background alone would make loudness a cue for Other.
"$PY" -m eegfm.training.finetune --pretrained "$OUT/pretrain/model" --data "$OUT/tfrecords" "${REAL_DATA[@]}" \
  "${REAL_BACKGROUND[@]}" --task hms6 --output "$OUT/finetune" --config cpu-tiny --set epochs=30 \
  --set early_stopping_patience=6 --set 'loader.augment.amplitude_scale=[1, 5]'
"$PY" - "$OUT/finetune/eval.json" <<'PYEOF'
import json, sys
report = json.load(open(sys.argv[1]))
val, calibrated, groups = report["val"], report["val_calibrated"], report["groups"]
print(f"demo: {groups['val']} validation patients, held out of training ({val['n_windows']} windows): KL "
      f"{val['kl']:.3f} vs {val['baseline_kl']:.3f} for the class prior ({val['kl_vs_baseline']:.2f}x; "
      f"{calibrated['kl']:.3f} after temperature scaling); top-class accuracy {val['accuracy']:.2f} vs "
      f"{val['baseline_accuracy']:.2f}; calibration error (ECE) {val['ece']:.3f}, {calibrated['ece']:.3f} "
      f"after scaling, vs {val['baseline_ece']:.3f} (finetune/calibration.png). These patients also chose "
      f"the checkpoint and the temperature, so "
      f"the numbers flatter the model, and with so few of them they vary with the split (the pseudonym key "
      f"decides it); --set test_fraction=0.2 holds out patients only the final model sees.")
PYEOF
echo "demo: [5/7] robustness: the fine-tuned model's validation patients under noise, gain, lost electrodes, mains"
# --uncalibrated: the logits as trained (with a handful of validation patients the fitted
# temperature can flatten every prediction, and then no perturbation shows)
"$PY" -m eegfm.evaluation.robustness --run "$OUT/finetune" --data "$OUT/tfrecords" --uncalibrated
echo "demo: [6/7] leave-one-site-out: each site in turn unseen in fine-tuning, its patients the test -> $OUT/loso"
rm -rf "$OUT/loso"
"$PY" -m eegfm.evaluation.loso --pretrained "$OUT/pretrain/model" --data "$OUT/tfrecords" --task hms6 \
  --output "$OUT/loso" --config cpu-tiny --set epochs=4 --wandb disabled
"$PY" - "$OUT/loso/loso.json" "$OUT/finetune/eval.json" <<'PYEOF'
import json, sys
loso, within = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))["val"]
vs = loso["summary"]["vs_baseline"]
line = (f"demo: on a site it never trained on the model's KL is {vs['mean_ratio']:.2f}x the class prior's on "
        f"average (worst site {vs['worst_ratio']:.2f}x), against {within['kl_vs_baseline']:.2f}x for held-out "
        f"patients of the sites it trained on")
if vs["mean_ratio"] > within["kl_vs_baseline"] + 0.05:
    line += (": the simulated hospitals differ in montage, reference, amplifier, artifacts and class mix, as real "
             "ones do, and a random split of patients hides that")
else:
    line += ("; with a few patients per split both numbers vary with the pseudonym key, and a single split says "
             "little about the next hospital")
print(line + ". loso.png draws it site by site.")
PYEOF
"$PY" - "$OUT/tfrecords" "$OUT/loso/loso.json" <<'PYEOF'
import json, sys
from pathlib import Path
from statistics import mean
from eegfm.core.tasks import FINETUNE_TASKS
from eegfm.evaluation.comparison.simulated import baseline_folds
from eegfm.evaluation.comparison.windows import load_windows
sites = json.load(open(sys.argv[2]))["sites"]
windows = load_windows(sys.argv[1], FINETUNE_TASKS["hms6"])
floor = baseline_folds(windows, sorted(sites), ["band_power_lr"], Path(sys.argv[2]).parent)["band_power_lr"]
model = mean(fold["test"]["kl"] / fold["test"]["baseline_kl"] for fold in sites.values())
print(f"demo: the same folds, KL against the class prior's: eegfm {model:.2f}x, log band powers + logistic "
      f"regression {mean(floor[s]['kl_vs_baseline'] for s in sites):.2f}x (make benchmark: both over seeds)")
PYEOF
echo "demo: [7/7] predict: the fine-tuned model on one hospital's raw EDF files, as new recordings arrive (ONNX Runtime) -> $OUT/predictions"
rm -rf "$OUT/predictions"
"$PY" -m eegfm.serving.predict --model "$OUT/finetune" --input "$OUT/corpus/edf/icu" --output "$OUT/predictions" \
  --backend onnx
# Real EEG from people (../shared/data, when it is beside the checkout) the model never trained on:
# what it says of healthy adults at rest, eyes closed and open, one line per corpus and eye state;
# then seizures planted into held-out real backgrounds at adult and child amplitude.
if [ -d "$SHARED/eegmat" ]; then
  echo "demo: real EEG: the model on recordings from people it did not train on ($SHARED) -> $OUT/real_eeg"
  "$PY" -m eegfm.evaluation.corpus_check --model "$OUT/finetune" --output "$OUT/real_eeg" --prefix "demo: real EEG, " \
    --corpus "eegmat rest, people 28-31 (eyes closed)=$SHARED/eegmat/Subject2[89]_1.edf" \
    --corpus "eegmat rest, people 28-31 (eyes closed)=$SHARED/eegmat/Subject3[01]_1.edf" \
    --corpus "eegmat arithmetic, people 28-31 (eyes closed)=$SHARED/eegmat/Subject2[89]_2.edf" \
    --corpus "eegmat arithmetic, people 28-31 (eyes closed)=$SHARED/eegmat/Subject3[01]_2.edf" \
    --corpus "eegmmi (a healthy adult, motor runs, eyes open)=$SHARED/eegmmi" \
    --corpus "nihonkohden (a clinical export, no label)=$SHARED/formats/nihonkohden"
  for gain in 1 3 5; do
    "$PY" -m eegfm.evaluation.planted_seizures --model "$OUT/finetune" --recordings 16 --gain "$gain" \
      --data "$SHARED"/eegmat/Subject2[89]_1.edf "$SHARED"/eegmat/Subject3[01]_1.edf --offset_s 20 60 100 140 \
      --output "$OUT/real_eeg/planted_gain$gain" > /dev/null
    "$PY" - "$OUT/real_eeg/planted_gain$gain/planted_seizures.json" "$gain" <<'PYEOF'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"demo: real EEG, seizures planted in held-out people's rest at {sys.argv[2]}x: {r['ictal_windows_scored']} of "
      f"{r['recordings']} ictal windows scored, P(Seizure) {r['p_seizure_ictal']:.2f} ictal vs "
      f"{r['p_seizure_before']:.2f} before (AUROC {r['auroc']:.2f})")
PYEOF
  done
fi
echo "demo: the cross-site report: every stage's outputs in one self-contained HTML file -> $OUT/report.html"
"$PY" -m eegfm.evaluation.report "$OUT" --output "$OUT/report.html"
echo
echo "demo: finished in $(( $(date +%s) - start )) s. Outputs:"
echo "  simulated corpus   $OUT/corpus      (corpus.json: sites; edf/ and hms/: recordings; truth.jsonl: ground truth)"
echo "  TFRecords          $OUT/tfrecords   (site-*/part-*.tfrecord, manifest.json, quarantine.jsonl, artifact_ae.npz, report.png)"
echo "  pretrained encoder $OUT/pretrain     (model/: Hugging Face format; checkpoints/, metrics.jsonl, curves.png, wandb/ offline run)"
echo "  fine-tuned model   $OUT/finetune     (model/, eval.json: held-out KL vs the class-prior baseline; confusion.png, sites.png, calibration.png, curves.png;
                                      robustness/: robustness.json and .png, its KL under perturbed EEG)"
echo "  leave-one-site-out $OUT/loso         (loso.json: each site's test KL vs the class prior's, mean and worst; loso.png; <site>/: each fold's run)"
echo "  predictions        $OUT/predictions  (predictions.csv: a row per 10 s window; recordings.json; timelines/: each recording's probabilities over time)"
echo "  cross-site report  $OUT/report.html  (one file: data, curves, per-site CIs, shift; report.md + report_files/, report.json)"
echo "  real EEG           $OUT/real_eeg     (corpus_check.json: the model on each real corpus beside the project)"
echo "  serve it over HTTP: $PY -m eegfm.serving.server --model $OUT/finetune --no-auth  (then POST an EDF to /v1/predict?filename=x.edf)"
echo "demo: the report: $OUT/report.html"
