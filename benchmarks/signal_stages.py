"""Seconds per EEG-hour of the signal stages on the 64 eegmat recordings; prints one JSON object.

Stages, each timed over all files (wall clock and process CPU time, one BLAS thread):

- ``read``: pyedflib, the 19 canonical EEG channels per file, in microvolts;
- ``line_detection``: :func:`pipelines.signal.filters.detect_line_frequency` on each whole recording;
- ``resample``: 500 -> 256 Hz (:func:`core.dsp.resample.resample`);
- ``filter``: 50 Hz notch + 0.5-70 Hz band-pass at 256 Hz (:func:`pipelines.signal.filters.apply_filters`);
- ``filter_at_input_rate``: the same cascade at 500 Hz, for the "filter after resampling" claim;
- ``quality``: :func:`pipelines.quality.compute_quality` on every 5 s window;
- ``features``: :func:`pipelines.signal.features.compute_features` on every 5 s window;
- ``artifact_ae_score``: scoring every window with a detector fitted (time reported separately) on
  subjects 00-27, the eegmat training split.

The design document's reference numbers (2.14 EEG-hours, one core) are included for comparison.
Usage: ``python benchmarks/signal_stages.py [--data ../shared/data/eegmat]``.
"""

from __future__ import annotations

import os

# One thread, as in the design measurements; must be set before numpy is imported.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import collections  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from eegfm.contract.channels import CANONICAL_CHANNELS, canonical_name  # noqa: E402
from eegfm.contract.schema import SFREQ  # noqa: E402
from eegfm.core.dsp.resample import resample  # noqa: E402
from eegfm.pipelines.quality import compute_quality, validate_window  # noqa: E402
from eegfm.pipelines.quality.artifact_autoencoder import ArtifactAutoencoder, band_features  # noqa: E402
from eegfm.pipelines.signal.features import compute_features  # noqa: E402
from eegfm.pipelines.signal.filters import (  # noqa: E402
    FilterConfig,
    apply_filters,
    design_filters,
    detect_line_frequency,
    line_noise_db,
)

WINDOW_S = 5.0
# docs: design.md section 4, seconds for the same 64 files (2.14 EEG-hours, one core).
DESIGN_SECONDS = {
    "mne_script_total": 14.8,
    "read_pyedflib_readSignal": 3.1,
    "read_memmap": 0.37,
    "resample": 0.9,
    "filter_float32_sosfiltfilt": 0.95,
}


