"""Writing rendered recordings: EDF/EDF+ per site conventions, HMS parquet, CSV and JSON.

Sinks consume :class:`~pipelines.simulate.render.RenderedChunk` objects one at a time, so a
recording of any length is written with bounded memory:

- :class:`EdfSink`: the site's channel labels and order, physical units and ranges (quantized by
  :mod:`pipelines.edf`), auxiliary channels, identifiers planted in the header, and for EDF+ sites
  technician and photic annotations.
- :class:`HmsSink`: exactly Kaggle's layout: ``train_eegs/<eeg_id>.parquet`` with the 19 canonical
  channels + ``EKG`` as float32 microvolts at 200 Hz (rounded to 0.01 µV like the real files;
  channels the site does not record are NaN), and ``train_spectrograms/<spectrogram_id>.parquet``
  (see :mod:`pipelines.simulate.spectrogram`).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from eegfm.pipelines.channels import CANONICAL_CHANNELS
from eegfm.pipelines.edf import Annotation, EDFHeader, EDFSignal, EDFWriter
from eegfm.pipelines.simulate.plan import RecordingPlan
from eegfm.pipelines.simulate.render import RenderedChunk
from eegfm.pipelines.simulate.resample import StreamingResampler
from eegfm.pipelines.simulate.spectrogram import HMS_SFREQ, SpectrogramStream, spectrogram_columns
from eegfm.pipelines.simulate.votes import VOTE_COLUMNS

HMS_EEG_COLUMNS: tuple[str, ...] = (*CANONICAL_CHANNELS, "EKG")
TRAIN_COLUMNS: tuple[str, ...] = (
    "eeg_id",
    "eeg_sub_id",
    "eeg_label_offset_seconds",
    "spectrogram_id",
    "spectrogram_sub_id",
    "spectrogram_label_offset_seconds",
    "label_id",
    "patient_id",
    "expert_consensus",
    *VOTE_COLUMNS,
)
ECG_RANGE_UV = 10_000.0
# Parquet row groups of fixed sizes, so files do not depend on chunking and memory stays bounded:
# EEG 60 s at 200 Hz; spectrogram 1 hour (one group for recordings up to an hour, like Kaggle's).
ROW_GROUP_ROWS = 12_000
SPECTROGRAM_ROW_GROUP_ROWS = 1_800
RECORD_DURATION_S = 1


# EDF -----------------------------------------------------------------------------------------


def edf_signals(plan: RecordingPlan) -> tuple[EDFSignal, ...]:
    """Header entries for the site's EEG channels (site order) then its auxiliary channels."""
    site = plan.site
    scale = site.units_per_uv
    digital_min = -32768 if site.digital_max == 32767 else -site.digital_max

    def make(label: str, physical_max: float, dimension: str, transducer: str) -> EDFSignal:
        return EDFSignal(
            label=label,
            physical_min=-physical_max,
            physical_max=physical_max,
            samples_per_record=site.sfreq * RECORD_DURATION_S,
            physical_dimension=dimension,
            digital_min=digital_min,
            digital_max=site.digital_max,
            transducer=transducer,
            prefiltering=site.prefiltering,
        )

    signals = [
        make(site.eeg_label(c), site.physical_max, site.physical_dimension, site.transducer)
        for c in site.recorded_channels()
    ]
    for kind in site.aux_channels:
        if kind == "photic":
            signals.append(make(site.aux_label(kind), 1.0, "", ""))
        else:
            physical_max = ECG_RANGE_UV * scale if kind == "ecg" else site.physical_max
            signals.append(make(site.aux_label(kind), physical_max, site.physical_dimension, site.transducer))
    return tuple(signals)


def edf_annotations(plan: RecordingPlan) -> tuple[Annotation, ...]:
    """Technician notes (planted identifiers) and photic-stimulation markers, EDF+ sites only."""
    if not plan.site.edf_plus:
        return ()
    photic = []
    if "photic" in plan.site.aux_channels:
        for start, end, freq in plan.artifacts.photic_trains:
            photic.append(Annotation(onset=start, text=f"Photic {freq:g} Hz", duration=end - start))
    return tuple(sorted((*plan.planted.annotations, *photic), key=lambda a: a.onset))


