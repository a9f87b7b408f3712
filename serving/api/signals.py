"""A recording sent as JSON (``{"signals": [[...], ...], "sfreq": 256, "channel_names": [...]}``):
checked field by field, then saved as a FIF file the pipeline reads like any upload."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from eegfm.pipelines.channels import auxiliary_kind, canonical_name, standard_name

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


def parse_signals(body: bytes) -> tuple[np.ndarray, float, list[str]]:
    """(channels, samples) microvolts, the sampling rate and the labels of a JSON body, or
    SignalsError naming the field and what was expected."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as err:
        raise SignalsError(f"body: expected a JSON object ({type(err).__name__}: {err})") from None
    except RecursionError:  # the parser recurses per level: [[[[... a hundred thousand deep
        raise SignalsError("body: expected a JSON object of signals; got arrays or objects nested too deeply") from None
    if not isinstance(data, dict):
        raise SignalsError(f"body: expected a JSON object with signals, sfreq and channel_names; got {_kind(data)}")
    unknown = sorted(set(data) - {"signals", "sfreq", "channel_names"})
    if unknown:
        raise SignalsError(f"{unknown[0]}: not a field; expected only signals, sfreq and channel_names")
    names = _channel_names(data.get("channel_names"))
    sfreq = _sfreq(data.get("sfreq"))
    return _signals(data.get("signals"), len(names)), sfreq, names


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


def _signals(value: Any, n_channels: int) -> np.ndarray:
    if not isinstance(value, list) or not all(isinstance(row, list) for row in value):
        raise SignalsError("signals: expected an array of rows (one array of samples per channel)")
    if len(value) != n_channels:
        raise SignalsError(
            f"signals: expected {n_channels} rows, one per entry of channel_names; got {len(value)} "
            "(rows are channels, columns samples)"
        )
    lengths = {len(row) for row in value}
    if len(lengths) != 1 or 0 in lengths:
        raise SignalsError(f"signals: expected rows of one non-zero length; got lengths {sorted(lengths)[:5]}")
    for i, row in enumerate(value):
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in row):
            raise SignalsError(f"signals[{i}]: expected numbers (microvolts)")
    signals = np.asarray(value, dtype=np.float64)
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
    mne.io.RawArray(signals * 1e-6, info, verbose="error").save(path, overwrite=True, verbose="error")