class Timer:
    """Accumulates wall and CPU seconds per stage."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = collections.defaultdict(float)
        self.cpu: dict[str, float] = collections.defaultdict(float)

    def __call__(self, stage: str, fn, *args, **kwargs):
        wall, cpu = time.perf_counter(), time.process_time()
        result = fn(*args, **kwargs)
        self.wall[stage] += time.perf_counter() - wall
        self.cpu[stage] += time.process_time() - cpu
        return result


def read_edf(path: Path) -> tuple[np.ndarray, float]:
    import pyedflib

    with pyedflib.EdfReader(str(path)) as reader:
        labels = reader.getSignalLabels()
        index = {canonical_name(label): i for i, label in enumerate(labels) if canonical_name(label)}
        missing = [c for c in CANONICAL_CHANNELS if c not in index]
        if missing:
            raise ValueError(f"{path}: missing canonical channels {missing}")
        rates = {reader.getSampleFrequency(index[c]) for c in CANONICAL_CHANNELS}
        if len(rates) != 1:
            raise ValueError(f"{path}: channels have different sampling rates {sorted(rates)}")
        data = np.stack([reader.readSignal(index[c]) for c in CANONICAL_CHANNELS])
    return data, float(rates.pop())


def windows_of(data: np.ndarray) -> np.ndarray:
    n = int(WINDOW_S * SFREQ)
    count = data.shape[1] // n
    return data[:, : count * n].reshape(data.shape[0], count, n).transpose(1, 0, 2)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data",
        type=Path,
        default=REPO.parent / "shared" / "data" / "eegmat",
        help="folder with the eegmat SubjectNN_K.edf files",
    )
    return parser


def _recordings(parser: argparse.ArgumentParser, args: argparse.Namespace) -> list[Path]:
    """The Subject*.edf files of ``--data``, sorted; exits through ``parser.error`` where there are none."""
    files = sorted(args.data.glob("Subject*.edf"))
    if not files:
        parser.error(f"--data: no Subject*.edf files in {args.data}")
    return files


def _stage_seconds(timer: Timer, eeg_hours: float) -> dict[str, dict[str, float]]:
    """Each stage's wall and CPU seconds, and its wall seconds per EEG-hour."""
    return {
        stage: {
            "wall_s": round(wall, 3),
            "cpu_s": round(timer.cpu[stage], 3),
            "wall_s_per_eeg_hour": round(wall / eeg_hours, 3),
        }
        for stage, wall in timer.wall.items()
    }


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    files = _recordings(parser, args)

    timer = Timer()
    design_256 = design_filters(SFREQ, FilterConfig(line_freq=50), 50)
    n_samples_in = 0
    detections: collections.Counter = collections.Counter()
    ratio_50, ratio_60 = [], []
    all_windows, subjects = [], []
    kept = 0
    flags: collections.Counter = collections.Counter()
    for path in files:
        data, sfreq = timer("read", read_edf, path)
        n_samples_in += data.shape[1]
        detected = timer("line_detection", detect_line_frequency, data, sfreq)
        detections[str(detected)] += 1
        ratio_50.append(float(np.median(line_noise_db(data, sfreq, 50))))
        ratio_60.append(float(np.median(line_noise_db(data, sfreq, 60))))
        design_in = design_filters(sfreq, FilterConfig(line_freq=50), 50)
        timer("filter_at_input_rate", apply_filters, data, design_in)
        resampled = timer("resample", resample, data, sfreq, SFREQ)
        filtered = timer("filter", apply_filters, resampled, design_256)
        windows = windows_of(filtered)
        for window in windows:
            report = timer("quality", compute_quality, window, SFREQ)
            kept += validate_window(report)[0]
            flags.update(report.flags)
            timer("features", compute_features, window, SFREQ)
        all_windows.append(windows)
        subjects += [int(path.stem[7:9])] * len(windows)
        sfreq_in = sfreq

    windows = np.concatenate(all_windows)
    subjects = np.array(subjects)
    train = subjects <= 27
    wall, cpu = time.perf_counter(), time.process_time()
    model = ArtifactAutoencoder(seed=0).fit(windows[train], groups=subjects[train])
    fit_wall, fit_cpu = time.perf_counter() - wall, time.process_time() - cpu
    scores = timer("artifact_ae_score", model.score_features, timer("artifact_ae_score", band_features, windows))

    eeg_hours = n_samples_in / sfreq_in / 3600.0
    stages = _stage_seconds(timer, eeg_hours)
    compute = ("resample", "filter")
    result = {
        "dataset": str(args.data),
        "n_files": len(files),
        "eeg_hours": round(eeg_hours, 4),
        "n_windows": int(len(windows)),
        "window_s": WINDOW_S,
        "stages": stages,
        "resample_plus_filter_wall_s": round(sum(timer.wall[s] for s in compute), 3),
        "filter_after_vs_before_resample_cost": round(timer.cpu["filter"] / timer.cpu["filter_at_input_rate"], 3),
        "artifact_ae_fit": {"windows": int(train.sum()), "wall_s": round(fit_wall, 3), "cpu_s": round(fit_cpu, 3)},
        "artifact_ae_score_median": round(float(np.median(scores)), 4),
        "windows_kept": int(kept),
        "window_flags": dict(flags),
        "line_detection": {
            "detected": dict(detections),
            "median_ratio_db_50hz_range": [round(min(ratio_50), 2), round(max(ratio_50), 2)],
            "median_ratio_db_60hz_range": [round(min(ratio_60), 2), round(max(ratio_60), 2)],
        },
        "design_reference_s_for_2_14_h": DESIGN_SECONDS,
        "load_average_1min": round(os.getloadavg()[0], 2),
        "cpu_count": os.cpu_count(),
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
