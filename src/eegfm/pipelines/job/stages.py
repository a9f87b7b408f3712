"""The Beam job's stages, each a composite transform around pure functions:

1. `ProcessRecordings`: `process.process_recording` per input; windows go to spill files
   (`spill`), only their features and scores travel on; bad inputs become tagged outcomes.
2. `ScoreArtifacts`: fits the artifact autoencoder on a deterministic sample of training-site
   windows (or loads `--artifact_model`), saves it, and scores every window.
3. `WriteSnappyTFRecordsBySite` (`sinks`): each site's shards, the same on every runner.
4. `WriteReports`: `manifest.json` and `quarantine.jsonl` (`manifest`); removes the spill folder.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import tempfile
import uuid
from collections.abc import Callable

import apache_beam as beam
import numpy as np
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from threadpoolctl import threadpool_limits

from eegfm.contract import layout, schema
from eegfm.core.allocator import keep_freed_memory
from eegfm.core.final_collection import skip_final_collection
from eegfm.core.logs import get_logger
from eegfm.core.process_tree import end_worker_on_exhaustion
from eegfm.core.run_lock import check_run_lock
from eegfm.core.stores import is_remote
from eegfm.pipelines.datasets import Ignored, SourceItem
from eegfm.pipelines.job.duplicates import DropDuplicates
from eegfm.pipelines.job.manifest import (
    count,
    manifest_header,
    quarantine_line,
    window_counts,
    write_manifest,
)
from eegfm.pipelines.job.process import process_recording
from eegfm.pipelines.job.process_io import Outcome, PreprocessConfig, RejectedWindow, Window
from eegfm.pipelines.job.progress import record_done
from eegfm.pipelines.job.sinks import WriteSnappyTFRecordsBySite
from eegfm.pipelines.job.spec import JobSpec
from eegfm.pipelines.job.spill import SpilledRecording, SpillWriter, sample_items, score_spill, spill_path
from eegfm.pipelines.privacy.deid import load_key, pseudonym
from eegfm.pipelines.privacy.redact import PathRedactor, shown_folders
from eegfm.pipelines.privacy.redact_events import redacted_events
from eegfm.pipelines.quality import QualityConfig
from eegfm.pipelines.quality.artifact_autoencoder import ArtifactAutoencoder
from eegfm.pipelines.readers.s3_anonymous import install_s3_anonymous

log = get_logger("preprocess")


@dataclasses.dataclass(frozen=True)
class _WhileHeld:
    """``fn``, run only while the run still holds its output folder (``core.run_lock``): a process left
    behind by a killed launcher never writes over a later run's outputs."""

    fn: Callable
    output: str
    token: str

    def __call__(self, *args, **kwargs):
        check_run_lock(self.output, self.token)
        return self.fn(*args, **kwargs)


class _OneBlasThread(beam.DoFn):
    """A numeric DoFn: the runner already runs a worker per core, and a threaded BLAS rounds differently.
    Its worker keeps freed memory for the next recording (``core/allocator.py``), exits without
    the last garbage collection (``core/final_collection.py``), and ends where one of its threads
    dies of a memory or thread limit (``core.process_tree.end_worker_on_exhaustion``)."""

    def setup(self):
        end_worker_on_exhaustion()
        keep_freed_memory()
        skip_final_collection()
        self._blas = threadpool_limits(limits=1, user_api="blas")

    def teardown(self):
        self._blas.restore_original_limits()


class ProcessRecordingFn(_OneBlasThread):
    """Each recording's windows to a spill file (main output: its ``SpilledRecording``); rejected
    windows and outcomes to tagged outputs."""

    REJECTED, OUTCOME = "rejected", "outcome"

    def __init__(
        self,
        key_file: str,
        config: PreprocessConfig,
        spill_dir: str,
        progress: str | None = None,
        redact: tuple[str, ...] | None = None,
    ):
        self._key_file, self._config, self._spill_dir = key_file, config, spill_dir
        self._progress = progress  # pipelines.job.progress's file on a local run, else None
        self._redact = redact  # --redact_paths: the folders whose names stay (redact.shown_folders)
        self._config_hash = config.config_hash()
        self._windows = Metrics.counter("eegfm", "windows")
        self._rejected = Metrics.counter("eegfm", "rejected_windows")
        self._quarantined = Metrics.counter("eegfm", "quarantined_inputs")

    def setup(self):
        install_s3_anonymous()  # the recordings are read here: S3 clients follow --s3_anonymous
        # Read on the worker, so a gs:// key never travels inside the pipeline graph.
        self._key = load_key(self._key_file)
        self._redactor = PathRedactor(self._key, self._redact is not None, keep=self._redact or ())
        super().setup()

    def process(self, item: SourceItem):
        spill = SpillWriter(spill_path(self._spill_dir, item.path))
        redacted = redacted_events(item, self._redactor)
        events = (
            [_unread(item, self._key)]
            if item.read_problem
            else process_recording(item, self._key, self._config, self._config_hash)
        )
        try:
            for event in map(redacted, events):
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
                        self._quarantined.inc()
                        log.warning("quarantined %s at %s: %s", event.source, event.stage, event.reason)
                    elif len(spill):
                        yield spill.recording(event.source)
                    record_done(self._progress, event.eeg_seconds)
                    yield beam.pvalue.TaggedOutput(self.OUTCOME, event)
        finally:
            spill.close()


