"""Benchmark: the eegfm Beam job vs a plain-MNE script on the 64 eegmat recordings.

Prints one JSON object. Both sides do the same work: read -> pick the 19 10-20 channels -> notch
50 Hz -> band-pass 0.5-100 Hz -> resample to 256 Hz -> 10 s windows -> float16 on disk. eegfm also
de-identifies, scores quality and artifacts, and writes snappy TFRecords with a manifest, so the
comparison is conservative. Each side runs in its own process so peak RSS is measured per run.

    python benchmarks/preprocess.py [--data ../shared/data/eegmat] [--rounds 3] [--long-minutes 120]
                                    [--copies 1]

`--copies N` runs everything on N copies of the recordings (N folders, which the job treats as N
sites; each copy's EDF headers differ, so the job writes every copy rather than one of identical
bytes): a larger corpus, over which the fixed costs (imports, Beam's start-up, the artifact model's
fit) weigh less, as on a real one (`--copies 8`: 17 EEG-hours).

`eegfm_default` is the job as a user runs it: no runner flags (the launcher picks the mode and
worker count from the machine and the input's size) and the user's own environment; it and the MNE
script are compared as they come. The other eegfm runs name their mode and run with one BLAS/OpenMP
thread per process.

`--long-minutes` also simulates one long EDF recording and runs the job on it and on a recording a
quarter as long: peak RSS must not grow with recording length (chunked reading).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from eegfm.pipelines.readers import open_recording

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "eegmat"

MNE_REFERENCE = r"""
import glob, os, sys, numpy as np, mne
mne.set_log_level("ERROR")
files = sorted(glob.glob(os.path.join(sys.argv[1], "**", "*.edf"), recursive=True))
out = sys.argv[2]
chans = ["Fp1","F3","C3","P3","F7","T3","T5","O1","Fz","Cz","Pz","Fp2","F4","C4","P4","F8","T4","T6","O2"]
for k, path in enumerate(files):
    raw = mne.io.read_raw_edf(path, preload=True)
    raw.pick(["EEG " + c for c in chans])
    raw.notch_filter([50.0])
    raw.filter(0.5, 100.0)
    raw.resample(256.0)
    data = raw.get_data().astype(np.float32) * 1e6
    n = data.shape[1] // 2560
    windows = np.stack([data[:, i * 2560:(i + 1) * 2560] for i in range(n)]).astype(np.float16)
    np.save(os.path.join(out, f"{k:03d}.npy"), windows)
"""


# Runs one command and prints the peak RSS (kB) of its largest descendant. A fresh wrapper per
# measurement, because RUSAGE_CHILDREN is a running maximum over every child a process ever had.
_RSS_WRAPPER = (
    "import resource, subprocess, sys\n"
    "rc = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode\n"
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    "sys.exit(rc)\n"
)


def _timed(cmd: list[str], env: dict | None = None) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of the largest process the command ran."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", _RSS_WRAPPER, *cmd], env=env, cwd=REPO, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"benchmark step failed: {' '.join(cmd[:4])} ...\n{done.stderr[-2000:]}")
    return seconds, int(done.stdout.strip().splitlines()[-1]) / 1024.0


def _eeg_hours(data: Path) -> float:
    total = 0.0
    for path in sorted(data.rglob("*.edf")):
        with open_recording(path) as reader:
            total += reader.info.duration_s
    return total / 3600.0


def _eegfm(inputs: list[str], out: Path, key: Path, extra: list[str]) -> list[str]:
    args = [
        sys.executable,
        "-m",
        "eegfm.pipelines.job.preprocess",
        "--output",
        str(out),
        "--pseudonym_key_file",
        str(key),
        "--window_seconds",
        "10",
        "--stride_seconds",
        "10",
        "--line_freq",
        "50",
        "--h_freq",
        "100",
        "--runner",
        "DirectRunner",
        "--overwrite",
        *extra,
    ]
    for item in inputs:
        args += ["--input", item]
    return args


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder of eegmat EDF files")
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="interleaved repetitions of every run; the fastest of each is reported "
        "(wall time on a shared machine only ever gets slower than the code's own)",
    )
    parser.add_argument(
        "--long-minutes",
        type=float,
        default=120.0,
        help="length of the simulated long recording for the memory check (0: skip)",
    )
    parser.add_argument(
        "--copies",
        type=int,
        default=1,
        help="run on this many copies of the recordings (one folder per copy, each a site of its own, "
        "each copy's EDF headers marked so no copy is a duplicate): a larger corpus, where fixed costs weigh less",
    )
    return parser


def _check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Exits through ``parser.error`` on an option out of its range."""
    if args.copies < 1:
        parser.error(f"--copies: expected an integer >= 1; got {args.copies}")


