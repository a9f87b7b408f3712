"""Writing rendered recordings: EDF/EDF+ per site conventions (its montage included), HMS parquet,
CSV and JSON.

Sinks consume :class:`~simulate.render.RenderedChunk` objects one at a time, so a
recording of any length is written with bounded memory. :class:`HmsSink` writes exactly Kaggle's
layout: ``train_eegs/<eeg_id>.parquet`` (19 canonical channels + ``EKG``, float32 µV at 200 Hz
rounded to 0.01, NaN for channels the site does not record; referential whatever the site's
montage, as Kaggle's files are) and
``train_spectrograms/<spectrogram_id>.parquet`` (:mod:`simulate.spectrogram`).
"""

from __future__ import annotations

import csv
import dataclasses
import json
from collections.abc import Iterable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from eegfm.contract.channels import CANONICAL_CHANNELS
from eegfm.core.dsp.resample import Resampler
from eegfm.simulate.edf import Annotation, EDFHeader, EDFSignal, EDFWriter
from eegfm.simulate.montages import site_montage
from eegfm.simulate.plan import RecordingPlan
from eegfm.simulate.render import RenderedChunk
from eegfm.simulate.spectrogram import HMS_SFREQ, SpectrogramStream, spectrogram_columns
from eegfm.simulate.votes import VOTE_COLUMNS

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


def edf_signals(plan: RecordingPlan) -> tuple[EDFSignal, ...]:
    """Header entries for the site's EEG signals (its channels in site order, or its montage's
    derivations: :mod:`~simulate.montages`) then its auxiliary channels."""
    site = plan.site
    eeg = EDFSignal(
        label="",
        physical_min=-site.physical_max,
        physical_max=site.physical_max,
        samples_per_record=site.sfreq * RECORD_DURATION_S,
        physical_dimension=site.physical_dimension,
        digital_min=-32768 if site.digital_max == 32767 else -site.digital_max,
        digital_max=site.digital_max,
        transducer=site.transducer,
        prefiltering=site.prefiltering,
    )
    # The photic marker is a unitless 0/1; ECG is far larger than EEG. EOG and EMG are like EEG.
    ecg_max = ECG_RANGE_UV * site.units_per_uv
    aux = {
        "photic": dict(physical_min=-1.0, physical_max=1.0, physical_dimension="", transducer=""),
        "ecg": dict(physical_min=-ecg_max, physical_max=ecg_max),
    }
    signals = [dataclasses.replace(eeg, label=label) for label in site_montage(site).labels]
    signals += [dataclasses.replace(eeg, label=site.aux_label(k), **aux.get(k, {})) for k in site.aux_channels]
    return tuple(signals)


def edf_annotations(plan: RecordingPlan) -> tuple[Annotation, ...]:
    """Technician notes (planted identifiers) and photic-stimulation markers, EDF+ sites only."""
    if not plan.site.edf_plus:
        return ()
    # Photic trains are planned only where the site records a photic channel.
    photic = [Annotation(onset=s, text=f"Photic {f:g} Hz", duration=e - s) for s, e, f in plan.artifacts.photic_trains]
    return tuple(sorted((*plan.planted.annotations, *photic), key=lambda a: a.onset))


class EdfSink:
    """Writes one recording as the site would export it, in its montage."""

    def __init__(self, path: Path, plan: RecordingPlan) -> None:
        self.plan = plan
        self._montage = site_montage(plan.site)
        header = EDFHeader(
            signals=edf_signals(plan),
            start=plan.start,
            patient=plan.planted.patient,
            recording=plan.planted.recording,
            record_duration=RECORD_DURATION_S,
            edf_plus=plan.site.edf_plus,
        )
        self._writer = EDFWriter(path, header, edf_annotations(plan))

    def write(self, chunk: RenderedChunk) -> None:
        scale = self.plan.site.units_per_uv
        aux = [chunk.aux[kind] * (1.0 if kind == "photic" else scale) for kind in self.plan.site.aux_channels]
        self._writer.write(np.vstack([self._montage.apply(chunk.eeg) * scale, *aux]))

    def close(self) -> None:
        self._writer.close()

    def abort(self) -> None:
        self._writer.abort()


@lru_cache(maxsize=2)
def hms_schema(kind: str) -> pa.Schema:
    """Kaggle's parquet schemas with the pandas metadata of the originals: ``eeg``, 20 float32
    columns; ``spectrogram``, int64 ``time`` then 400 float32 columns."""
    import pandas as pd  # only for the metadata; imported here to keep start-up light

    columns = HMS_EEG_COLUMNS if kind == "eeg" else spectrogram_columns()
    frame = pd.DataFrame({c: np.empty(0, dtype=np.int64 if c == "time" else np.float32) for c in columns})
    return pa.Schema.from_pandas(frame, preserve_index=False)


