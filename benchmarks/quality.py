"""Per-window cost of the quality metrics and the autoencoder features; prints one JSON object.

Windows: the 64 eegmat recordings read with MNE, resampled to 256 Hz
(:func:`core.dsp.resample.resample`), notch/band-pass filtered
(:func:`pipelines.signal.filters.filter_data`) and cut into ``--window-s`` windows (default 10 s:
19 x 2560, float32), each with its unfiltered counterpart, as
:func:`pipelines.job.process.process_recording` passes them. Timed, as process CPU
seconds on one BLAS thread, best of ``--repeats`` passes over all windows:

- ``quality``: :func:`pipelines.quality.compute_quality` (filtered window, ``unfiltered=``,
  ``channel_mask=``), which computes the window's Welch PSD once and attaches it to the report;
- ``quality_batch_8``: :func:`pipelines.quality.compute_quality_batch` on 8 windows at a time;
- ``window_spectrum``: :func:`pipelines.signal.features.window_spectrum` alone (included in ``quality``);
- ``ae_features_per_window``: :func:`pipelines.quality.artifact_autoencoder.band_features` of one window, as the
  Beam scoring stage calls it today (its own float64 PSD);
- ``ae_features_batched``: :func:`~pipelines.quality.artifact_autoencoder.band_features` of all windows in one call;
- ``ae_features_from_report``: :func:`pipelines.quality.artifact_autoencoder.band_features_from_psd` of
  ``report.spectrum`` (the shared PSD: no second transform);
- ``quality_plus_shared_ae``: both, as process.py would run them per window.

``--baseline REV`` also times ``quality`` and ``ae_features_per_window`` of the modules as they
were at git revision REV (``d66281a``: before this optimization), alternating with the current
ones so that both see the same machine load, and reports the speed-up and the largest
differences of the quality vectors, flags and AE features against them.

Usage: ``python benchmarks/quality.py [--data ../shared/data/eegmat] [--baseline d66281a]``.
"""

from __future__ import annotations

import os

# One thread, as in the design measurements; must be set before numpy is imported.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import importlib  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import types  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from eegfm.contract.channels import CANONICAL_CHANNELS  # noqa: E402
from eegfm.contract.schema import SFREQ  # noqa: E402
from eegfm.core.dsp.resample import resample  # noqa: E402
from eegfm.pipelines.quality import compute_quality, compute_quality_batch  # noqa: E402
from eegfm.pipelines.quality.artifact_autoencoder import band_features, band_features_from_psd  # noqa: E402
from eegfm.pipelines.signal.features import window_spectrum  # noqa: E402
from eegfm.pipelines.signal.filters import filter_data  # noqa: E402


def load_windows(folder: Path, window_s: float) -> tuple[np.ndarray, np.ndarray, float]:
    """(filtered, unfiltered) windows (n, 19, n_times) float32, and the recordings' EEG-hours."""
    import mne

    n = int(round(window_s * SFREQ))
    filtered, unfiltered, seconds = [], [], 0.0
    for path in sorted(folder.glob("Subject*.edf")):
        raw = mne.io.read_raw_edf(path, preload=True, verbose="error")
        x = raw.get_data(picks=[f"EEG {name}" for name in CANONICAL_CHANNELS]) * 1e6
        resampled = resample(x, raw.info["sfreq"], SFREQ)
        clean, _ = filter_data(resampled, SFREQ)
        seconds += x.shape[1] / raw.info["sfreq"]
        count = clean.shape[1] // n
        for out, data in ((filtered, clean), (unfiltered, resampled)):
            cut = data[:, : count * n].reshape(data.shape[0], count, n).transpose(1, 0, 2)
            out.append(cut.astype(np.float32))
    if not filtered:
        raise FileNotFoundError(f"--data: no Subject*.edf files in {folder}")
    return np.concatenate(filtered), np.concatenate(unfiltered), seconds / 3600.0


