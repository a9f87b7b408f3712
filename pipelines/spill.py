"""Spill files: a recording's encoded windows kept out of the Beam graph until they are scored.

The artifact autoencoder is fitted on a sample of every window's features, so no window can be
scored before all recordings are processed. Windows flowing through the graph would therefore be
materialized in full between processing and scoring: a shuffle of all the EEG on Dataflow, and two
trips through the runner process for every window in the DirectRunner's ``multi_processing`` mode
(where that traffic, not the signal processing, limited the speed-up from a second worker).

Instead, processing writes each recording's windows to one spill file (plain TFRecord framing of the
encoded ``tf.train.Example``s, with the rule-based artifact score and ``ae_score`` = -1) and passes on
a small :class:`SpilledRecording`: the file's path and, per window, the autoencoder features, the
rule score and the byte offsets of the two scores in its record. Scoring reads the file back once
and overwrites the scores in place (floats have a fixed width on the wire, so the bytes equal
those of encoding the updated record; tested), then hands the records to the TFRecord sink. The
last step of the job deletes the spill folder.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Iterator

import numpy as np
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from pipelines import schema
from pipelines.artifact_ae import band_features
from pipelines.process import RECORD_QUALITY_NAMES, RejectedWindow, Window
from pipelines.tfrecord import frame_record, read_records

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

    def __len__(self) -> int:
        return len(self.starts)


def spill_path(spill_dir: str, source: str) -> str:
    """The spill file of input ``source``: named by a hash of its path (never by its contents or
    header), so a retried bundle rewrites the same file."""
    return FileSystems.join(spill_dir, hashlib.sha256(source.encode()).hexdigest()[:32] + ".tfrecord")


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

    def __len__(self) -> int:
        return len(self._rows)

    def add(self, window: Window) -> None:
        rec = window.record
        data, offsets = schema.encode_example_patchable(rec, PATCHED)
        if self._fh is None:
            self._fh, self._first = FileSystems.create(self.path), rec
        self._fh.write(frame_record(data))
        self._rows.append((float(rec.window_start_s), rec.n_times,
                           f"{rec.task.decode() or 'unlabeled'}:{int(rec.label)}", float(rec.artifact_score),
                           ae_features(window), offsets["quality"], offsets["artifact_score"]))

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def recording(self, source: str) -> SpilledRecording:
        """The metadata of everything added (at least one window), after :meth:`close`."""
        starts, n_times, labels, scores, features, quality_at, score_at = zip(*self._rows)
        rec = self._first
        return SpilledRecording(
            source, self.path, rec.site_id.decode(), rec.subject_id.decode(), rec.recording_id.decode(),
            np.array(starts), np.array(n_times, dtype=np.int64), list(labels),
            np.array(scores, dtype=np.float32), np.stack(features).astype(np.float32),
            np.array(quality_at, dtype=np.int64), np.array(score_at, dtype=np.int64))


def sample_items(spilled: SpilledRecording, train_sites: frozenset) -> list[tuple[str, np.ndarray]]:
    """(sample key, features) of a recording's windows if it is from a training site (all sites when
    ``train_sites`` is empty). The key hashes the recording pseudonym and the window start, so
    every runner and worker count draws the same sample."""
    if train_sites and spilled.site not in train_sites:
        return []
    prefix = spilled.recording_id.encode() + b"|"
    return [(hashlib.sha256(prefix + str(float(start)).encode()).hexdigest(), features)
            for start, features in zip(spilled.starts, spilled.features)]


def scored_records(spilled: SpilledRecording, scores: np.ndarray | None, max_score: float
                   ) -> Iterator[bytes | RejectedWindow]:
    """The recording's records read back, with the autoencoder's ``scores`` written in (ae_score,
    and artifact_score = max(rules, autoencoder)); a window whose artifact_score exceeds
    ``max_score`` comes as a ``RejectedWindow`` instead. ``scores=None``: records as spilled."""
    if scores is not None and len(scores) != len(spilled):
        raise ValueError(f"scores: expected {len(spilled)} values for {spilled.source}; got {len(scores)}")
    count = 0
    with FileSystems.open(spilled.spill, compression_type=CompressionTypes.UNCOMPRESSED) as fh:
        for i, raw in enumerate(read_records(fh, compression=None)):
            if i >= len(spilled):
                break
            count += 1
            if scores is None:
                yield raw
                continue
            score = np.float32(scores[i])
            combined = np.float32(max(float(spilled.rule_scores[i]), float(score)))
            if float(combined) > max_score:
                yield RejectedWindow(spilled.source, spilled.site, float(spilled.starts[i]),
                                     [f"artifact_score={float(combined):.4g} > max_artifact_score={max_score:.4g}"])
                continue
            record = bytearray(raw)
            ae_at = int(spilled.quality_offsets[i]) + 4 * AE_INDEX
            record[ae_at: ae_at + 4] = score.astype("<f4").tobytes()
            score_at = int(spilled.score_offsets[i])
            record[score_at: score_at + 4] = combined.astype("<f4").tobytes()
            yield bytes(record)
    if count != len(spilled):
        raise OSError(f"{spilled.spill}: expected {len(spilled)} spilled windows of {spilled.source}; "
                      f"found {count}")


def remove_spill(spill_dir: str) -> None:
    """Delete the spill files and, on local disk, their folder (object stores have none)."""
    files = [m.path for m in FileSystems.match([FileSystems.join(spill_dir, "*")])[0].metadata_list]
    if files:
        FileSystems.delete(files)
    if "://" not in spill_dir and os.path.isdir(spill_dir):
        os.rmdir(spill_dir)