def edf_header(plan: RecordingPlan) -> EDFHeader:
    return EDFHeader(
        signals=edf_signals(plan),
        start=plan.start,
        patient=plan.planted.patient,
        recording=plan.planted.recording,
        record_duration=RECORD_DURATION_S,
        edf_plus=plan.site.edf_plus,
    )


class EdfSink:
    """Writes one recording as the site would export it."""

    def __init__(self, path: Path, plan: RecordingPlan) -> None:
        self.plan = plan
        index = {c: i for i, c in enumerate(CANONICAL_CHANNELS)}
        self._rows = [index[c] for c in plan.site.recorded_channels()]
        self._writer = EDFWriter(path, edf_header(plan), edf_annotations(plan))

    def write(self, chunk: RenderedChunk) -> None:
        scale = self.plan.site.units_per_uv
        rows = [chunk.eeg[self._rows] * scale]
        for kind in self.plan.site.aux_channels:
            factor = 1.0 if kind == "photic" else scale
            rows.append(chunk.aux[kind][None, :] * factor)
        self._writer.write(np.vstack(rows))

    def close(self) -> None:
        self._writer.close()

    def abort(self) -> None:
        self._writer.abort()


# HMS parquet ---------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def hms_eeg_schema() -> pa.Schema:
    """Kaggle's EEG parquet schema: 20 float32 columns, with pandas metadata like the originals."""
    import pandas as pd  # only for the metadata; imported here to keep start-up light

    empty = np.empty((0, len(HMS_EEG_COLUMNS)), dtype=np.float32)
    frame = pd.DataFrame(empty, columns=list(HMS_EEG_COLUMNS))
    return pa.Schema.from_pandas(frame, preserve_index=False)


@lru_cache(maxsize=1)
def hms_spectrogram_schema() -> pa.Schema:
    import pandas as pd

    columns = spectrogram_columns()
    frame = pd.DataFrame(np.empty((0, len(columns) - 1), dtype=np.float32), columns=columns[1:])
    frame.insert(0, "time", np.empty(0, dtype=np.int64))
    return pa.Schema.from_pandas(frame, preserve_index=False)


