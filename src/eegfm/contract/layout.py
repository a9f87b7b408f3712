"""Every file one stage writes and another reads, by name: the folders the stages exchange.

A **preprocessed data folder** (``eegfm-preprocess --output``): ``site-*/part-*.tfrecord`` shards,
:data:`MANIFEST` (counts, per-shard checksums, the preprocessing it ran), :data:`QUARANTINE` (each
input it could not use, and why) and, when it fitted one, :data:`ARTIFACT_MODEL`.

A **training run folder** (``eegfm-pretrain`` / ``eegfm-finetune --output``): :data:`MODEL_DIR`
(Hugging Face format, with :data:`PREPROCESS_SPEC` and the data's :data:`ARTIFACT_MODEL` beside
the weights), :data:`RUN` (the resolved configuration and the data it read), :data:`METRICS` (one
JSON object per logged step) and, after fine-tuning, :data:`EVAL` (the held-out evaluation).
"""

from __future__ import annotations

MANIFEST = "manifest.json"
QUARANTINE = "quarantine.jsonl"
ARTIFACT_MODEL = "artifact_ae.npz"
RUN = "run.json"
METRICS = "metrics.jsonl"
EVAL = "eval.json"
PREPROCESS_SPEC = "preprocess.json"
MODEL_DIR = "model"
FUSED_MODEL = "fused.json"  # a fused model folder's description (``model.fused``): the parts and weights
