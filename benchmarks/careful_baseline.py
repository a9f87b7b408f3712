"""The careful user's band-power baseline on eegmat, outside eegfm: the named reference that the
benchmark's ``band_power_lr`` row must reach (the issue's 30-line recipe).

MNE reads each EDF, keeps the 19 10-20 ``EEG ...`` channels and resamples to 200 Hz; 5 s windows;
Welch log10 powers (2 s Hann segments, 50 % overlap) in 0.5-4-8-13-30-45 Hz per channel;
StandardScaler and a class-balanced logistic regression with C = 0.1, fitted on subjects 00-27 and
scored on the validation subjects 28-31 (``*_1`` rest = class 0, ``*_2`` arithmetic = class 1).
It imports nothing of eegfm, so it checks the benchmark rather than repeating it.

    python benchmarks/careful_baseline.py --data ../shared/data/eegmat
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import mne
import numpy as np
from scipy.signal import welch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, balanced_accuracy_score, roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

NEEDS_INPUT = "eegmat's EDF folder (--data)"  # make bench skips it

CHANNELS = [f"EEG {c}" for c in "Fp1 Fp2 F3 F4 F7 F8 T3 T4 C3 C4 T5 T6 P3 P4 O1 O2 Fz Cz Pz".split()]
EDGES = (0.5, 4.0, 8.0, 13.0, 30.0, 45.0)
SFREQ, WINDOW_S, SEGMENT_S = 200.0, 5.0, 2.0
TRAIN, VALIDATION = range(0, 28), range(28, 32)  # the published split; 32-35 (test) are sealed


def windows(path: Path) -> np.ndarray:
    """[n, 19, 5 s] non-overlapping windows of one recording, in volts (a trailing part dropped)."""
    raw = mne.io.read_raw_edf(path, preload=True, verbose="error").pick(CHANNELS).resample(SFREQ, verbose="error")
    data, size = raw.get_data(), int(WINDOW_S * SFREQ)
    n = data.shape[1] // size
    return data[:, : n * size].reshape(len(CHANNELS), n, size).transpose(1, 0, 2)


def features(eeg: np.ndarray) -> np.ndarray:
    """[n, 19 * 5] log10 band powers: each window's own Welch PSD, nothing across windows."""
    nperseg = int(SEGMENT_S * SFREQ)
    freqs, psd = welch(eeg, fs=SFREQ, nperseg=nperseg, noverlap=nperseg // 2, axis=-1)
    bands = [psd[..., (freqs >= lo) & (freqs < hi)].sum(-1) for lo, hi in zip(EDGES[:-1], EDGES[1:])]
    return np.log10(np.stack(bands, -1) * (freqs[1] - freqs[0])).reshape(len(eeg), -1)


def subjects(data: Path, ids: range) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for subject in ids:
        for label, part in enumerate((1, 2)):
            x = features(windows(data / f"Subject{subject:02d}_{part}.edf"))
            xs.append(x)
            ys.append(np.full(len(x), label))
    return np.concatenate(xs), np.concatenate(ys)


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="folder of eegmat's SubjectNN_{1,2}.edf")
    parser.add_argument("--C", type=float, default=0.1, help="inverse regularization (default: %(default)s)")
    args = parser.parse_args(argv)
    x_train, y_train = subjects(args.data, TRAIN)
    x_val, y_val = subjects(args.data, VALIDATION)
    model = make_pipeline(StandardScaler(), LogisticRegression(C=args.C, class_weight="balanced", max_iter=5000))
    p = model.fit(x_train, y_train).predict_proba(x_val)[:, 1]
    found = {
        "balanced_accuracy": float(balanced_accuracy_score(y_val, p > 0.5)),
        "auroc": float(roc_auc_score(y_val, p)),
        "auprc": float(average_precision_score(y_val, p)),
        "C": args.C,
        "windows": {"train": len(y_train), "val": len(y_val)},
    }
    print(json.dumps(found, indent=2))
    return found


if __name__ == "__main__":
    main()