class _RowGroupWriter:
    """A parquet file written in row groups of exactly ``rows`` rows (the last may be shorter)."""

    def __init__(self, path: Path, schema: pa.Schema, rows: int, **options: Any) -> None:
        self._writer = pq.ParquetWriter(path, schema, compression="snappy", **options)
        self._schema, self._rows = schema, rows
        self._pending = np.empty((0, len(schema)), dtype=np.float32)  # rows not yet in a row group

    def write(self, block: np.ndarray) -> None:
        """Buffer an (n, columns) block and write every full row group."""
        self._pending = np.concatenate([self._pending, block])
        self._write_rows(len(self._pending) // self._rows * self._rows)

    def _write_rows(self, n: int) -> None:
        """Write the first ``n`` buffered rows (write_table cuts them into row groups)."""
        if n:
            columns = zip(self._pending[:n].T, self._schema)
            arrays = [pa.array(column.astype(field.type.to_pandas_dtype())) for column, field in columns]
            self._writer.write_table(pa.Table.from_arrays(arrays, schema=self._schema), row_group_size=self._rows)
        self._pending = self._pending[n:]

    def close(self, *, flush: bool = False) -> None:
        """Close the file, first writing the buffered rows if ``flush``."""
        if flush:
            self._write_rows(len(self._pending))
        self._writer.close()


class HmsSink:
    """Resamples a recording to 200 Hz and writes Kaggle's EEG and spectrogram parquet files.

    It must see the renderer's whole stream, warm-up included (``first_sample`` < 0, so the
    resampling filter has history at time 0), and a little past the end (the filter's look-ahead);
    it keeps exactly ``duration_s * 200`` samples starting at time 0.
    """

    def __init__(self, eeg_path: Path, spectrogram_path: Path, plan: RecordingPlan, first_sample: int) -> None:
        site = plan.site
        self.plan = plan
        # The HMS columns the site records (its EEG channels, EKG if it records ECG); the rest are NaN.
        recorded = [c not in site.missing_channels for c in CANONICAL_CHANNELS] + ["ecg" in site.aux_channels]
        self._columns = np.array(recorded)
        self._resampler = Resampler(site.sfreq, int(self._columns.sum()), HMS_SFREQ)
        if (first_sample * HMS_SFREQ) % site.sfreq:
            raise ValueError(f"first_sample: must be whole seconds before time 0; got {first_sample}")
        self._skip = -first_sample * HMS_SFREQ // site.sfreq
        self.n_total = plan.duration_s * HMS_SFREQ
        self.n_written = 0
        self._spectrogram = SpectrogramStream(self.n_total)
        self._spectrogram_file = _RowGroupWriter(
            spectrogram_path, hms_schema("spectrogram"), SPECTROGRAM_ROW_GROUP_ROWS
        )
        # Plain encoding: same schema and values as Kaggle's files; dictionary encoding (which
        # Kaggle's writer tried and abandoned for these float columns) costs 10x the time here.
        self._eeg_file = _RowGroupWriter(eeg_path, hms_schema("eeg"), ROW_GROUP_ROWS, use_dictionary=False)

    def write(self, chunk: RenderedChunk) -> None:
        x = np.vstack([chunk.eeg, chunk.aux["ecg"]])[self._columns]
        second = self.plan.site.sfreq
        # One push per second: the resampler's float32 BLAS rounding then does not depend on the chunking.
        out = np.hstack([self._resampler.push(x[:, s : s + second]) for s in range(0, x.shape[1], second)])
        drop = min(self._skip, out.shape[1])
        self._skip -= drop
        out = out[:, drop : self.n_total - self.n_written + drop]
        if not out.shape[1]:
            return
        full = np.full((len(HMS_EEG_COLUMNS), out.shape[1]), np.nan)
        full[self._columns] = out
        values = np.round(full, 2).astype(np.float32)
        self._spectrogram_file.write(self._spectrogram.feed(values[: len(CANONICAL_CHANNELS)].astype(np.float64)))
        self.n_written += values.shape[1]
        self._eeg_file.write(values.T)

    def close(self) -> None:
        self._eeg_file.close(flush=True)
        if self.n_written != self.n_total:
            self._spectrogram_file.close()
            raise RuntimeError(
                f"eeg {self.plan.eeg_id}: wrote {self.n_written} samples at 200 Hz, expected "
                f"{self.n_total} (feed the renderer past the end of the recording)"
            )
        self._spectrogram_file.write(self._spectrogram.finish())
        self._spectrogram_file.close(flush=True)

    def abort(self) -> None:
        self._eeg_file.close()
        self._spectrogram_file.close()


def label_rows(plan: RecordingPlan) -> list[dict[str, Any]]:
    """train.csv rows of one recording (HMS columns + ``site``)."""
    return [
        {
            "eeg_id": plan.eeg_id,
            "eeg_sub_id": window.eeg_sub_id,
            "eeg_label_offset_seconds": window.offset_s,
            "spectrogram_id": plan.spectrogram_id,
            "spectrogram_sub_id": window.eeg_sub_id,
            "spectrogram_label_offset_seconds": window.spectrogram_offset_s,
            "label_id": window.label_id,
            "patient_id": plan.patient.patient_id,
            "expert_consensus": window.consensus,
            **dict(zip(VOTE_COLUMNS, window.votes)),
            "site": plan.site.name,
        }
        for window in plan.windows
    ]


def write_csv(path: Path, columns: Sequence[str], rows: Iterable[dict[str, Any]]) -> None:
    """Write rows with a fixed column order; floats as Python prints them (0.0, 125.0)."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns), lineterminator="\n")
        writer.writeheader()
        writer.writerows({c: row[c] for c in columns} for row in rows)


def write_json(path: Path, payload: Any) -> None:
    path.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n", encoding="utf-8")


def write_jsonl(path: Path, records: Iterable[dict[str, Any]]) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        handle.writelines(json.dumps(record, sort_keys=False) + "\n" for record in records)