def _fastest(cases: dict[str, list[str]], rounds: int, env: dict) -> dict[str, tuple[float, float]]:
    """Each case's fastest wall seconds and largest peak RSS (MB) over ``rounds`` interleaved rounds."""
    best: dict[str, tuple[float, float]] = {}
    plain = {"mne_reference", "eegfm_default"}  # as a user runs them: the environment as it is
    for _ in range(rounds):
        for name, cmd in cases.items():
            seconds, rss = _timed(cmd, None if name.split(":")[-1] in plain else env)
            old = best.get(name, (math.inf, 0.0))
            best[name] = (min(old[0], seconds), max(old[1], rss))
    return best


def _per_hour_cost(best: dict[str, tuple[float, float]], names: list[str], hours: float, half_hours: float) -> dict:
    """Marginal EEG-hours/s and fixed seconds of each run, from its times on all and on half of the recordings."""
    marginal = hours - half_hours

    def per_hour(name: str) -> tuple[float, float]:
        """(marginal EEG-hours/s, fixed seconds) from the full and the half corpus."""
        full, part = best[name][0], best["half:" + name][0]
        slope = max(full - part, 1e-9) / marginal
        return 1.0 / slope, full - slope * hours

    rates = {name: per_hour(name) for name in names}
    # Where the second half of the recordings adds under a fifth of a run's time, the slope is
    # mostly timing noise (a 2-worker run of the 64 eegmat files gave "3.35x" this way).
    noisy = [name for name in names if best[name][0] - best["half:" + name][0] < 0.2 * best[name][0]]
    return {
        "note": "marginal EEG-hours/s between half and all of the recordings (fixed costs cancel)",
        "too_small_to_separate": noisy,
        "half_eeg_hours": round(half_hours, 4),
        **{f"{name}_half_seconds": round(best["half:" + name][0], 2) for name in names},
        **{f"{name}_eeg_hours_per_s": round(rates[name][0], 4) for name in names},
        **{f"{name}_fixed_seconds": round(rates[name][1], 2) for name in names},
        "speedup_vs_mne": round(rates["eegfm_1_worker"][0] / rates["mne_reference"][0], 2),
        "speedup_vs_mne_default": round(rates["eegfm_default"][0] / rates["mne_reference"][0], 2),
        "speedup_1_to_2_workers": round(rates["eegfm_mp_2_workers"][0] / rates["eegfm_mp_1_worker"][0], 2),
    }


def main() -> None:
    parser = _parser()
    args = parser.parse_args()
    _check_args(parser, args)
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    result: dict = {
        "benchmark": "preprocess",
        "data": str(args.data),
        "copies": args.copies,
        "cpu_count": os.cpu_count(),
        "rounds": args.rounds,
        "load_average_before": round(os.getloadavg()[0], 2),
    }
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = _copies(args.data, args.copies, tmp / "copies") if args.copies > 1 else args.data
        hours = _eeg_hours(data)
        result["eeg_hours"] = round(hours, 4)
        key = tmp / "key"
        key.write_bytes(os.urandom(32).hex().encode())
        # The same on half of the recordings separates each side's fixed cost (imports, Beam's
        # graph translation, worker start-up) from its cost per EEG-hour, which is what a large
        # corpus pays.
        half = _half_folder(data, tmp / "half" / data.name)
        half_hours = _eeg_hours(half)
        modes = {
            "eegfm_default": [],
            "eegfm_1_worker": ["--direct_running_mode", "in_memory"],
            "eegfm_mp_1_worker": ["--direct_running_mode", "multi_processing", "--direct_num_workers", "1"],
            "eegfm_mp_2_workers": ["--direct_running_mode", "multi_processing", "--direct_num_workers", "2"],
        }
        cases: dict[str, list[str]] = {}
        for corpus, folder in (("", data), ("half:", half)):
            out = tmp / f"mne-{corpus[:-1] or 'all'}"
            out.mkdir()
            cases[corpus + "mne_reference"] = [sys.executable, "-c", MNE_REFERENCE, str(folder), str(out)]
            for name, extra in modes.items():
                cases[corpus + name] = _eegfm([str(folder)], tmp / f"{corpus[:-1] or 'all'}-{name}", key, extra)
        best = _fastest(cases, args.rounds, env)
        for name in ["mne_reference", *modes]:
            seconds, rss = best[name]
            key_rss = "peak_rss_mb" if name == "mne_reference" else "peak_rss_mb_largest_process"
            result[name] = {
                "seconds": round(seconds, 2),
                "eeg_hours_per_s": round(hours / seconds, 4),
                key_rss: round(rss),
            }
        mne_s, one = best["mne_reference"][0], best["eegfm_1_worker"][0]
        result["speedup_vs_mne_default"] = round(mne_s / best["eegfm_default"][0], 2)
        result["speedup_vs_mne_1_worker"] = round(mne_s / one, 2)
        result["speedup_1_to_2_workers"] = round(best["eegfm_mp_1_worker"][0] / best["eegfm_mp_2_workers"][0], 2)
        result["per_hour_cost"] = _per_hour_cost(best, ["mne_reference", *modes], hours, half_hours)
        result["targets"] = {
            "speedup_vs_mne_default": ">= 3.0 (with --copies 8; goal >= 5 per EEG-hour)",
            "speedup_vs_mne_1_worker": ">= 3.0",
            "speedup_1_to_2_workers": ">= 1.6",
            "peak_rss_per_worker_mb": "<= 2048",
        }
        if args.long_minutes > 0:
            result["long_recording"] = _long_recording(tmp, key, args.long_minutes, env)
    result["load_average_after"] = round(os.getloadavg()[0], 2)
    print(json.dumps(result, indent=2))


