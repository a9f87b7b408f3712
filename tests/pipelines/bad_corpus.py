"""Forge a corpus of broken inputs, each paired with the words its quarantine reason must contain.

Every file is built from real data (an eegmat EDF, the HMS parquet) or with `simulate.edf`'s
writer, then damaged in one specific way, the way clinical archives damage files.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from eegfm.contract.channels import CANONICAL_CHANNELS
from eegfm.simulate.edf import EDFHeader, EDFSignal, write_edf

GOOD_EDF = "eegmat/Subject05_2.edf"


def _signal(label: str, sfreq: int = 256, unit: str = "uV") -> EDFSignal:
    return EDFSignal(
        label=label, physical_min=-3200.0, physical_max=3200.0, samples_per_record=sfreq, physical_dimension=unit
    )


def _write(path: Path, labels: list[str], data: np.ndarray) -> None:
    header = EDFHeader(signals=tuple(_signal(lbl) for lbl in labels), start=datetime(2024, 1, 2, 3, 4, 5))
    write_edf(path, header, data)


def _patch(raw: bytes, offset: int, width: int, text: str) -> bytes:
    return raw[:offset] + text.ljust(width).encode("ascii") + raw[offset + width :]


def make_bad_corpus(root: Path, shared_data: Path) -> dict[str, str]:
    """Write the broken files into `root`; return {file name: text its quarantine reason names}."""
    root.mkdir(parents=True, exist_ok=True)
    good = (shared_data / GOOD_EDF).read_bytes()
    ns = int(good[252:256].decode())
    n_records = int(good[236:244].decode())
    expected: dict[str, str] = {}

    (root / "truncated.edf").write_bytes(good[: len(good) // 2 + 17])
    expected["truncated.edf"] = "truncated file or wrong record count"

    (root / "wrong_record_count.edf").write_bytes(_patch(good, 236, 8, str(n_records - 20)))
    expected["wrong_record_count.edf"] = f"header declares {n_records - 20}"

    (root / "non_numeric_header.edf").write_bytes(_patch(good, 244, 8, "one sec"))
    expected["non_numeric_header.edf"] = "header field duration of a data record: expected a number; got 'one sec'"

    (root / "empty.edf").write_bytes(b"")
    expected["empty.edf"] = "got an empty (0-byte) file"

    (root / "absurd_signal_count.edf").write_bytes(_patch(good, 252, 4, "9999"))
    expected["absurd_signal_count.edf"] = "number of signals: expected 1..4096; got 9999"

    # samples per record of the first signal = 0: a sampling rate of 0 Hz. The per-signal fields
    # before it: label 16, transducer 80, dimension/phys min/phys max/dig min/dig max 5 x 8,
    # prefiltering 80 bytes, each stored for all signals in turn.
    spr_offset = 256 + ns * (16 + 80 + 5 * 8 + 80)
    (root / "zero_rate.edf").write_bytes(_patch(good, spr_offset, 8, "0"))
    expected["zero_rate.edf"] = (
        "samples per record of signal 1 ('EEG Fp1'): expected >= 1 (a sampling rate above 0 Hz); got 0"
    )

    rng = np.random.default_rng(0)
    eeg = rng.normal(0, 20, size=(19, 256 * 30))
    labels = [f"EEG {c}-REF" for c in CANONICAL_CHANNELS]
    _write(root / "duplicate_channels.edf", labels[:-1] + [labels[0]], eeg)
    expected["duplicate_channels.edf"] = "channel names: expected unique names; duplicated ['EEG Fp1-REF']"

    _write(root / "flat_signals.edf", labels, np.zeros((19, 256 * 30)))
    expected["flat_signals.edf"] = "all 19 EEG channels are constant from start to end"

    _write(root / "only_non_eeg.edf", ["ECG", "EOG LOC", "EMG chin"], rng.normal(0, 50, size=(3, 256 * 30)))
    expected["only_non_eeg.edf"] = "only 0 of the 19 10-20 channels are present (none)"

    hms = pd.read_parquet(shared_data / "hms" / "train_eegs" / "1000913311.parquet")
    (root / "csv_named.parquet").write_text(hms.head(50).to_csv(index=False))
    expected["csv_named.parquet"] = "not a parquet file"

    hms.drop(columns=["Fz", "Cz", "Pz"]).to_parquet(root / "missing_columns.parquet")
    expected["missing_columns.parquet"] = "missing Fz, Cz, Pz"

    nan = hms.copy()
    nan[list(CANONICAL_CHANNELS)] = np.nan
    nan.to_parquet(root / "nan_signals.parquet")
    expected["nan_signals.parquet"] = "columns entirely NaN (not recorded): Fp1, F3"
    gap = hms.copy()
    burst = (np.arange(len(gap)) % 1000) <= 20  # 0.1 s of NaN every 5 s: every window is hit
    for col in list(CANONICAL_CHANNELS)[:12]:
        gap.loc[burst, col] = np.nan
    gap.to_parquet(root / "nan_bursts.parquet")
    expected["nan_bursts.parquet"] = "no usable windows: all 5 windows rejected ("
    return expected
