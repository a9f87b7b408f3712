"""A recording sent as JSON (``{"signals": [[...], ...], "sfreq": 256, "channel_names": [...]}``):
parsed as a stream, checked field by field, then saved as a FIF file the pipeline reads like any upload."""

from __future__ import annotations

import array
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from eegfm.contract.channels import auxiliary_kind, canonical_name, standard_name

MAX_SFREQ = 20_000.0


class SignalsRequest(BaseModel):
    """The request body of ``POST /v1/predict`` with ``Content-Type: application/json``."""

    model_config = ConfigDict(extra="forbid")

    signals: list[list[float]] = Field(
        description="one row per channel, in microvolts, all rows of equal length (samples over time)"
    )
    sfreq: float = Field(gt=0, le=MAX_SFREQ, description="samples per second of every row")
    channel_names: list[str] = Field(
        description="the rows' channel labels, in order: 10-20/10-10 electrodes ('Fp1', 'EEG T3-REF' ...) "
        "or auxiliary signals ('ECG', 'EOG' ...); at least one of the 19 channels of the 10-20 montage"
    )


class SignalsError(ValueError):
    """A JSON body that is not a recording; the message names the field."""


def parse_signals(body: Path) -> tuple[np.ndarray, float, list[str]]:
    """(channels, samples) microvolts, the sampling rate and the labels of the JSON body saved at
    ``body``, or SignalsError naming the field and what was expected. The body is parsed as a stream
    of events: samples go straight into one float64 buffer (8 bytes each, never a Python float),
    and nothing is nested deeper than a row of samples, so a body of ``n`` bytes costs at most
    ``4 n`` bytes of memory (a sample takes at least 2 bytes of JSON: ``0,``)."""
    import ijson  # the serve extra's: only for a JSON upload

    with body.open("rb") as stream:
        reader = _EventReader(ijson.basic_parse(stream, use_float=True))
        try:
            fields = reader.document()
        except ijson.JSONError:
            raise SignalsError(reader.invalid_json()) from None
        except UnicodeDecodeError:
            raise SignalsError("body: expected a JSON object in UTF-8") from None
    names = _channel_names(fields.get("channel_names"))
    sfreq = _sfreq(fields.get("sfreq"))
    return _signals(fields.get("signals"), len(names)), sfreq, names


_KINDS = {
    "start_map": "dict",
    "start_array": "list",
    "string": "str",
    "number": "number",
    "boolean": "bool",
    "null": "null",
}


class _EventReader:
    """The body's fields read from ijson's events; ``where`` says what was being read, for an
    error the parser raises part-way (a ``NaN`` sample is not JSON: yajl stops at it)."""

    def __init__(self, events: Iterator[tuple[str, Any]]) -> None:
        self.events, self.where = events, "body"
        self.row: tuple[int, int, array.array] | None = None  # the row being read: index, start, samples

    def invalid_json(self) -> str:
        # the parser's own message quotes the body around the fault: it may hold a patient's name
        if self.row is not None:
            row, start, samples = self.row
            return (
                f"signals[{row}][{len(samples) - start}]: expected a finite number; the body is not valid "
                "JSON there (NaN and Infinity are not JSON numbers)"
            )
        return f"body: expected a JSON object; it is not valid JSON (reading {self.where})"

    def document(self) -> dict[str, Any]:
        event, _ = next(self.events, ("end", None))
        if event != "start_map":
            got = _KINDS.get(event, "an empty body")
            raise SignalsError(f"body: expected a JSON object with signals, sfreq and channel_names; got {got}")
        fields: dict[str, Any] = {}
        for event, key in self.events:
            if event == "end_map":
                break
            if key not in _FIELDS:  # the name is not echoed: a client's key may name the patient
                raise SignalsError("body: expected only the fields signals, sfreq and channel_names; got another")
            if key in fields:
                raise SignalsError(f"{key}: expected once; the body repeats it")
            self.where = key
            fields[key] = getattr(self, f"_{key}")()
        for _ in self.events:  # yajl itself refuses anything after the object
            pass
        return fields

    def _sfreq(self) -> Any:
        event, value = next(self.events)
        if event in ("start_map", "start_array"):
            raise SignalsError(f"sfreq: expected the sampling rate in Hz, a number; got {_KINDS[event]}")
        return value

    def _channel_names(self) -> list[str] | None:
        names: list[str] = []
        event, _ = next(self.events)
        if event != "start_array":
            raise SignalsError("channel_names: expected a non-empty array of channel labels (strings)")
        for event, value in self.events:
            if event == "end_array":
                return names
            if event != "string":
                raise SignalsError("channel_names: expected a non-empty array of channel labels (strings)")
            names.append(value)
        return names

    def _signals(self) -> tuple[array.array, list[int]]:
        samples, lengths = array.array("d"), []
        event, _ = next(self.events)
        if event != "start_array":
            raise SignalsError("signals: expected an array of rows (one array of samples per channel)")
        for event, _ in self.events:
            if event == "end_array":
                break
            if event != "start_array":
                raise SignalsError("signals: expected an array of rows (one array of samples per channel)")
            lengths.append(self._row(samples, len(lengths)))
        return samples, lengths

    def _row(self, samples: array.array, row: int) -> int:
        """Row ``row``'s samples appended to ``samples``; its length."""
        start = len(samples)
        self.row = row, start, samples
        for event, value in self.events:
            if event == "end_array":
                break
            if event != "number":
                raise SignalsError(f"signals[{row}]: expected numbers (microvolts)")
            samples.append(value)
        self.row = None
        return len(samples) - start