class HmsSink:
    """Resamples a recording to 200 Hz and writes Kaggle's EEG and spectrogram parquet files.

    It must see the renderer's whole stream, warm-up included (``first_sample`` < 0, so the
    resampling filter has history at time 0), and a little past the end (the filter's look-ahead);
    it keeps exactly ``duration_s * 200`` samples starting at time 0.
    """

    def __init__(self, eeg_path: Path, spectrogram_path: Path, plan: RecordingPlan, first_sample: int) -> None:
        site = plan.site
        self.plan = plan
        self._recorded = np.array([c not in site.missing_channels for c in CANONICAL_CHANNELS])
        self._has_ecg = "ecg" in site.aux_channels
        n_rows = int(self._recorded.sum()) + int(self._has_ecg)
        self._resampler = StreamingResampler(site.sfreq, HMS_SFREQ, n_rows)
        if (first_sample * HMS_SFREQ) % site.sfreq:
            raise ValueError(f"first_sample: must be whole seconds before time 0; got {first_sample}")
        self._skip = -first_sample * HMS_SFREQ // site.sfreq
        self.n_total = plan.duration_s * HMS_SFREQ
        self.n_written = 0
        self._pending: list[np.ndarray] = []  # float32 blocks (20, n) not yet in a row group
        self._spectrogram = SpectrogramStream(self.n_total)
        self._spectrogram_rows: list[np.ndarray] = []  # (rows, 401) blocks not yet written
        self._spectrogram_writer = pq.ParquetWriter(spectrogram_path, hms_spectrogram_schema(), compression="snappy")
        # Plain encoding: same schema and values as Kaggle's files; dictionary encoding (which
        # Kaggle's writer tried and abandoned for these float columns) costs 10x the time here.
        self._writer = pq.ParquetWriter(eeg_path, hms_eeg_schema(), compression="snappy", use_dictionary=False)

    def write(self, chunk: RenderedChunk) -> None:
        rows = [chunk.eeg[self._recorded]]
        if self._has_ecg:
            rows.append(chunk.aux["ecg"][None, :])
        out = self._resampler.process(np.vstack(rows))
        drop = min(self._skip, out.shape[1])
        self._skip -= drop
        out = out[:, drop : self.n_total - self.n_written + drop]
        if out.shape[1]:
            self._write_rows(out)

    def _write_rows(self, resampled: np.ndarray) -> None:
        full = np.full((len(HMS_EEG_COLUMNS), resampled.shape[1]), np.nan)
        full[: len(CANONICAL_CHANNELS)][self._recorded] = resampled[: int(self._recorded.sum())]
        if self._has_ecg:
            full[-1] = resampled[-1]
        values = np.round(full, 2).astype(np.float32)
        self._spectrogram_rows.append(self._spectrogram.feed(values[: len(CANONICAL_CHANNELS)].astype(np.float64)))
        self._write_spectrogram(final=False)
        self._pending.append(values)
        self.n_written += values.shape[1]
        self._write_row_groups(final=self.n_written >= self.n_total)

    def _write_row_groups(self, *, final: bool) -> None:
        buffered = np.concatenate(self._pending, axis=1) if self._pending else np.empty((20, 0))
        start = 0
        while buffered.shape[1] - start >= ROW_GROUP_ROWS or (final and start < buffered.shape[1]):
            block = buffered[:, start : start + ROW_GROUP_ROWS]
            table = pa.Table.from_arrays([pa.array(v) for v in block], schema=hms_eeg_schema())
            self._writer.write_table(table, row_group_size=ROW_GROUP_ROWS)
            start += block.shape[1]
        self._pending = [buffered[:, start:]] if start < buffered.shape[1] else []

    def _write_spectrogram(self, *, final: bool) -> None:
        if not final and sum(len(r) for r in self._spectrogram_rows) < SPECTROGRAM_ROW_GROUP_ROWS:
            return  # wait for a full row group
        rows = np.concatenate(self._spectrogram_rows, axis=0)
        start = 0
        while len(rows) - start >= SPECTROGRAM_ROW_GROUP_ROWS or (final and start < len(rows)):
            block = rows[start : start + SPECTROGRAM_ROW_GROUP_ROWS]
            arrays = [pa.array(block[:, 0].astype(np.int64))]
            arrays += [pa.array(block[:, i].astype(np.float32)) for i in range(1, block.shape[1])]
            table = pa.Table.from_arrays(arrays, schema=hms_spectrogram_schema())
            self._spectrogram_writer.write_table(table, row_group_size=SPECTROGRAM_ROW_GROUP_ROWS)
            start += len(block)
        self._spectrogram_rows = [rows[start:]]

    def close(self) -> None:
        self._write_row_groups(final=True)
        self._writer.close()
        if self.n_written != self.n_total:
            self._spectrogram_writer.close()
            raise RuntimeError(
                f"eeg {self.plan.eeg_id}: wrote {self.n_written} samples at 200 Hz, expected "
                f"{self.n_total} (feed the renderer past the end of the recording)"
            )
        self._spectrogram_rows.append(self._spectrogram.finish())
        self._write_spectrogram(final=True)
        self._spectrogram_writer.close()

    def abort(self) -> None:
        self._writer.close()
        self._spectrogram_writer.close()


# Tables --------------------------------------------------------------------------------------


def label_rows(plan: RecordingPlan) -> list[dict[str, Any]]:
    """train.csv rows of one recording (HMS columns + ``site``)."""
    rows = []
    for window in plan.windows:
        row = {
            "eeg_id": plan.eeg_id,
            "eeg_sub_id": window.eeg_sub_id,
            "eeg_label_offset_seconds": window.offset_s,
            "spectrogram_id": plan.spectrogram_id,
            "spectrogram_sub_id": window.eeg_sub_id,
            "spectrogram_label_offset_seconds": window.spectrogram_offset_s,
            "label_id": window.label_id,
            "patient_id": plan.patient.patient_id,
            "expert_consensus": window.consensus,
        }
        row.update(zip(VOTE_COLUMNS, window.votes))
        row["site"] = plan.site.name
        rows.append(row)
    return rows


def write_csv(path: Path, columns: Sequence[str], rows: Iterable[dict[str, Any]]) -> int:
    """Write rows with a fixed column order; floats as Python prints them (0.0, 125.0)."""
    count = 0
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns), lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({c: row[c] for c in columns})
            count += 1
    return count


def write_json(path: Path, payload: Any) -> None:
    path.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n", encoding="utf-8")


def write_jsonl(path: Path, records: Iterable[dict[str, Any]]) -> int:
    count = 0
    with open(path, "w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, sort_keys=False) + "\n")
            count += 1
    return count