def _unread(item: SourceItem, key: bytes) -> Outcome:
    """The outcome of an input discovery found it cannot read (``SourceItem.read_problem``)."""
    return Outcome(
        source=item.path,
        status="quarantined",
        site=pseudonym(key, "site", item.site),
        stage="read",
        reason=f"{os.path.basename(item.path)}: {item.read_problem}",
        dataset=item.dataset,
    )


@beam.ptransform_fn
def ProcessRecordings(items, *args, **kwargs):
    """The recordings spread over the workers, each through ``ProcessRecordingFn(*args, **kwargs)``."""
    fn = ProcessRecordingFn(*args, **kwargs)
    process = beam.ParDo(fn).with_outputs(fn.REJECTED, fn.OUTCOME, main="recordings")
    return items | "Reshuffle" >> beam.Reshuffle() | "Process" >> process


def _fit_autoencoder(sample: list[tuple[str, np.ndarray]]):
    model = ArtifactAutoencoder()
    if len(sample) < model.min_fit_windows:
        log.warning(
            "artifact autoencoder not fitted: %s, fewer than the %d it needs; windows are scored by the rules only",
            count(len(sample), "training window"),
            model.min_fit_windows,
        )
        return None
    features = np.stack([f for _, f in sorted(sample, key=lambda kv: kv[0])])
    with threadpool_limits(limits=1, user_api="blas"):  # as where it scores: a threaded BLAS rounds differently
        return model.fit_features(features, n_chans=schema.N_CHANS)


def _save_model(model, path: str) -> str:
    """Write the fitted model next to the records; '' when none was fitted (too few windows)."""
    if model is None:
        return ""
    with tempfile.TemporaryDirectory() as tmp:
        model.save(os.path.join(tmp, layout.ARTIFACT_MODEL))
        for produced in sorted(os.listdir(tmp)):
            with (
                open(os.path.join(tmp, produced), "rb") as src,
                FileSystems.create(FileSystems.join(os.path.dirname(path), produced)) as dst,
            ):
                dst.write(src.read())
    return os.path.basename(path)


def load_model(path: str) -> ArtifactAutoencoder:
    if not is_remote(path):
        return ArtifactAutoencoder.load(path)
    with tempfile.TemporaryDirectory() as tmp:
        base = os.path.splitext(path)[0]
        for suffix in (".npz", ".json"):
            if FileSystems.exists(base + suffix):
                with FileSystems.open(base + suffix) as src, open(os.path.join(tmp, "m" + suffix), "wb") as dst:
                    dst.write(src.read())
        return ArtifactAutoencoder.load(os.path.join(tmp, "m.npz"))


class ScoreSpillFn(_OneBlasThread):
    """Scores a recording's spilled windows from their features and emits the kept ones as a
    ``ScoredSpill``; windows over ``max_artifact_score`` go to REJECTED, kept windows' counts to COUNTED."""

    REJECTED, COUNTED = "rejected", "counted"

    def __init__(self, quality: QualityConfig):
        self._max_score = quality.max_artifact_score

    def process(self, spilled: SpilledRecording, model):
        scores = None if model is None else model.score_recording(spilled.features)
        kept, rejected = score_spill(spilled, scores, self._max_score)
        for event in rejected:
            yield beam.pvalue.TaggedOutput(self.REJECTED, event)
        for i in kept.kept:
            yield beam.pvalue.TaggedOutput(
                self.COUNTED,
                (spilled.site, spilled.subject, spilled.labels[i], int(spilled.n_times[i]), spilled.corpus_split),
            )
        if len(kept.kept):
            yield kept