# Bytes 160-167 of an EDF header: the end of the free-text "local recording identification"
# field (equipment, technician), which no reader interprets. The job writes one copy of identical
# bytes (``pipelines.job.duplicates``), so each copy must differ there to be written at all.
_COPY_MARK = slice(160, 168)


def _copies(data: Path, copies: int, target: Path) -> Path:
    """``copies`` folders of ``data``'s files: the first links to them; in each other folder every
    EDF is a copy whose header marks it (:data:`_COPY_MARK`), so the job processes and writes
    every copy as the MNE script does, and other files are links."""
    for copy in range(copies):
        folder = target / f"copy{copy + 1}"
        folder.mkdir(parents=True)
        for path in sorted(data.iterdir()):
            if not path.is_file():
                continue
            if copy == 0 or path.suffix.lower() != ".edf":
                (folder / path.name).symlink_to(path.resolve())
                continue
            shutil.copyfile(path, folder / path.name)
            with open(folder / path.name, "r+b") as edf:
                edf.seek(_COPY_MARK.start)
                edf.write(f"copy{copy + 1:04d}".encode("ascii")[: _COPY_MARK.stop - _COPY_MARK.start])
    return target


def _half_folder(data: Path, target: Path) -> Path:
    """Links to every other file but only the first half of the EDF recordings, folder by folder
    (the same sites, half the EEG-hours)."""
    target.mkdir(parents=True)
    edfs = sorted(data.glob("*.edf"))
    for path in sorted(data.iterdir()):
        if path.is_dir():
            _half_folder(path, target / path.name)
        elif path.suffix.lower() != ".edf" or path in edfs[: len(edfs) // 2]:
            (target / path.name).symlink_to(path.resolve())
    return target


def _long_recording(tmp: Path, key: Path, minutes: float, env: dict) -> dict:
    """Peak RSS on a long and a 4x shorter simulated recording: bounded memory means ~equal."""
    out = {}
    for label, length in (("short", minutes / 4), ("long", minutes)):
        corpus = tmp / f"sim-{label}"
        subprocess.run(
            [
                sys.executable,
                "-m",
                "eegfm.simulate",
                "--output",
                str(corpus),
                "--sites",
                "1",
                "--subjects-per-site",
                "1",
                "--recordings-per-subject",
                "1",
                "--minutes",
                str(length),
                "--format",
                "edf",
                "--quiet",
            ],
            check=True,
            env=env,
            stdout=subprocess.DEVNULL,
        )
        edf = next((corpus / "edf").rglob("*.edf"))
        seconds, rss = _timed(
            _eegfm(
                [str(edf)], tmp / f"out-{label}", key, ["--direct_running_mode", "in_memory", "--no_artifact_model"]
            ),
            env,
        )
        out[label] = {
            "minutes": length,
            "file_mb": round(edf.stat().st_size / 2**20, 1),
            "seconds": round(seconds, 2),
            "peak_rss_mb": round(rss),
        }
    out["rss_growth_long_vs_short"] = round(out["long"]["peak_rss_mb"] / out["short"]["peak_rss_mb"], 3)
    return out


if __name__ == "__main__":
    main()