def load_baseline(rev: str) -> types.SimpleNamespace:
    """features, quality (a module or a package) and artifact_ae as they were at git revision
    ``rev``, as modules that import each other (and the current versions of every other pipelines
    module)."""
    tmp = Path(tempfile.mkdtemp(prefix="eegfm_baseline_"))
    paths = subprocess.run(
        [
            "git",
            "-C",
            str(REPO),
            "ls-tree",
            "-r",
            "--name-only",
            rev,
            "--",
            *(f"pipelines/{name}" for name in ("features.py", "quality.py", "quality", "artifact_ae.py")),
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    for path in paths:
        source = subprocess.run(
            ["git", "-C", str(REPO), "show", f"{rev}:{path}"], check=True, capture_output=True, text=True
        ).stdout
        source = re.sub(r"eegfm\.pipelines\.(features|quality|artifact_ae)\b", r"baseline_\1", source)
        target = tmp / ("baseline_" + path.removeprefix("pipelines/"))
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(source)
    sys.path.insert(0, str(tmp))
    return types.SimpleNamespace(
        **{name: importlib.import_module(f"baseline_{name}") for name in ("features", "quality", "artifact_ae")}
    )


def best_cpu(fns: dict, repeats: int) -> dict[str, float]:
    """Smallest process CPU time of ``repeats`` calls of each function, calls interleaved."""
    best = {name: float("inf") for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.process_time()
            fn()
            best[name] = min(best[name], time.process_time() - start)
    return best


def compare_with_baseline(
    old, revision: str, seconds: dict, summary, reports: list, old_reports: list, filtered: np.ndarray
) -> dict:
    """Speed-ups against the baseline's timings and the largest differences of its outputs."""
    before = {
        "quality": seconds["baseline_quality"],
        "ae_features_per_window": seconds["baseline_ae_features_per_window"],
    }
    old_vectors = np.stack([r.vector() for r in old_reports])
    new_vectors = np.stack([r.vector() for r in reports])
    return {
        "revision": revision,
        "timings": {name: summary(total) for name, total in before.items()},
        "speedup": {
            "quality": round(before["quality"] / seconds["quality"], 2),
            "quality_batch_8": round(before["quality"] / seconds["quality_batch_8"], 2),
            "ae_features_per_window": round(before["ae_features_per_window"] / seconds["ae_features_per_window"], 2),
            "ae_features_shared_vs_baseline_per_window": round(
                before["ae_features_per_window"] / seconds["ae_features_from_report"], 1
            ),
            "quality_plus_ae": round(
                (before["quality"] + before["ae_features_per_window"]) / seconds["quality_plus_shared_ae"], 2
            ),
        },
        "quality_vector_max_abs_diff": {
            name: float(np.nanmax(np.abs(new_vectors[:, i] - old_vectors[:, i]), initial=0))
            for i, name in enumerate(reports[0].as_dict())
        },
        "windows_with_different_flags": int(sum(a.flags != b.flags for a, b in zip(reports, old_reports))),
        "ae_features_max_abs_diff": float(
            np.abs(band_features(filtered) - old.artifact_ae.band_features(filtered)).max()
        ),
    }


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data",
        type=Path,
        default=REPO.parent / "shared" / "data" / "eegmat",
        help="folder with the eegmat SubjectNN_K.edf files",
    )
    parser.add_argument("--window-s", type=float, default=10.0, help="window length in seconds")
    parser.add_argument("--repeats", type=int, default=3, help="passes per measurement (best)")
    parser.add_argument(
        "--baseline",
        metavar="REV",
        default=None,
        help="git revision whose quality/features/artifact_ae to compare with",
    )
    return parser


def _check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Exits through ``parser.error`` on an option out of its range."""
    if args.repeats < 1:
        parser.error(f"--repeats: expected an integer >= 1; got {args.repeats}")


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    _check_args(parser, args)

    filtered, unfiltered, recording_hours = load_windows(args.data, args.window_s)
    n = len(filtered)
    mask = np.ones(filtered.shape[1], dtype=np.int64)
    windows_per_hour = 3600.0 / args.window_s

    def quality(module=None):
        fn = compute_quality if module is None else module.compute_quality
        return [fn(filtered[i], SFREQ, channel_mask=mask, unfiltered=unfiltered[i]) for i in range(n)]

    def shared(reports):
        return [band_features_from_psd(r.spectrum.freqs, r.spectrum.psd) for r in reports]

    def ae_per_window(fn=band_features):
        return [fn(filtered[i][None])[0] for i in range(n)]

    def quality_batch(size=8):
        return [
            r
            for i in range(0, n, size)
            for r in compute_quality_batch(
                filtered[i : i + size], SFREQ, channel_mask=mask, unfiltered=unfiltered[i : i + size]
            )
        ]

    reports = quality()
    fns = {
        "quality": quality,
        "quality_batch_8": quality_batch,
        "window_spectrum": lambda: [window_spectrum(w, SFREQ) for w in filtered],
        "ae_features_per_window": ae_per_window,
        "ae_features_batched": lambda: band_features(filtered),
        "ae_features_from_report": lambda: shared(reports),
        "quality_plus_shared_ae": lambda: shared(quality()),
    }
    old = None
    if args.baseline:
        old = load_baseline(args.baseline)
        fns["baseline_quality"] = lambda: quality(old.quality)
        fns["baseline_ae_features_per_window"] = lambda: ae_per_window(old.artifact_ae.band_features)
    seconds = best_cpu(fns, args.repeats)

    def summary(total: float) -> dict:
        return {"ms_per_window": round(1e3 * total / n, 4), "s_per_eeg_hour": round(total / n * windows_per_hour, 4)}

    result = {
        "dataset": str(args.data),
        "n_windows": n,
        "window_shape": list(filtered.shape[1:]),
        "window_s": args.window_s,
        "recording_eeg_hours": round(recording_hours, 4),
        "clock": "process CPU seconds, one thread, best of --repeats",
        "repeats": args.repeats,
        "timings": {name: summary(total) for name, total in seconds.items() if not name.startswith("baseline_")},
        "shared_vs_own_psd_ae_features_max_abs_diff": float(
            np.abs(np.stack(shared(reports)) - band_features(filtered)).max()
        ),
    }
    if old is not None:
        result["baseline"] = compare_with_baseline(
            old, args.baseline, seconds, summary, reports, quality(old.quality), filtered
        )
    result["load_average_1min"] = round(os.getloadavg()[0], 2)
    result["cpu_count"] = os.cpu_count()
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