@beam.ptransform_fn
def ScoreArtifacts(recordings, job: JobSpec, config: PreprocessConfig, train_sites: tuple[str, ...]):
    """Fits (or loads) the artifact autoencoder on ``train_sites`` windows (pseudonyms) and scores
    every window: (kept, rejected, counted, model_used); ``model_used``, for the manifest, holds the
    saved file's name, the reused model's path, or '' when no autoencoder scored the windows."""
    pipeline = recordings.pipeline
    if not job.use_artifact_model:
        model = pipeline | "NoModel" >> beam.Create([None])
        model_used = pipeline | "NoModelUsed" >> beam.Create([""])
    elif job.artifact_model:
        path = job.artifact_model
        model = pipeline | "ModelPath" >> beam.Create([path]) | "LoadModel" >> beam.Map(load_model)
        model_used = pipeline | "ModelReused" >> beam.Create([path])
    else:
        sample = (
            recordings
            | "Features" >> beam.FlatMap(sample_items, frozenset(train_sites))
            # The windows with the smallest keyed hash: every runner and worker count fits the same model.
            | "Sample" >> beam.combiners.Top.Of(job.ae_sample_size, key=lambda kv: kv[0], reverse=True)
        )
        model = sample | "Fit" >> beam.Map(_fit_autoencoder)
        save = _WhileHeld(_save_model, job.output, job.run_token)
        model_used = model | "SaveModel" >> beam.Map(save, FileSystems.join(job.output, layout.ARTIFACT_MODEL))
    scored = recordings | "Score" >> beam.ParDo(
        ScoreSpillFn(config.quality), beam.pvalue.AsSingleton(model)
    ).with_outputs(ScoreSpillFn.REJECTED, ScoreSpillFn.COUNTED, main="kept")
    return scored.kept, scored.rejected, scored.counted, model_used


@beam.ptransform_fn
def WriteReports(pcolls, output: str, header: dict, ignored: list[Ignored], spill_dir: str, run_token: str = ""):
    outcomes, rejected, counted, shards, model_used = pcolls
    p = outcomes.pipeline
    ignored = p | "Ignored" >> beam.Create(ignored)
    quarantined = outcomes | "Quarantined" >> beam.Filter(lambda o: o.status != "processed")
    # Quarantine lines are few (one per rejected input or window), so the manifest step writes
    # them too: sorted, and without a file sink's sub-graph in every job.
    lines = (quarantined, rejected, ignored) | "AllQuarantine" >> beam.Flatten() | "ToJson" >> beam.Map(quarantine_line)
    counts = counted | "Counts" >> beam.FlatMap(window_counts) | "Sum" >> beam.CombinePerKey(sum)
    return (
        p
        | "Once" >> beam.Create([None])
        | "Manifest"
        >> beam.Map(
            _WhileHeld(write_manifest, output, run_token),
            FileSystems.join(output, layout.MANIFEST),
            header,
            beam.pvalue.AsList(outcomes),
            beam.pvalue.AsDict(counts),
            beam.pvalue.AsList(shards),
            beam.pvalue.AsList(model_used),
            beam.pvalue.AsList(lines),
            spill_dir,
        )
    )


def build_pipeline(
    p,
    job: JobSpec,
    config: PreprocessConfig,
    items: list[SourceItem],
    ignored: list[Ignored],
    key: bytes,
    progress: str | None = None,
    output_shown: str | None = None,
) -> None:
    """The job's four stages on ``p``."""
    sites = tuple(sorted({pseudonym(key, "site", item.site) for item in items}))
    train_sites = tuple(sorted({pseudonym(key, "site", name) for name in job.ae_train_sites}))
    header = manifest_header(
        config, sites, job.output if output_shown is None else output_shown, job.redact_paths, ignored
    )
    # One spill folder per run, removed by the last step.
    spill_dir = FileSystems.join(job.output, f".spill-{uuid.uuid4().hex[:12]}")
    redact = tuple(shown_folders(job.inputs, job.shown_folders)) if job.redact_paths else None
    processed = (
        p
        | "Inputs" >> beam.Create(items)
        | "ProcessRecordings" >> ProcessRecordings(job.pseudonym_key_file, config, spill_dir, progress, redact=redact)
    )
    outputs = (processed.recordings, processed.rejected, processed.outcome)
    recordings, rejected, outcomes = outputs | "DropDuplicates" >> DropDuplicates()
    kept, scored_out, counted, model_used = recordings | "ScoreArtifacts" >> ScoreArtifacts(job, config, train_sites)
    shards = kept | "WriteWindows" >> WriteSnappyTFRecordsBySite(
        job.output,
        sites,
        job.num_shards,
        max_shard_bytes=job.max_shard_bytes,
        guard=functools.partial(check_run_lock, job.output, job.run_token),
    )
    rejected = (rejected, scored_out) | "AllRejected" >> beam.Flatten()
    (outcomes, rejected, counted, shards, model_used) | "WriteReports" >> WriteReports(
        job.output, header, ignored, spill_dir, job.run_token
    )