_FIELDS = ("signals", "sfreq", "channel_names")


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _sfreq(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise SignalsError(f"sfreq: expected the sampling rate in Hz, a number; got {_kind(value)}")
    if not 0 < value <= MAX_SFREQ:
        raise SignalsError(f"sfreq: expected a rate in (0, {MAX_SFREQ:g}] Hz; got {value}")
    return float(value)


def _channel_names(value: Any) -> list[str]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise SignalsError("channel_names: expected a non-empty array of channel labels (strings)")
    seen: set[str] = set()
    for i, name in enumerate(value):
        if standard_name(name) is None and auxiliary_kind(name) is None:
            raise SignalsError(  # the label is not echoed: a free-text label may name the patient
                f"channel_names[{i}]: expected a 10-20/10-10 electrode (Fp1, T3, EEG Cz-REF ...) or an "
                "auxiliary signal (ECG, EOG, EMG ...); this label is neither"
            )
        if name in seen:
            raise SignalsError(f"channel_names[{i}]: expected unique labels; this one repeats an earlier one")
        seen.add(name)
    if not any(canonical_name(name) for name in value):
        raise SignalsError("channel_names: expected at least one of the 19 channels of the 10-20 montage")
    return list(value)


def _signals(value: tuple[array.array, list[int]] | None, n_channels: int) -> np.ndarray:
    if value is None:
        raise SignalsError("signals: expected an array of rows (one array of samples per channel)")
    samples, lengths = value
    if len(lengths) != n_channels:
        raise SignalsError(
            f"signals: expected {n_channels} rows, one per entry of channel_names; got {len(lengths)} "
            "(rows are channels, columns samples)"
        )
    if len(set(lengths)) != 1 or 0 in lengths:
        raise SignalsError(f"signals: expected rows of one non-zero length; got lengths {sorted(set(lengths))[:5]}")
    signals = np.frombuffer(samples, dtype=np.float64).reshape(n_channels, lengths[0])  # no copy
    bad = np.argwhere(~np.isfinite(signals))
    if len(bad):
        row, col = bad[0]
        raise SignalsError(f"signals[{row}][{col}]: expected a finite number; got {signals[row, col]}")
    return signals


def save_fif(signals: np.ndarray, sfreq: float, names: list[str], path: Path) -> None:
    """The recording as a FIF file (volts, as MNE stores EEG): the pipeline reads it as any upload."""
    import mne  # heavy: only for a JSON upload

    kinds = ["eeg" if standard_name(name) else auxiliary_kind(name) or "misc" for name in names]
    info = mne.create_info(names, sfreq, ch_types=kinds, verbose="error")
    volts = np.multiply(signals, 1e-6, out=signals if signals.flags.writeable else None)  # in place: no copy
    mne.io.RawArray(volts, info, verbose="error").save(path, overwrite=True, verbose="error")
