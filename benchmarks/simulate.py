"""Speed and memory of the simulator: one hour of 19-channel EEG at 256 Hz, as EDF and as HMS.

Usage: ``python benchmarks/simulate.py [--minutes 60]``. Prints one JSON object:

- ``seconds``: wall time to plan, render and write the recording (process start-up excluded);
- ``eeg_hours_per_second``: simulated EEG-hours per wall-clock second;
- ``peak_rss_mb``: the process's peak resident memory (``resource.getrusage``). Each case runs in
  a fresh process, once for a short and once for the full recording: if memory is bounded (it is
  rendered and written in 60 s chunks), the two peaks are about equal.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from eegfm.simulate.corpus import CorpusConfig, generate_corpus
from eegfm.simulate.sites import archetypes

REPO = Path(__file__).resolve().parents[1]


def run_case(fmt: str, minutes: float) -> dict:
    """Simulate one 19-channel 256 Hz recording in this process and measure it."""
    # The research archetype records all 19 channels at 256 Hz (plus one EOG channel).
    site = next(s for s in archetypes() if s.name == "research")
    config = CorpusConfig(
        sites=1, subjects_per_site=1, recordings_per_subject=1, minutes=minutes, format=fmt, site_profiles=(site,)
    )
    with tempfile.TemporaryDirectory() as tmp:
        began = time.perf_counter()
        summary = generate_corpus(config, Path(tmp) / "corpus")
        seconds = time.perf_counter() - began
        size = sum(p.stat().st_size for p in (Path(tmp) / "corpus").rglob("*") if p.is_file())
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "format": fmt,
        "minutes": minutes,
        "channels": 19,
        "sfreq": site.sfreq,
        "seconds": round(seconds, 3),
        "eeg_hours_per_second": round(summary.eeg_hours / seconds, 3),
        "peak_rss_mb": round(peak_kb / 1024, 1),
        "output_mb": round(size / 2**20, 1),
    }


def _in_fresh_process(fmt: str, minutes: float) -> dict:
    result = subprocess.run(
        [sys.executable, __file__, "--case", fmt, str(minutes)],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    )
    return json.loads(result.stdout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=60.0, help="length of the benchmarked recording (default: 60)")
    parser.add_argument(
        "--short-minutes",
        type=float,
        default=5.0,
        help="length of the short run used to show memory is bounded (default: 5)",
    )
    parser.add_argument("--case", nargs=2, metavar=("FORMAT", "MINUTES"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.case:
        print(json.dumps(run_case(args.case[0], float(args.case[1]))))
        return 0
    report = {}
    for fmt in ("edf", "hms", "both"):
        full = _in_fresh_process(fmt, args.minutes)
        short = _in_fresh_process(fmt, args.short_minutes)
        full["peak_rss_mb_short_run"] = short["peak_rss_mb"]
        full["short_run_minutes"] = args.short_minutes
        report[fmt] = full
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
