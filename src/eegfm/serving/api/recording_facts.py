"""What ``/v1/traces`` tells the uploader about the recording beyond the pipeline's windows, read
from the file itself: its auxiliary channels over the span (ECG, EOG, EMG, respiration), its own
annotations, when it was recorded, and its ``recording_id`` (the key of the reviewer's marks).

The auxiliary channels are named by kind only ('ECG', 'EOG 1', 'EOG 2'): never by the file's
labels, which may carry a name. Annotation text and the recording's date go back to the uploader
alone, who sent them: nothing here is logged or written.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from eegfm.contract.channels import auxiliary_kind, clean_channel_name
from eegfm.contract.schema import SFREQ
from eegfm.core.dsp.resample import resample
from eegfm.pipelines.readers import ReaderError, open_recording

# The kinds drawn beside the EEG, by the name they are shown under; stimulus and trend channels
# (triggers, SpO2 at 1 Hz) are not waveforms to read.
_SHOWN = {"ecg": "ECG", "eog": "EOG", "emg": "EMG", "resp": "Resp"}
_RESP = re.compile(r"^RESP", re.IGNORECASE)
MAX_ANNOTATIONS = 20_000  # a month of one-per-minute notes; more would make the reply the file
MAX_EXTRA = 16


def recording_id(path: Path) -> str:
    """The first 32 hex digits of the upload's sha256: the same file gets the same marks."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()[:32]


def _kind(label: str) -> str | None:
    kind = auxiliary_kind(label)
    if kind == "misc" and _RESP.match(clean_channel_name(label)):
        return "resp"
    return kind if kind in _SHOWN else None


@contextlib.contextmanager
def recording_facts(path: str, preprocess) -> Iterator[RecordingFacts | None]:
    """The facts of the file behind a pipeline item, opened as the pipeline opens it (a gzipped
    EDF decompressed within ``preprocess``' limits), or None where the readers cannot open it
    alone: the traces are answered without them rather than not at all."""
    from eegfm.pipelines.job.process_io import StageError
    from eegfm.pipelines.readers.local_copy import DecompressLimit, localized

    limit = DecompressLimit(preprocess.max_decompressed_ratio, preprocess.max_decompressed_gb)
    with contextlib.ExitStack() as stack:
        try:
            local, _ = stack.enter_context(localized(path, limit))
            reader = stack.enter_context(contextlib.closing(open_recording(local)))
        except (ReaderError, StageError, OSError):
            reader = None
        yield None if reader is None else RecordingFacts(reader)


class RecordingFacts:
    """What an open reader says of its recording beyond the EEG (see the module docstring)."""

    def __init__(self, reader) -> None:
        self.reader = reader

    def annotations(self) -> list[dict[str, Any]]:
        """The recording's own annotations, all of them (up to MAX_ANNOTATIONS), in time order."""
        events = sorted(self.reader.events)[:MAX_ANNOTATIONS]
        return [
            {"onset_s": round(float(onset), 4), "duration_s": round(float(duration), 4), "text": str(text)}
            for onset, duration, text in events
        ]

    def recorded_at(self) -> str | None:
        at = self.reader.recorded_at
        return None if at is None else at.isoformat()

    def extra(self, first: int, n: int) -> tuple[list[tuple[str, str]], np.ndarray]:
        """The auxiliary channels over samples ``first .. first + n`` of the 256 Hz timeline: their
        (shown name, kind) and (channels, n) µV, NaN where the file has no sample (a gap, the end)."""
        labels = self.reader.info.ch_names
        chosen = [(i, kind) for i, label in enumerate(labels) if (kind := _kind(label))][:MAX_EXTRA]
        counts = collections.Counter(kind for _, kind in chosen)
        seen: collections.Counter = collections.Counter()
        names = []
        for _, kind in chosen:
            seen[kind] += 1
            names.append((_SHOWN[kind] + (f" {seen[kind]}" if counts[kind] > 1 else ""), kind))
        values = np.full((len(chosen), n), np.nan, dtype=np.float32)
        if chosen:
            self._fill(values, [i for i, _ in chosen], first)
        return names, values

    def _fill(self, values: np.ndarray, rows: list[int], first: int) -> None:
        """``values`` filled from each recorded segment overlapping the span, resampled to 256 Hz."""
        sfreq, n = self.reader.info.sfreq, values.shape[1]
        for segment in self.reader.segments:
            # the segment on the 256 Hz timeline, in the span's samples
            seg_first = round(segment.onset_s * SFREQ)
            seg_n = int((segment.stop - segment.start) * SFREQ / sfreq)
            lo, hi = max(first, seg_first), min(first + n, seg_first + seg_n)
            if lo >= hi:
                continue
            # the file's samples for lo..hi and a second more on each side: the resampler's filter
            # rings where its input stops
            pad = int(sfreq)
            start = segment.start + max(0, int((lo - seg_first) * sfreq / SFREQ) - pad)
            stop = min(segment.stop, segment.start + int(np.ceil((hi - seg_first) * sfreq / SFREQ)) + pad)
            data = self.reader.read(start, stop, check_finite=False)[rows]
            at256 = resample(np.nan_to_num(data), sfreq, SFREQ)
            offset = round((start - segment.start) * SFREQ / sfreq) + seg_first  # at256's first sample
            take = at256[:, lo - offset : hi - offset]
            values[:, lo - first : lo - first + take.shape[1]] = take
