"""The eegfm preprocessing job: raw EEG recordings -> de-identified, harmonized, 256 Hz, artifact-
scored windows in snappy TFRecords, with a manifest that accounts for every input.

    python -m eegfm.pipelines.preprocess --input DIR_OR_GLOB [...] --output OUT [beam options]

Stages, each one composite PTransform:

1. `ProcessRecordings`: a thin DoFn around `pipelines.process.process_recording` (read in bounded
   chunks, de-identify, harmonize to the 19 10-20 channels, resample to 256 Hz, notch + band-pass,
   cut windows, score quality rules). Each recording's encoded windows go to a spill file
   (`pipelines.spill`); only their features and scores travel on. Bad inputs become tagged
   dead-letter outcomes, never crashes.
2. `ScoreArtifacts`: fits the unsupervised artifact autoencoder on a deterministic sample of
   windows from the training sites (or loads `--artifact_model`), saves it with the output, and
   scores every recording's windows from their features (rejecting those over the limit).
3. `WriteWindows`: plans each site's shards from the recordings alone (ordered by recording
   pseudonym; a shard holds at most `--max_shard_mb`, or `--num_shards` fixes the count), then
   writes each shard from the spill files with the scores written into the records: the same
   inputs give the same files on every runner and worker count. An earlier run's shards in OUTPUT
   are refused on the launcher, or deleted with `--overwrite`: readers take every shard there.
4. `WriteReports`: `manifest.json` (config, channel order, quality names, counts, every input with
   its outcome, shards) and `quarantine.jsonl` (one line per rejected input or window); removes
   the spill folder.

Runs unchanged on the DirectRunner (in_memory or multi_processing) and on Dataflow
(`--runner DataflowRunner --setup_file ./setup.py ...`).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import copy
import gc
import glob
import json
import math
import os
import sys
import tempfile
import time
import uuid

import apache_beam as beam
import numpy as np
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions

from eegfm.pipelines import s3_anonymous  # noqa: F401 - registers --s3_anonymous, patches Beam's S3 client
from eegfm.pipelines import schema
from eegfm.pipelines.artifact_ae import ArtifactAutoencoder
from eegfm.pipelines.blas import single_threaded_blas
from eegfm.pipelines.channels import CAP_LAYOUTS
from eegfm.core.config import ConfigError, check_int, user_path
from eegfm.pipelines.deid import MIN_KEY_BYTES, PseudonymKeyError, create_key, load_key, pseudonym, warn_if_shared
from eegfm.pipelines.duplicates import DropDuplicates
from eegfm.pipelines.features import FEATURE_NAMES
from eegfm.core.logs import get_logger, setup_logging
from eegfm.core.stores import (
    STORE_ERRORS,
    check_gcs_credentials,
    check_reachable,
    check_s3_credentials,
    delete,
    discard_folders,
    fix_s3_empty_uploads,
    match_below,
    match_path,
    remove_folder,
    storage_error,
)
from eegfm.pipelines.process import (
    RECORD_QUALITY_NAMES,
    Outcome,
    PreprocessConfig,
    RejectedWindow,
    Window,
    process_recording,
)
from eegfm.pipelines.pipeline_args import beam_option_names, describe, unrecognized
from eegfm.pipelines.progress import ProgressReporter, record_done
from eegfm.pipelines.quality import QualityConfig
from eegfm.pipelines.redact import PathRedactor, RunRedaction, kept_folders, redacted_events, related_paths
from eegfm.pipelines.report import REPORT_NAME, write_report
from eegfm.core.run_lock import hold_run_lock, release_run_lock
from eegfm.pipelines.sinks import (
    DEFAULT_MAX_SHARD_BYTES,
    FILE_NAME_SUFFIX,
    SITE_FILE_PREFIX,
    WriteSnappyTFRecordsBySite,
)
from eegfm.pipelines.datasets import DATASETS, TASK_CLASSES, Ignored, SourceItem, discover
from eegfm.pipelines.spill import SpilledRecording, SpillWriter, sample_items, score_spill, spill_path
from eegfm.pipelines.state_sampler import shorten_state_sampling
from eegfm.pipelines.warm_workers import quiet_worker_threads, worker_command, zygote_for

log = get_logger("preprocess")
DEFAULT_KEY_FILE = os.path.join(os.path.expanduser("~"), ".config", "eegfm", "pseudonym.key")
AE_MODEL_NAME = "artifact_ae.npz"


# --------------------------------------------------------------------------- stage 1: process
class ProcessRecordingFn(beam.DoFn):
    """Thin wrapper: each recording's windows to a spill file (main output: its
    ``SpilledRecording``), rejected windows and outcomes to tagged outputs."""

    REJECTED, OUTCOME = "rejected", "outcome"

    def __init__(self, key_file: str, config: PreprocessConfig, spill_dir: str, progress: str | None = None,
                 redact: tuple[str, ...] | None = None):
        self._key_file, self._config, self._spill_dir = key_file, config, spill_dir
        self._progress = progress  # pipelines.progress's file on a local run, else None
        self._redact = redact  # --redact_paths: the folders whose names stay (redact.kept_folders)
        self._config_hash = config.config_hash()
        self._windows = Metrics.counter("eegfm", "windows")
        self._rejected = Metrics.counter("eegfm", "rejected_windows")
        self._quarantined = Metrics.counter("eegfm", "quarantined_inputs")

    def setup(self):
        # Read on the worker, so a gs:// key never travels inside the pipeline graph.
        self._key = load_key_any(self._key_file)
        self._redactor = PathRedactor(self._key, self._redact is not None, keep=self._redact or ())
        self._blas = single_threaded_blas()  # the runner runs a worker per core already

    def teardown(self):
        self._blas.__exit__(None, None, None)

    def process(self, item: SourceItem):
        spill = SpillWriter(spill_path(self._spill_dir, item.path))
        redacted = redacted_events(item, self._redactor)
        try:
            for event in map(redacted, process_recording(item, self._key, self._config, self._config_hash)):
                if isinstance(event, Window):
                    self._windows.inc()
                    spill.add(event)
                elif isinstance(event, RejectedWindow):
                    self._rejected.inc()
                    yield beam.pvalue.TaggedOutput(self.REJECTED, event)
                else:
                    spill.close()
                    if event.status != "processed":  # failed part-way: none of its windows go out
                        self._windows.dec(len(spill))
                        spill.discard()
                    elif len(spill):
                        yield spill.recording(event.source)
                    if event.status != "processed":
                        self._quarantined.inc()
                        log.warning("quarantined %s at %s: %s", event.source, event.stage, event.reason)
                    record_done(self._progress, event.eeg_seconds)
                    yield beam.pvalue.TaggedOutput(self.OUTCOME, event)
        finally:
            spill.close()


class ProcessRecordings(beam.PTransform):
    def __init__(self, key_file: str, config: PreprocessConfig, spill_dir: str, progress: str | None = None,
                 redact: tuple[str, ...] | None = None):
        super().__init__()
        self._key_file, self._config, self._spill_dir = key_file, config, spill_dir
        self._progress, self._redact = progress, redact

    def expand(self, items):
        return (
            items
            | "Reshuffle" >> beam.Reshuffle()  # spread recordings over workers
            | "Process" >> beam.ParDo(ProcessRecordingFn(self._key_file, self._config, self._spill_dir,
                                                        self._progress, self._redact)).with_outputs(
                ProcessRecordingFn.REJECTED, ProcessRecordingFn.OUTCOME, main="recordings")
        )


def load_key_any(path: str) -> bytes:
    """`deid.load_key` for local paths and Beam filesystems (gs://, s3://)."""
    if "://" not in path:
        return load_key(path)
    try:
        with FileSystems.open(path) as fh:
            key = fh.read().strip()
    except STORE_ERRORS as err:
        raise PseudonymKeyError(f"--pseudonym_key_file {path}: cannot read it ({storage_error(err)})") from None
    if len(key) < MIN_KEY_BYTES:
        raise PseudonymKeyError(f"--pseudonym_key_file {path}: expected at least {MIN_KEY_BYTES} bytes of secret; "
                                f"got {len(key)}")
    return key


# --------------------------------------------------------------------------- stage 2: artifacts
def _fit_autoencoder(sample: list[tuple[str, np.ndarray]], seed: int):
    model = ArtifactAutoencoder(seed=seed)
    if len(sample) < model.min_fit_windows:
        log.warning("artifact autoencoder not fitted: %s, fewer than the %d it needs; windows are scored by "
                    "the rules only", _count(len(sample), "training window"), model.min_fit_windows)
        return None
    features = np.stack([f for _, f in sorted(sample, key=lambda kv: kv[0])])
    with single_threaded_blas():  # as where it scores: a threaded BLAS rounds differently
        return model.fit_features(features, n_chans=schema.N_CHANS)


def _save_model(model, path: str) -> str:
    """Write the fitted model next to the records; '' when none was fitted (too few windows)."""
    if model is None:
        return ""
    with tempfile.TemporaryDirectory() as tmp:
        model.save(os.path.join(tmp, AE_MODEL_NAME))
        for produced in sorted(os.listdir(tmp)):
            with open(os.path.join(tmp, produced), "rb") as src, FileSystems.create(
                FileSystems.join(os.path.dirname(path), produced)
            ) as dst:
                dst.write(src.read())
    return os.path.basename(path)


def _load_model(path: str) -> ArtifactAutoencoder:
    if "://" not in path:
        return ArtifactAutoencoder.load(path)
    with tempfile.TemporaryDirectory() as tmp:
        base = os.path.splitext(path)[0]
        for suffix in (".npz", ".json"):
            if FileSystems.exists(base + suffix):
                with FileSystems.open(base + suffix) as src, open(os.path.join(tmp, "m" + suffix), "wb") as dst:
                    dst.write(src.read())
        return ArtifactAutoencoder.load(os.path.join(tmp, "m.npz"))


class ScoreSpillFn(beam.DoFn):
    """Scores a recording's spilled windows with the autoencoder (from their features; the spill file
    is read only when the shards are written) and emits its kept windows as a ``ScoredSpill``;
    windows over ``max_artifact_score`` go to REJECTED, and every kept window's counts to COUNTED."""

    REJECTED, COUNTED = "rejected", "counted"

    def __init__(self, quality: QualityConfig):
        self._max_score = quality.max_artifact_score

    def setup(self):
        self._blas = single_threaded_blas()

    def teardown(self):
        self._blas.__exit__(None, None, None)

    def process(self, spilled: SpilledRecording, model):
        scores = None if model is None else model.score_features(spilled.features)
        kept, rejected = score_spill(spilled, scores, self._max_score)
        for event in rejected:
            yield beam.pvalue.TaggedOutput(self.REJECTED, event)
        for i in kept.kept:
            yield beam.pvalue.TaggedOutput(self.COUNTED, (
                spilled.site, spilled.subject, spilled.labels[i], int(spilled.n_times[i]), spilled.corpus_split))
        if len(kept.kept):
            yield kept


class ScoreArtifacts(beam.PTransform):
    """Fit (or load) the artifact autoencoder on training-site windows, then score every window and
    encode it for the sink."""

    def __init__(self, output: str, config: PreprocessConfig, *, model_path: str | None,
                 enabled: bool, train_sites: tuple[str, ...], sample_size: int, seed: int = 0):
        super().__init__()
        self._output, self._config = output, config
        self._model_path, self._enabled = model_path, enabled
        self._train_sites, self._sample_size, self._seed = train_sites, sample_size, seed

    def expand(self, recordings):
        pipeline = recordings.pipeline
        # `self.model_used`: what the manifest records: the saved file's name, the reused
        # model's path, or '' when no autoencoder scored the windows.
        if not self._enabled:
            model = pipeline | "NoModel" >> beam.Create([None])
            self.model_used = pipeline | "NoModelUsed" >> beam.Create([""])
        elif self._model_path:
            path = self._model_path
            model = pipeline | "ModelPath" >> beam.Create([path]) | "LoadModel" >> beam.Map(_load_model)
            self.model_used = pipeline | "ModelReused" >> beam.Create([path])
        else:
            train = frozenset(self._train_sites)
            sample = (
                recordings
                | "Features" >> beam.FlatMap(sample_items, train)
                # Deterministic sample: the windows with the smallest keyed hash, so every runner
                # and worker count fits the same model.
                | "Sample" >> beam.combiners.Top.Of(self._sample_size, key=lambda kv: kv[0], reverse=True)
            )
            model = sample | "Fit" >> beam.Map(_fit_autoencoder, self._seed)
            target = FileSystems.join(self._output, AE_MODEL_NAME)
            self.model_used = model | "SaveModel" >> beam.Map(_save_model, target)
        return recordings | "Score" >> beam.ParDo(
            ScoreSpillFn(self._config.quality), beam.pvalue.AsSingleton(model)
        ).with_outputs(ScoreSpillFn.REJECTED, ScoreSpillFn.COUNTED, main="kept")


# --------------------------------------------------------------------------- stage 3: write
class WriteWindows(beam.PTransform):
    def __init__(self, output: str, sites: tuple[str, ...], num_shards: int,
                 max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES):
        super().__init__()
        self._output, self._sites, self._num_shards = output, sites, num_shards
        self._max_shard_bytes = max_shard_bytes

    def expand(self, kept):
        return kept | "WriteBySite" >> WriteSnappyTFRecordsBySite(
            self._output, self._sites, self._num_shards, max_shard_bytes=self._max_shard_bytes)


# --------------------------------------------------------------------------- stage 4: reports
def _window_counts(counted: tuple[str, str, str, int, str]) -> list[tuple[str, float]]:
    site, subject, label, n_times, corpus_split = counted
    return [("site/" + site, 1), ("subject/" + subject, 1), ("label/" + label, 1), (f"site_label/{site}/{label}", 1),
            ("total", 1),
            ("seconds", n_times / schema.SFREQ), (f"samples/{n_times}", 1),
            *([("split/" + corpus_split, 1)] if corpus_split else [])]


def _per_site_label(counts: dict) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for key, value in sorted(counts.items()):
        if key.startswith("site_label/"):
            site, label = key[len("site_label/"):].split("/", 1)
            out.setdefault(site, {})[label] = int(value)
    return out


def _quarantine_line(event) -> str:
    if isinstance(event, Outcome):
        return json.dumps({"path": event.source, "stage": event.stage, "reason": event.reason,
                           "kind": "input"}, sort_keys=True)
    if isinstance(event, Ignored):
        return json.dumps({"path": event.path, "stage": "discover", "reason": event.reason,
                           "kind": "ignored"}, sort_keys=True)
    start = float(event.window_start_s)
    return json.dumps({"path": event.source, "stage": event.stage, "reason": "; ".join(event.reasons),
                       "window_start_s": round(start, 6) if math.isfinite(start) else None, "site": event.site,
                       "kind": "window"}, sort_keys=True)


def _write_manifest(_, path, header, outcomes, counts, shards, model_used, quarantine_lines, spill_dir):
    # This runs in whichever worker Beam picks, maybe one that imported no sink: an empty
    # quarantine.jsonl on S3 needs the uploader fix there too.
    fix_s3_empty_uploads()
    remove_folder(spill_dir)  # every spill file has been read back once the shards exist
    with FileSystems.create(FileSystems.join(os.path.dirname(path), "quarantine.jsonl")) as fh:
        fh.write("".join(line + "\n" for line in sorted(quarantine_lines)).encode())
    inputs = sorted((o.as_dict() for o in outcomes), key=lambda d: d["source"])
    manifest = dict(header)
    manifest["inputs"] = header["ignored"] + [
        {k: v for k, v in d.items() if k != "interpolated"} | {"interpolated": list(d["interpolated"])}
        for d in inputs
    ]
    manifest.pop("ignored")
    manifest["counts"] = {
        "inputs": len(manifest["inputs"]),
        "processed": sum(d["status"] == "processed" for d in inputs),
        "quarantined": sum(d["status"] == "quarantined" for d in inputs),
        "ignored": len(header["ignored"]),
        "windows": int(counts.get("total", 0)),
        "rejected_windows": sum(int(d["rejected_windows"]) for d in inputs),
        "repaired_windows": sum(int(d.get("repaired_windows", 0)) for d in inputs),
        # processed recordings whose channels a cap's layout (or the file's digitized positions) placed
        "caps": dict(sorted(collections.Counter(
            d["cap"] for d in inputs if d.get("cap") and d["status"] == "processed").items())),
        **_ica_totals(inputs),
        "window_eeg_hours": round(float(counts.get("seconds", 0.0)) / 3600.0, 6),
        "input_eeg_hours": round(sum(float(d["eeg_seconds"]) for d in inputs) / 3600.0, 6),
        "per_site": {k[5:]: int(v) for k, v in sorted(counts.items()) if k.startswith("site/")},
        "per_subject": {k[8:]: int(v) for k, v in sorted(counts.items()) if k.startswith("subject/")},
        "per_label": {k[6:]: int(v) for k, v in sorted(counts.items()) if k.startswith("label/")},
        # each site's windows by label: a class balance that differs between sites shows here
        "per_site_label": _per_site_label(counts),
        # windows by the corpus's own split (the TUH corpora's train, dev, eval); pretraining
        # reads it to say how many windows its exclude_corpus_splits leaves out
        "per_corpus_split": {k[6:]: int(v) for k, v in sorted(counts.items()) if k.startswith("split/")},
        # windows by length in samples at 256 Hz: sliding windows, HMS's 50 s, labels.csv events ...
        "per_length_samples": {k[8:]: int(v) for k, v in counts.items() if k.startswith("samples/")},
    }
    # Local shards relative to the output folder; remote ones under it as header["output"] shows
    # it (its names redacted under --redact_paths).
    output, shown = os.path.dirname(path).rstrip("/"), header["output"].rstrip("/")
    manifest["shards"] = sorted(os.path.relpath(s, output) if "://" not in s else shown + s[len(output):]
                                for s in shards)
    manifest["artifact_model"] = next((m for m in model_used if m), None)
    with FileSystems.create(path) as fh:
        fh.write(json.dumps(manifest, indent=2, sort_keys=True).encode())
    return path


class WriteReports(beam.PTransform):
    def __init__(self, output: str, header: dict, ignored: list[Ignored], spill_dir: str):
        super().__init__()
        self._output, self._header, self._ignored, self._spill_dir = output, header, ignored, spill_dir

    def expand(self, pcolls):
        outcomes, rejected, counted, shards, model_used = pcolls
        p = outcomes.pipeline
        ignored = p | "Ignored" >> beam.Create(self._ignored)
        quarantined = outcomes | "Quarantined" >> beam.Filter(lambda o: o.status != "processed")
        # Quarantine lines are few (one per rejected input or window), so the manifest step
        # writes them too: sorted, and without a file sink's sub-graph in every job.
        lines = ((quarantined, rejected, ignored) | "AllQuarantine" >> beam.Flatten()
                 | "ToJson" >> beam.Map(_quarantine_line))
        counts = (counted | "Counts" >> beam.FlatMap(_window_counts)
                  | "Sum" >> beam.CombinePerKey(sum))
        header = dict(self._header)
        header["ignored"] = [{"source": g.path, "status": "ignored", "reason": g.reason} for g in self._ignored]
        path = FileSystems.join(self._output, "manifest.json")
        return (
            p | "Once" >> beam.Create([None])
            | "Manifest" >> beam.Map(
                _write_manifest, path, header,
                beam.pvalue.AsList(outcomes), beam.pvalue.AsDict(counts),
                beam.pvalue.AsList(shards), beam.pvalue.AsList(model_used), beam.pvalue.AsList(lines),
                self._spill_dir)
        )


# --------------------------------------------------------------------------- the job
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="eegfm-preprocess",
        description=__doc__.split("\n\n")[0],
        epilog="Any other flag is a Beam pipeline option, e.g. --runner DataflowRunner --project P "
        "--region R --temp_location gs://B/tmp --setup_file ./setup.py, or --direct_running_mode "
        "multi_processing --direct_num_workers 2 for local parallelism; a flag that is neither is refused (Beam "
        "itself would run without it). Object stores: gs:// uses "
        "Google application default credentials; s3:// takes --s3_access_key_id, "
        "--s3_secret_access_key, --s3_region_name and --s3_endpoint_url (an S3-compatible store), "
        "else boto3's usual sources (AWS_* variables, ~/.aws, the instance role).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    io_ = parser.add_argument_group("inputs and outputs")
    io_.add_argument("--input", type=user_path, action="extend", nargs="+", required=True, metavar="PATH",
                     help="one or more files, globs or folders; local, gs:// or s3://. Repeatable; an unquoted "
                     "shell glob (--input raw/*.edf) gives every file it matches. In a quoted glob, * stays within "
                     "a folder and **/ spans any number of folders, none included ('raw/**/*.edf' is "
                     "every EDF below raw/, raw/x.edf too). A FIF split into parts is one recording, read "
                     "through its first part; a file with the same bytes as another (a copy) is quarantined "
                     "naming the one kept, so no recording is written twice")
    io_.add_argument("--output", type=user_path, required=True, help="output folder (local, gs:// or s3://)")
    io_.add_argument("--overwrite", action="store_true",
                     help="delete an earlier run's outputs in --output first (its manifest.json, "
                     "quarantine.jsonl and <site>/part-*-of-*.tfrecord shards); without it such a folder "
                     "is an error, since readers take every shard in it and would mix the two runs")
    io_.add_argument("--report", action="store_true",
                     help="after the run, draw its data quality across sites as OUTPUT/report.png (recordings "
                     "processed and quarantined, windows written and rejected, interpolated channels, artifact "
                     "scores; python -m eegfm.pipelines.report OUTPUT draws it later)")
    io_.add_argument("--dataset", default="auto", choices=DATASETS,
                     help="layout adapter: hms = Kaggle train.csv + train_eegs/; bids = BIDS (participants.tsv "
                     "age/sex, *_channels.tsv bad channels interpolated, *_eeg.json PowerLineFrequency; its "
                     "sourcedata/ and derivatives/ are not read as more recordings); "
                     "eegmat = PhysioNet mental arithmetic; eegmmi = PhysioNet motor movement/imagery (a 4 s "
                     "window from each T1/T2 annotation, labelled by its run: eegmmi_movement or eegmmi_imagery, "
                     "left_fist/right_fist/both_fists/both_feet 0-3); tuab = TUH Abnormal EEG (edf/train|eval/normal|"
                     "abnormal/...: the folder labels each recording, tuab_abnormal 0/1; patients from the "
                     "file names); tuep = TUH Epilepsy Corpus (00_epilepsy/, 01_no_epilepsy/ label each "
                     "recording, tuep_epilepsy 1/0); tusz = TUH Seizure Corpus (each EDF's .csv_bi events "
                     "label the sliding windows that lie mostly in them, tusz_seizure 0 background / 1 seizure; "
                     "a window in no event, unlabeled); tuev = TUH EEG Events Corpus (each EDF's .rec events: "
                     "one 5 s window around each, tuev_event spsw/gped/pled/eyem/artf/bckg 0-5); tuar = TUH "
                     "Artifact Corpus (each EDF's .csv artifact events label the sliding windows as tusz does, "
                     "tuar_artifact: the kind's index in eyem/chew/shiv/elec/musc and the pairs; short artifacts "
                     "call for short windows, e.g. --window_seconds 2 --stride_seconds 1); chbmit = "
                     "CHB-MIT Scalp EEG (chbNN/chbNN-summary.txt seizure times label the sliding windows as tusz does, "
                     "chbmit_seizure; SUBJECT-INFO age/sex; its bipolar montage is reconstructed to electrodes); "
                     "siena = Siena Scalp EEG (PNxx/Seizures-list-PNxx.txt clock times label the sliding windows, "
                     "siena_seizure; a seizure listed as lasting over 30 min quarantines its file as a typo); "
                     "edf = any folder of EDF/BDF/FIF/BrainVision/EEGLAB files and EGI MFF folders (+ optional "
                     "labels.csv); auto detects it per top-level folder")
    io_.add_argument("--site", default=None,
                     help="site name for every input; default: the first folder below each input folder (for "
                     "a glob, below the folder before its first wildcard; for a file, its folder)")
    io_.add_argument("--s3_anonymous", action="store_true",
                     help="read s3:// inputs with unsigned requests, without credentials: public buckets such as "
                     "OpenNeuro's BIDS data sets (s3://openneuro.org/dsNNNNNN/). Objects a bucket does not make "
                     "public answer 403 (quarantined with that reason); --output and --pseudonym_key_file "
                     "cannot be on S3 then, since unsigned requests cannot write or read private keys")
    io_.add_argument("--pseudonym_key_file", type=user_path, default=DEFAULT_KEY_FILE,
                     help="secret key for the HMAC-SHA256 pseudonyms of site/subject/session/recording "
                     "(created with a random key on first use if it is the default path). Keep it to get "
                     "the same pseudonyms in later runs; use a gs:// path on Dataflow")
    io_.add_argument("--create_key_file", action="store_true",
                     help="create --pseudonym_key_file with a new random key if it does not exist (local "
                     "paths). Without it a missing key file is an error: a mistyped path would otherwise "
                     "give a new key, and pseudonyms that match no earlier run")
    io_.add_argument("--redact_paths", action="store_true",
                     help="name the inputs by keyed tokens in manifest.json, quarantine.jsonl, the logs, the "
                     "summary and error messages, for exports named after patients: every folder and file name "
                     "below the folder an --input is given in (for a glob: below the folder before its first "
                     "wildcard) becomes dir-<hex> or file-<hex> with its extensions (the same name, the same "
                     "token under the same key); the folders above stay as written. `eegfm-redact "
                     "--input <the same> --pseudonym_key_file <key>` lists which file each token is. The "
                     "TFRecords name no file either way")
    io_.add_argument("--num_shards", type=int, default=0,
                     help="TFRecord shards per site, each a contiguous part of about equal size of the site's "
                     "windows (recordings in the order of their pseudonyms, each one's windows in time order); "
                     "0: as few as --max_shard_mb allows. Either way the same inputs give the same files on "
                     "every runner and worker count")
    io_.add_argument("--max_shard_mb", type=float, default=DEFAULT_MAX_SHARD_BYTES / 2**20,
                     help="with --num_shards 0, each site's windows are cut into as few shards as keep each "
                     "within this many MiB of records (at most one window over; a 10 s window is about 0.1 MiB). "
                     "Without a cap each site would be one file, and training loader workers and ranks that "
                     "share a file each read and decompress all of it")
    sig = parser.add_argument_group("signal processing")
    sig.add_argument("--window_seconds", type=float, default=10.0,
                     help="window length for unlabeled recordings (HMS labeled sub-windows are always 50 s)")
    sig.add_argument("--stride_seconds", type=float, default=None,
                     help="step between window starts (default: --window_seconds, windows end to end); "
                     "smaller overlaps windows, larger leaves the signal between them out (the run warns)")
    sig.add_argument("--line_freq", default="auto", choices=["auto", "50", "60", "none"],
                     help="mains frequency to notch (with its harmonics); auto takes a BIDS recording's "
                     "PowerLineFrequency (*_eeg.json) where given, else detects 50/60 Hz from the first "
                     "--line_detect_seconds of each recording and notches nothing if neither stands out")
    sig.add_argument("--l_freq", type=float, default=0.5, help="band-pass lower edge in Hz (passband edge)")
    sig.add_argument("--h_freq", type=float, default=70.0,
                     help="band-pass upper edge in Hz; must stay well below 128 Hz, the Nyquist frequency "
                     "of the 256 Hz output, because the resampler's anti-aliasing filter already rolls off "
                     "from about 105 Hz and content near Nyquist is partly aliased")
    sig.add_argument("--min_channels", type=int, default=10,
                     help="fewest of the 19 10-20 channels a recording must have; the rest are "
                     "interpolated by spherical splines and marked 0 in channel_mask")
    sig.add_argument("--repair_channels", type=int, default=3,
                     help="a window rejected only because at most this many channels are flat, clipped or "
                     "beyond the amplitude limit (an electrode off for a while) is kept with those channels "
                     "interpolated from the others for that window and marked 0 in its channel_mask "
                     "(\"repaired\" in the manifest); 0 rejects such windows")
    sig.add_argument("--montage", default="auto", choices=["auto", "file", *CAP_LAYOUTS], metavar="CAP",
                     help="the cap of recordings whose channels are named by cap position, not 10-20 site: "
                     f"one of {', '.join(CAP_LAYOUTS)} (the layouts MNE installs). Each 10-20 site then "
                     "takes the recorded electrode nearest it, within 7 degrees (manifest: cap, cap_sites), and "
                     "the other sites are interpolated from all the cap's electrodes; it applies to recordings "
                     "with at least 16 of the cap's labels. file: the electrode positions a file holds (a FIF's "
                     "digitized head with its nasion and ears, an EGI MFF's sensor coordinates, an EEGLAB file's "
                     "chanlocs with the nasion and ears in its nodatchans, a BrainVision header's "
                     "[Coordinates], a BIDS "
                     "*_electrodes.tsv with its *_coordsystem.json), for files "
                     "whose names give fewer than 10 sites ('EEG 001', '1' ...). auto: "
                     "BioSemi's ABC labels only (A1..A32/B32/D32/E32/H32), which name their cap (on the 32 and 64 "
                     "caps each label is a 10-10 electrode: A5 is F3 on the 64); without a montage, "
                     "numbered channels are quarantined")
    sig.add_argument("--reference", default="keep", choices=["keep", "average"],
                     help="keep the recording's reference, or re-reference to the average of the 19 channels")
    sig.add_argument("--chunk_seconds", type=float, default=300.0,
                     help="how much of a recording is read at once (at most 2^21 samples per channel): "
                     "peak memory is bounded by it; recordings shorter than it are filtered in one pass")
    sig.add_argument("--features", action="store_true",
                     help=f"store {len(FEATURE_NAMES)} extra features per window (time statistics, "
                     "relative band powers, spectral entropy) in the 'extra' field")
    sig.add_argument("--ica", action="store_true",
                     help="remove eye-blink and muscle components with ICA (extended Infomax solved by Picard, "
                     "fitted on the first --ica_fit_seconds of each recording; eye components found by "
                     "correlation with Fp1/Fp2). Off by default: it costs a few seconds per recording and "
                     "alters the signal")
    sig.add_argument("--ica_fit_seconds", type=float, default=120.0,
                     help="seconds at the start of each recording used to fit the ICA")
    art = parser.add_argument_group("artifacts and quality")
    art.add_argument("--artifact_model", type=user_path, default=None,
                     help="reuse a saved artifact autoencoder (artifact_ae.npz of an earlier run) "
                     "instead of fitting one")
    art.add_argument("--no_artifact_model", action="store_true",
                     help="score artifacts with the rules only (ae_score stays -1)")
    art.add_argument("--ae_train_sites", default="",
                     help="comma-separated site names whose windows train the autoencoder (default all); "
                     "for leave-one-site-out studies give only the training sites. A corpus's eval split "
                     "(TUH's edf/eval/ recordings) never trains it")
    art.add_argument("--ae_sample_size", type=int, default=2000,
                     help="at most this many windows (a deterministic sample) fit the autoencoder; at least "
                     f"{ArtifactAutoencoder().min_fit_windows} (a fifth of them calibrate its scores). With fewer training-site windows in "
                     "all, no autoencoder is fitted and the rules alone score artifacts (logged)")
    art.add_argument("--max_artifact_score", type=float, default=1.0,
                     help="quarantine windows whose combined artifact score exceeds this (1.0 keeps all)")
    art.add_argument("--config", type=user_path, default=None,
                     help="YAML file with PreprocessConfig fields (quality: thresholds ... as nested keys); "
                     "the flags given on the command line override it, the others leave its values alone")
    parser.add_argument("--cold_workers", action="store_true",
                        help="with --direct_running_mode multi_processing, start each Beam worker as a new "
                        "Python process, as Beam does, instead of forking it from the job's already "
                        "imported state (about 2 s of imports less per worker)")
    parser.add_argument("--verbose", action="store_true", help="debug logging, including Beam's")
    return parser


# PreprocessConfig fields that have a flag of the same name.
_CONFIG_FLAGS = ("window_seconds", "stride_seconds", "line_freq", "l_freq", "h_freq", "min_channels", "reference",
                 "chunk_seconds", "features", "ica", "ica_fit_seconds", "repair_channels", "montage")


def config_from_args(args, given: set[str] | None = None) -> PreprocessConfig:
    """The job's config: ``--config``'s YAML (else the defaults) with the flags on top. ``given``:
    the flags the command line set; with a YAML file only those override it (a flag left at its
    default must not undo the file). None: every flag counts (no YAML file, or a caller's args)."""
    base = PreprocessConfig.from_yaml(args.config) if args.config else PreprocessConfig()
    wanted = (lambda name: True) if given is None or not args.config else given.__contains__
    fields = {name: getattr(args, name) for name in _CONFIG_FLAGS if wanted(name)}
    if fields.get("stride_seconds", 0.0) is None:
        del fields["stride_seconds"]  # not given: windows end to end, unless a YAML file overlaps them
    if "window_seconds" in fields and "stride_seconds" not in fields and base.stride_seconds == base.window_seconds:
        fields["stride_seconds"] = fields["window_seconds"]
    if "line_freq" in fields:
        fields["line_freq"] = {"auto": "auto", "50": 50, "60": 60, "none": None}[fields["line_freq"]]
    quality = base.quality.replace(max_artifact_score=args.max_artifact_score) \
        if wanted("max_artifact_score") else base.quality
    return base.replace(**fields, quality=quality)


def given_flags(parser: argparse.ArgumentParser, argv: list[str] | None) -> set[str]:
    """The destinations the command line sets itself, not through their defaults."""
    probe = copy.deepcopy(parser)
    for action in probe._actions:
        action.default = argparse.SUPPRESS
        action.required = False
    known, _ = probe.parse_known_args(argv)
    return set(vars(known))


def earlier_run_outputs(output: str) -> list[str]:
    """What an earlier run left in ``output`` that would mix with a new run's: its manifest, its
    quarantine list, its report and every site's shards (readers take every ``part-*-of-*`` file)."""
    patterns = ["manifest.json", "quarantine.jsonl", REPORT_NAME,
                f"*/{SITE_FILE_PREFIX}-*-of-*{FILE_NAME_SUFFIX}"]
    return sorted(m.path for pattern in patterns for m in match_below(output, pattern))


# A run's temporary folders in its output: spilled windows, and shards not yet renamed. A run that
# stops early (Ctrl-C, a crash, a killed machine) can leave them.
TEMPORARY_FOLDERS = (".spill-*", "beam-temp-sites-*")


def temporary_folders(output: str) -> dict[str, int]:
    """The temporary folders in ``output`` with the bytes of their files (0: empty or unknown)."""
    found: dict[str, int] = {}
    for pattern in TEMPORARY_FOLDERS:
        for meta in match_below(output, f"{pattern}/*"):
            folder = meta.path.rsplit("/", 1)[0]
            found[folder] = found.get(folder, 0) + meta.size_in_bytes
    if "://" not in output:  # empty local folders have no files to match
        for pattern in TEMPORARY_FOLDERS:
            for folder in glob.glob(os.path.join(glob.escape(output), pattern)):
                found.setdefault(folder, 0)
    return found


def _clear_earlier_run(output: str, overwrite: bool) -> None:
    """Delete an earlier run's outputs with ``overwrite``; without it, refuse to mix with them.
    Temporary folders of runs that stopped early go with ``overwrite``; otherwise a warning."""
    stale = temporary_folders(output)
    if stale and overwrite:
        discard_folders(stale)
        log.info("--overwrite: deleted %d temporary folder(s) of runs that stopped early in %s (%.1f MB)",
                 len(stale), output, sum(stale.values()) / 1e6)
    elif stale:
        log.warning("%s holds %d temporary folder(s) of runs that stopped early (%s; %.1f MB): --overwrite "
                    "deletes them", output, len(stale), ", ".join(sorted(os.path.basename(f) for f in stale)[:3]),
                    sum(stale.values()) / 1e6)
    found = earlier_run_outputs(output)
    if not found:
        return
    shards = sum(path.endswith(FILE_NAME_SUFFIX) for path in found)
    if not overwrite:
        names = ", ".join(name for name in ("manifest.json", "quarantine.jsonl", REPORT_NAME)
                          if FileSystems.join(output, name) in found)
        raise ValueError(
            f"--output {output}: holds an earlier run's outputs ({shards} TFRecord shard(s)"
            f"{', ' + names if names else ''}); this run's shards would mix with them. Pass --overwrite "
            "to delete them first, or choose another folder")
    delete(found)
    log.info("--overwrite: deleted an earlier run's %d shard(s) and %d report file(s) in %s",
             shards, len(found) - shards, output)


def _shard_bytes(mib: float) -> int:
    return max(1, round(mib * 2**20))


def _check_sharding(args) -> None:
    check_int("--num_shards", args.num_shards, 0)
    if not (math.isfinite(args.max_shard_mb) and args.max_shard_mb > 0):
        raise ConfigError(f"--max_shard_mb: expected a number of MiB > 0; got {args.max_shard_mb}")


def _check_artifact_options(args, sites: set[str]) -> None:
    """Fail on the launcher, before any recording is read, where the artifact model's options
    could only fail (or do nothing) at the end of the run."""
    if args.no_artifact_model:
        return
    if args.artifact_model:
        try:
            _load_model(args.artifact_model)
        except (ValueError, KeyError, *STORE_ERRORS) as err:
            raise ConfigError(f"--artifact_model {args.artifact_model}: cannot load it as the artifact autoencoder "
                              f"of an earlier run ({storage_error(err)})") from None
        return
    # Fewer windows than the autoencoder needs would only ever skip its fit.
    check_int("--ae_sample_size", args.ae_sample_size, ArtifactAutoencoder().min_fit_windows)
    unknown = sorted({s.strip() for s in args.ae_train_sites.split(",") if s.strip()} - sites)
    if unknown:
        raise ConfigError(f"--ae_train_sites: {', '.join(unknown)}: no such site among the inputs; expected "
                          f"some of {', '.join(sorted(sites))}")


def _ensure_key(path: str, create: bool = False) -> str:
    if "://" in path or os.path.exists(path):
        load_key_any(path)  # fail now, on the launcher, with a clear message
        return path
    if path != DEFAULT_KEY_FILE and not create:
        raise PseudonymKeyError(
            f"--pseudonym_key_file {path}: no such file; for a first run pass --create_key_file to create a "
            f"new key there (a new key gives new pseudonyms), or leave the flag out to use {DEFAULT_KEY_FILE}")
    create_key(path)
    log.info("created a new pseudonym key at %s (keep it for stable pseudonyms)", path)
    return path


def build_pipeline(p, args, config, items, ignored, key: bytes, site_names, progress: str | None = None,
                   output_shown: str | None = None):
    sites = tuple(sorted({pseudonym(key, "site", s) for s in site_names}))
    train_sites = tuple(sorted({pseudonym(key, "site", s.strip()) for s in args.ae_train_sites.split(",") if s.strip()}))
    header = {
        "pipeline_version": schema.PIPELINE_VERSION,
        "config": config.to_dict(),
        "config_hash": config.config_hash(),
        "channels": list(schema.CHANNELS),
        "sfreq": schema.SFREQ,
        "quality_names": list(RECORD_QUALITY_NAMES),
        "feature_names": list(FEATURE_NAMES) if config.features else [],
        "classes": {task: list(classes) for task, classes in TASK_CLASSES.items()},
        "sites": list(sites),
        "output": args.output if output_shown is None else output_shown,
        "redact_paths": args.redact_paths,
    }
    # One spill folder per run, removed by the last step.
    spill_dir = FileSystems.join(args.output, f".spill-{uuid.uuid4().hex[:12]}")
    items_pc = p | "Inputs" >> beam.Create(items)
    processed = items_pc | "ProcessRecordings" >> ProcessRecordings(
        args.pseudonym_key_file, config, spill_dir, progress,
        redact=tuple(kept_folders(args.input)) if args.redact_paths else None)
    recordings, rejected, outcomes = (
        (processed.recordings, processed.rejected, processed.outcome) | "DropDuplicates" >> DropDuplicates())
    scoring = ScoreArtifacts(
        args.output, config, model_path=args.artifact_model, enabled=not args.no_artifact_model,
        train_sites=train_sites, sample_size=args.ae_sample_size)
    scored = recordings | "ScoreArtifacts" >> scoring
    shards = scored.kept | "WriteWindows" >> WriteWindows(
        args.output, sites, args.num_shards, _shard_bytes(args.max_shard_mb))
    rejected = (rejected, scored.rejected) | "AllRejected" >> beam.Flatten()
    (outcomes, rejected, scored.counted, shards, scoring.model_used) | "WriteReports" >> WriteReports(
        args.output, header, ignored, spill_dir)


def summarize(manifest: dict, seconds: float) -> str:
    c = manifest["counts"]
    rate = c["input_eeg_hours"] / seconds if seconds > 0 else float("nan")
    rows = [
        ("input files", c["inputs"]), ("processed", c["processed"]),
        # Workers' log lines do not reach this terminal in multi_processing mode; the file has every reason.
        ("quarantined", f"{c['quarantined']} (reasons in quarantine.jsonl)" if c["quarantined"] else 0),
        ("ignored (sidecars, parts, docs)", c["ignored"]), ("windows written", c["windows"]),
        ("windows rejected", c["rejected_windows"]),
        *([("windows repaired", f"{c['repaired_windows']} (kept with a few bad channels interpolated)")]
          if c.get("repaired_windows") else []),
        *([("placed by cap layout", ", ".join(f"{cap} {n}" for cap, n in c["caps"].items()))]
          if c.get("caps") else []),
        ("EEG hours read", f"{c['input_eeg_hours']:.3f}"),
        ("EEG hours in windows", f"{c['window_eeg_hours']:.3f}" + (
            " (windows overlap: stride < window, or overlapping labeled sub-windows)"
            if c["window_eeg_hours"] > c["input_eeg_hours"] else "")), ("sites", len(c["per_site"])),
        ("TFRecord files", len(manifest.get("shards", ()))),
        ("artifact model", manifest.get("artifact_model") or "none (rules only)"),
        *([("ICA components removed", f"{c['ica_removed']['eog']} eye, {c['ica_removed']['emg']} muscle in "
                                        + _count(c["ica_removed"]["recordings"], "recording"))]
          if "ica_removed" in c else []),
        ("wall time", f"{seconds:.1f} s"), ("throughput", f"{rate:.3f} EEG-hours/s"),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"  {k.ljust(width)}  {v}" for k, v in rows)


def run(argv: list[str] | None = None) -> dict:
    parser = build_parser()
    args, beam_args = parser.parse_known_args(argv)
    # First: Beam logs through the root logger, which, without a handler, then gets Python's own.
    setup_logging("DEBUG" if args.verbose else "INFO", verbose=args.verbose)
    redaction = RunRedaction(args.redact_paths, args.input)
    if args.redact_paths:
        error = parser.error

        def scrubbed_error(message: str):
            redaction.release()
            error(redaction.scrub(message))

        parser.error = scrubbed_error
    try:
        return _run(parser, argv, args, beam_args, redaction)
    finally:
        redaction.close()


def _run(parser, argv, args, beam_args, redaction: RunRedaction) -> dict:
    unknown = unrecognized(beam_args)
    if unknown:  # Beam would only warn and run without them
        parser.error(describe(unknown, [flag for action in parser._actions for flag in action.option_strings],
                              beam_option_names()))
    if args.s3_anonymous:
        private = [f"{flag} {path}" for flag, path in (("--output", args.output),
                                                        ("--pseudonym_key_file", args.pseudonym_key_file))
                   if path.startswith("s3://")]
        if private:
            parser.error(f"--s3_anonymous: unsigned requests cannot write or read a private key; "
                         f"{' and '.join(private)} must be on another file system")
        beam_args.append("--s3_anonymous")  # a pipeline option (pipelines.s3_anonymous): workers apply it too
    options = PipelineOptions(beam_args)
    # Beam's filesystems read their credentials and endpoints (--s3_endpoint_url ...) from
    # the options; the launcher lists inputs and reads the key before any worker runs.
    FileSystems.set_options(options)
    try:
        check_s3_credentials([*([] if args.s3_anonymous else args.input), args.output, args.pseudonym_key_file],
                             options)
        dry_run = options.get_all_options().get("dry_run")  # a dry run lists inputs but writes nothing
        if not dry_run:
            check_gcs_credentials([args.output, args.pseudonym_key_file])
        check_reachable([*args.input, args.pseudonym_key_file, *([] if dry_run else [args.output])], options)
        config = config_from_args(args, given_flags(parser, argv))
        if config.stride_seconds > config.window_seconds:
            log.warning("windows of %g s every %g s (--stride_seconds): %g s between windows are in none of them",
                        config.window_seconds, config.stride_seconds, config.stride_seconds - config.window_seconds)
        _check_sharding(args)
        args.pseudonym_key_file = _ensure_key(args.pseudonym_key_file, args.create_key_file)
        key = load_key_any(args.pseudonym_key_file)
        if "://" not in args.pseudonym_key_file:  # object stores have their own access control
            warn_if_shared(args.pseudonym_key_file)
        # An output folder (or key file) inside an input folder is the job's own, never an input.
        items, ignored, datasets = discover(args.input, dataset=args.dataset, site=args.site,
                                            exclude=[args.output, args.pseudonym_key_file])
        redaction.keyed(key, _named_paths(args, items, ignored), kept_folders(args.input))
        ignored = [Ignored(redaction.redactor.path(g.path), redaction.scrub(g.reason)) for g in ignored]
    except (ConfigError, PseudonymKeyError, ValueError, *STORE_ERRORS) as err:
        parser.error(str(err))
    if not items:
        parser.error(f"--input {' '.join(args.input)}: no recordings found (only {len(ignored)} sidecar/doc files)")
    try:
        _check_artifact_options(args, {item.site for item in items})
    except ConfigError as err:
        parser.error(str(err))
    if options.view_as(StandardOptions).runner is None:
        # Name the runner explicitly (Beam otherwise logs that it is guessing one); its
        # --direct_running_mode defaults to in_memory, one process.
        options.view_as(StandardOptions).runner = "DirectRunner"
    if options.get_all_options().get("dry_run") and _is_local(options):
        print(redaction.scrub(_dry_run_plan(args, items, ignored, datasets,
                                            (key, redaction.redactor) if args.redact_paths else None)))
        return {}
    log.info("%s (%s), %s; writing to %s", _count(len(items), "recording"),
             _describe_datasets(datasets, redaction.redactor), _count(len(ignored), "other file"), args.output)
    if "://" not in args.output:  # object stores have no folders to create, nor locks
        try:
            os.makedirs(args.output, exist_ok=True)
        except OSError as err:
            parser.error(f"--output {args.output}: cannot create the output folder ({err.strerror or err})")
        problem = hold_run_lock(args.output)  # before --overwrite could delete a running job's files
        if problem:
            parser.error(f"--output {problem}")
    try:
        return _write_output(parser, args, options, config, items, ignored, key, redaction.scrub)
    finally:
        release_run_lock(args.output)


def _named_paths(args, items, ignored) -> list[str]:
    """Every input path a report or log line of this run may name: the inputs as given and as found,
    their sidecars, the files passed over."""
    return [*args.input, *(p for item in items for p in related_paths(item)),
            *(g.path for g in ignored)]


def _dry_run_plan(args, items, ignored, datasets, redacted: tuple[bytes, PathRedactor] | None = None) -> str:
    """What a local ``--dry_run`` prints instead of running: the recordings found per site and
    data set, and the files that would not be read, with why (Dataflow's dry run builds its graph).
    Under --redact_paths sites show as their pseudonyms and folders as tokens: a site may be a folder's name."""
    key, redactor = redacted or (None, None)
    per_site = collections.Counter((item.site if key is None else pseudonym(key, "site", item.site), item.dataset)
                                   for item in items)
    labeled = sum(bool(item.windows) or item.recording_label >= 0 for item in items)
    lines = [f"eegfm-preprocess --dry_run: nothing read or written; {args.output} would receive",
             f"  {_count(len(items), 'recording')} ({labeled} with labels) from "
             f"{_describe_datasets(datasets, redactor)}"]
    lines += [f"    site {site!r:24} {dataset:8} {n}" for (site, dataset), n in sorted(per_site.items())]
    if ignored:
        lines.append(f"  {_count(len(ignored), 'file')} not read as recordings:")
        lines += [f"    {entry.path}: {entry.reason}" for entry in ignored[:20]]
        if len(ignored) > 20:
            lines.append(f"    ... and {len(ignored) - 20} more")
    return "\n".join(lines)


def _write_output(parser, args, options, config, items, ignored, key, scrub) -> dict:
    """The job itself, once the output folder is this run's: earlier outputs cleared or refused,
    the pipeline run, and what a stopped run wrote removed; the manifest (empty on Dataflow)."""
    cleared = False  # no earlier run's outputs in args.output: any found later are this run's
    if "://" in args.output and options.get_all_options().get("dry_run"):
        log.info("--dry_run: %s is not checked for an earlier run's outputs", args.output)
    else:
        try:
            _clear_earlier_run(args.output, args.overwrite)
            cleared = True
        except (ValueError, *STORE_ERRORS) as err:
            parser.error(str(err))
    # A run that stops early on this machine removes its temporary folders (a Dataflow job goes on
    # without its launcher: its folders stay in use).
    earlier_temporary = set(temporary_folders(args.output)) if _is_local(options) else None
    start = time.time()
    try:
        _run_pipeline(args, options, config, items, ignored, key, scrub)
    except BaseException:
        if earlier_temporary is not None:
            try:
                _remove_partial_run(args.output, earlier_temporary, start, finished_are_ours=cleared)
            except Exception as err:  # noqa: BLE001 - the job's own error is the one to report
                log.warning("stopped before the end; could not remove what it wrote in %s: %s", args.output, err)
        raise
    seconds = time.time() - start
    if options.view_as(StandardOptions).runner == "DataflowRunner":
        return {}
    with FileSystems.open(FileSystems.join(args.output, "manifest.json")) as fh:
        manifest = json.loads(fh.read())
    print(scrub(f"eegfm-preprocess: wrote {args.output}\n" + summarize(manifest, seconds)))
    if args.report:
        log.info("data-quality report: %s", scrub(write_report(args.output)))
    return manifest


def _remove_partial_run(output: str, earlier_temporary: set[str], start: float, finished_are_ours: bool) -> None:
    """What a run that stopped before its manifest wrote: its temporary folders, and (where
    ``finished_are_ours``: the output held no earlier run's) the shards and artifact model it had
    finished, which without a manifest would pass for a whole data set."""
    ours = sorted(set(temporary_folders(output)) - earlier_temporary)
    discard_folders(ours)
    if FileSystems.exists(FileSystems.join(output, "manifest.json")):  # stopped after its last step
        log.warning("stopped after the manifest was written: the outputs in %s are complete", output)
        return
    if not finished_are_ours:
        log.warning("stopped before the end: removed this run's %d temporary folder(s) in %s; its finished "
                    "shards, if any, lie among an earlier run's there", len(ours), output)
        return
    written = earlier_run_outputs(output)
    model = FileSystems.join(output, AE_MODEL_NAME)
    found = match_path(model)
    if found and found[0].last_updated_in_seconds >= start - 1:  # not a model it was given (--artifact_model)
        written.append(model)
    if written:
        delete(written)
    if "://" not in output:  # the site folders it made (object stores have none)
        for folder in {os.path.dirname(path) for path in written} - {output}:
            with contextlib.suppress(OSError):  # not empty: not only ours
                os.rmdir(folder)
    log.warning("stopped before the end: removed this run's %d temporary folder(s) and %d finished file(s) in %s; "
                "no manifest was written", len(ours), len(written), output)


def _run_pipeline(args, options, config, items, ignored, key, scrub) -> None:
    multi_processing = _is_local(options) and options.view_as(DirectOptions).direct_running_mode == "multi_processing"
    if _is_local(options):
        shorten_state_sampling()  # before the zygote forks: its workers inherit it
    with contextlib.ExitStack() as stack:
        progress = None
        if _is_local(options):  # Dataflow shows its own progress; its workers cannot reach this disk
            progress = os.path.join(stack.enter_context(tempfile.TemporaryDirectory(prefix="eegfm-progress-")),
                                    "done")
        # The zygote forks before the progress thread starts: a fork copies no other thread.
        zygote = stack.enter_context(zygote_for(multi_processing, enabled=not args.cold_workers))
        if progress is not None:
            stack.enter_context(ProgressReporter(progress, len(items)))
        try:
            with beam.Pipeline(runner=local_runner(options, warm=zygote is not None), options=options) as p:
                build_pipeline(p, args, config, items, ignored, key, {i.site for i in items}, progress,
                               output_shown=scrub(args.output))
        except KeyboardInterrupt:
            if multi_processing:
                quiet_worker_threads()
            raise


def _ica_totals(inputs: list[dict]) -> dict:
    """``{"ica_removed": {"eog", "emg", "recordings"}}`` over the recordings ICA cleaned (--ica); {} without."""
    cleaned = [d["ica"] for d in inputs if d.get("ica")]
    if not cleaned:
        return {}
    return {"ica_removed": {"eog": sum(c["eog_removed"] for c in cleaned),
                            "emg": sum(c["emg_removed"] for c in cleaned), "recordings": len(cleaned)}}


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _describe_datasets(datasets: dict[str, str], redactor: PathRedactor | None = None) -> str:
    """``folder=dataset`` for a few input folders; counts per dataset for many (a log line, not
    a listing of an archive of thousands of patient folders). Folders as tokens under --redact_paths."""
    if len(datasets) <= 8:
        shown = redactor.folder if redactor is not None and redactor.enabled else str
        return ", ".join(f"{shown(k)}={v}" for k, v in sorted(datasets.items()))
    kinds = collections.Counter(datasets.values())
    return ", ".join(f"{kind} in {n} folder{'s' if n > 1 else ''}" for kind, n in sorted(kinds.items()))


def _is_local(options: PipelineOptions) -> bool:
    return options.view_as(StandardOptions).runner in (None, "DirectRunner", "direct")


def local_runner(options: PipelineOptions, warm: bool = False):
    """The runner object for ``options``: Beam's FnApiRunner for the DirectRunner, else None.
    ``warm``: multi_processing workers start through a ``pipelines.warm_workers`` zygote.

    Beam's DirectRunner first tries its Prism runner, which downloads a Go binary from GitHub at
    run time (and, where that works, ignores ``--direct_running_mode``). The job must never depend
    on a download, so the DirectRunner is the FnApiRunner directly, set up as Beam's own
    DirectRunner sets it up, honouring ``--direct_running_mode`` and ``--direct_num_workers``.
    Other runners (Dataflow ...) are left to Beam (None).
    """
    if not _is_local(options):
        return None
    from apache_beam.portability.api import beam_provision_api_pb2
    from apache_beam.runners.portability.fn_api_runner import fn_runner
    from apache_beam.runners.portability.portable_runner import JobServiceHandle

    encoded = JobServiceHandle.encode_pipeline_options(options.get_all_options())
    provision = fn_runner.ExtendedProvisionInfo(beam_provision_api_pb2.ProvisionInfo(pipeline_options=encoded))
    if not warm:
        return fn_runner.FnApiRunner(provision_info=provision)
    from apache_beam.transforms.environments import SubprocessSDKEnvironment

    class WarmWorkerRunner(fn_runner.FnApiRunner):
        """multi_processing with ``pipelines.warm_workers``' launcher as the worker command: Beam
        assigns its own command to ``_default_environment`` in ``run_pipeline``; this keeps ours."""

        _warm = SubprocessSDKEnvironment.from_command_string(worker_command())

        @property
        def _default_environment(self):
            return self._warm

        @_default_environment.setter
        def _default_environment(self, _value) -> None:
            pass

    return WarmWorkerRunner(provision_info=provision)


def main(argv: list[str] | None = None) -> int:
    # The ~240,000 objects of the imports (Beam, scipy, protobuf) live until exit; frozen, the
    # cyclic collector no longer walks them in full collections, above all the interpreter's final
    # ones: on the 64 eegmat files those took 0.45 s between the summary and the exit (frozen:
    # 0.06 s), a tenth of the job's wall time. Only in the command: a process that calls run()
    # keeps its collector as it was.
    gc.freeze()
    try:
        run(argv)
    except KeyboardInterrupt:
        print("eegfm-preprocess: interrupted", file=sys.stderr)
        return 130  # as a shell reports a process that SIGINT ended
    gc.freeze()
    return 0


if __name__ == "__main__":
    sys.exit(main())
