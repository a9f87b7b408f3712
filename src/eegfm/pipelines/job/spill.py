"""Spill files: a recording's encoded windows kept out of the Beam graph until they are scored.

No window can be scored before the autoencoder is fitted on a sample of all of them, and windows in
the graph would be materialized in full meanwhile (a shuffle of all the EEG on Dataflow). So each
recording's windows go to one spill file and a small `SpilledRecording` travels on; the sink reads
its `ScoredSpill` back once, overwriting the fixed-width float scores in place.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
from collections.abc import Iterator

import numpy as np
from apache_beam.io.filesystem import BeamIOError, CompressionTypes
from apache_beam.io.filesystems import FileSystems

from eegfm.contract import schema
from eegfm.contract.tfrecord import FRAME_OVERHEAD, frame_record, unframe_record
from eegfm.core.stores import delete
from eegfm.pipelines.job.process_io import RECORD_QUALITY_NAMES, RejectedWindow, Window
from eegfm.pipelines.quality.artifact_autoencoder import band_features

PATCHED = ("quality", "artifact_score")
AE_INDEX = RECORD_QUALITY_NAMES.index("ae_score")


@dataclasses.dataclass
class SpilledRecording:
    """One recording's windows: where they are and what scoring and counting need of them."""

    source: str
    spill: str  # plain TFRecord file of the encoded windows, in this order
    site: str
    subject: str
    recording_id: str
    starts: np.ndarray  # (n,) window_start_s as stored (float32 values)
    n_times: np.ndarray  # (n,)
    labels: list[str]  # 'task:label' per window, for the manifest's counts
    rule_scores: np.ndarray  # (n,) artifact_score from the rules
    features: np.ndarray  # (n, n_features) autoencoder features
    quality_offsets: np.ndarray  # (n,) byte offset of each record's quality values
    score_offsets: np.ndarray  # (n,) byte offset of each record's artifact_score
    frame_offsets: np.ndarray  # (n,) byte offset of each framed record in the spill file
    sizes: np.ndarray  # (n,) length of each record
    corpus_split: str = ""  # the source corpus's own split of the recording (train, dev, eval)

    def __len__(self) -> int:
        return len(self.starts)


def spill_path(spill_dir: str, source: str) -> str:
    """The spill file of input ``source``, named by a hash of its path (its bytes: a name that is not
    UTF-8 is one too): a retried bundle rewrites it."""
    return FileSystems.join(
        spill_dir, hashlib.sha256(source.encode("utf-8", "surrogateescape")).hexdigest()[:32] + ".tfrecord"
    )


def ae_features(window: Window) -> np.ndarray:
    """The window's autoencoder features: shared with quality scoring when the processor kept them."""
    if window.ae_features is not None:
        return window.ae_features
    return band_features(window.record.eeg[None].astype(np.float32))[0]


class SpillWriter:
    """Writes one recording's windows to its spill file and collects their metadata."""

    def __init__(self, path: str):
        self.path = path
        self._fh = None
        self._first: schema.WindowRecord | None = None
        self._rows: list[tuple] = []
        self._position = 0  # bytes written so far

    def __len__(self) -> int:
        return len(self._rows)

    def add(self, window: Window) -> None:
        rec = window.record
        data, offsets = schema.encode_example_patchable(rec, PATCHED)
        if self._fh is None:
            self._fh, self._first = FileSystems.create(self.path), rec
        framed = frame_record(data)
        self._fh.write(framed)
        row = (
            float(rec.window_start_s),
            rec.n_times,
            f"{rec.task.decode() or 'unlabeled'}:{int(rec.label)}",
            float(rec.artifact_score),
            ae_features(window),
            offsets["quality"],
            offsets["artifact_score"],
            self._position,
            len(data),
        )
        self._rows.append(row)
        self._position += len(framed)

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def discard(self) -> None:
        """Forget every window added and delete the spill file (after :meth:`close`)."""
        if self._rows:
            self._rows.clear()
            with contextlib.suppress(BeamIOError, OSError):  # the run removes its spill folder at the end anyway
                delete([self.path])

    def recording(self, source: str) -> SpilledRecording:
        """The metadata of everything added (at least one window), after :meth:`close`."""
        starts, n_times, labels, scores, features, *offsets = zip(*self._rows)
        rec = self._first
        return SpilledRecording(
            source,
            self.path,
            rec.site_id.decode(),
            rec.subject_id.decode(),
            rec.recording_id.decode(),
            np.array(starts),
            np.array(n_times, dtype=np.int64),
            list(labels),
            np.array(scores, dtype=np.float32),
            np.stack(features).astype(np.float32),
            *(np.array(column, dtype=np.int64) for column in offsets),  # quality, score and frame offsets, sizes
            rec.corpus_split.decode(),
        )


def sample_items(spilled: SpilledRecording, train_sites: frozenset) -> list[tuple[str, np.ndarray]]:
    """(sample key, features) of a recording's windows if it is from a training site (any, when
    ``train_sites`` is empty) and not from a corpus's eval split. The key hashes the recording
    pseudonym and the window start, so every runner and worker count draws the same sample."""
    if (train_sites and spilled.site not in train_sites) or spilled.corpus_split == "eval":
        return []
    prefix = spilled.recording_id.encode() + b"|"
    return [
        (hashlib.sha256(prefix + str(float(start)).encode()).hexdigest(), features)
        for start, features in zip(spilled.starts, spilled.features)
    ]


@dataclasses.dataclass
class ScoredSpill:
    """A recording's kept windows as the sink's ``RecordSource``, read back from the spill file with
    the autoencoder's scores written in; holds no EEG."""

    source: str
    spill: str
    site: str
    order: tuple[str, str]  # (recording pseudonym, input path): where it goes among its site's shards
    kept: np.ndarray  # (k,) indices of the kept windows among the spilled ones
    frame_offsets: np.ndarray  # (k,) of the kept windows, as in SpilledRecording
    sizes: np.ndarray  # (k,)
    # (k, 2) byte offsets of ae_score and artifact_score in each record and (k, 2) their float32
    # values; None: the records as spilled (no autoencoder).
    patch_at: np.ndarray | None = None
    patch_values: np.ndarray | None = None

    def records(self, first: int, last: int) -> Iterator[bytes]:
        """Kept records ``first..last-1``, scores written in; an OSError naming the spill file if it
        does not hold them intact."""
        with FileSystems.open(self.spill, compression_type=CompressionTypes.UNCOMPRESSED) as fh:
            position = None
            for j in range(first, last):
                at, size = int(self.frame_offsets[j]), int(self.sizes[j])
                if position != at:
                    fh.seek(at)
                framed = fh.read(size + FRAME_OVERHEAD)
                position = at + len(framed)
                record = unframe_record(
                    framed, size, f"{self.spill} (spill file of {self.source}), record at byte {at}"
                )
                if self.patch_at is not None:
                    record = bytearray(record)
                    for offset, value in zip(self.patch_at[j], self.patch_values[j]):
                        record[offset : offset + 4] = value.astype("<f4").tobytes()
                    record = bytes(record)
                yield record


def score_spill(
    spilled: SpilledRecording, scores: np.ndarray | None, max_score: float
) -> tuple[ScoredSpill, list[RejectedWindow]]:
    """The recording's kept windows after the autoencoder's ``scores`` (ae_score, and artifact_score
    = max(rules, autoencoder)), and a ``RejectedWindow`` for each window whose artifact_score then
    exceeds ``max_score``. ``scores=None``: every window kept as spilled."""
    scored = ScoredSpill(
        spilled.source,
        spilled.spill,
        spilled.site,
        (spilled.recording_id, spilled.source),
        np.arange(len(spilled)),
        spilled.frame_offsets,
        spilled.sizes,
    )
    if scores is None:
        return scored, []
    if len(scores) != len(spilled):
        raise ValueError(f"scores: expected {len(spilled)} values for {spilled.source}; got {len(scores)}")
    ae = np.asarray(scores, dtype=np.float32)
    combined = np.maximum(spilled.rule_scores.astype(np.float32), ae)
    keep = combined <= np.float32(max_score)
    rejected = [
        RejectedWindow(
            spilled.source,
            spilled.site,
            float(spilled.starts[i]),
            [f"artifact_score={float(combined[i]):.4g} > max_artifact_score={max_score:.4g}"],
        )
        for i in np.flatnonzero(~keep)
    ]
    patch_at = np.stack([spilled.quality_offsets + 4 * AE_INDEX, spilled.score_offsets], axis=1)[keep]
    patch_values = np.stack([ae, combined], axis=1)[keep]
    kept = dict(kept=np.flatnonzero(keep), frame_offsets=spilled.frame_offsets[keep], sizes=spilled.sizes[keep])
    return dataclasses.replace(scored, **kept, patch_at=patch_at, patch_values=patch_values), rejected
