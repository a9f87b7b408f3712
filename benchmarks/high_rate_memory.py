"""Benchmark: peak memory of decoding and preprocessing a high-rate recording against the same
recording's length at 256 Hz.

Prints one JSON object. Writes two synthetic EDFs of ``--seconds`` s with the 19 10-20 channels (the
project's own EDF writer, in a temporary folder): one at ``--sfreq`` (100 kHz by default, the
highest rate the readers accept) and the reference at 256 Hz. Each is measured in a fresh process:

- ``decode``: ``process_recording`` over the file, as ``eegfm-preprocess``'s workers and the
  server's upload decoding run it: peak RSS above the process's RSS once everything is imported
  (the pipeline's working set);
- ``preprocess``: the whole ``eegfm-preprocess`` command (one in-memory worker, no artifact model):
  its peak RSS.

``ratio`` is the high-rate figure over the 256 Hz one of the same length, measured in the same run;
``decode.ratio_to_working_set`` over the decoding of ``--reference-seconds`` (600) at 256 Hz, which
fills the pipeline's chunks: the bound ``docs/preprocessing.md`` states.

    python benchmarks/high_rate_memory.py [--sfreq 100000] [--seconds 60] [--reference-seconds 600]
                                          [--skip-preprocess]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from datetime import datetime
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CHANNELS = "Fp1 Fp2 F7 F3 Fz F4 F8 T3 C3 Cz C4 T4 T5 P3 Pz P4 T6 O1 O2".split()

# The decoding side: imports first, then the RSS they leave, then the peak over one recording.
_DECODE = r"""
import json, resource, sys
from eegfm.pipelines.datasets import SourceItem
from eegfm.pipelines.events import PreprocessConfig
from eegfm.pipelines.process import process_recording

def rss_mb():
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmRSS:")) / 1024.0

config = PreprocessConfig()
item = SourceItem(path=sys.argv[1], dataset="edf", site="bench")
base = rss_mb()
windows, outcome = 0, None
for event in process_recording(item, b"k" * 32, config, config.config_hash()):
    windows += type(event).__name__ == "Window"
    outcome = event
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
print(json.dumps({"base_mb": round(base, 1), "peak_mb": round(peak, 1), "working_set_mb": round(peak - base, 1),
                  "windows": windows, "status": outcome.status, "reason": outcome.reason}))
"""

# Peak RSS (kB) of the largest process a command ran: RUSAGE_CHILDREN in a fresh wrapper.
_RSS_WRAPPER = (
    "import resource, subprocess, sys\n"
    "rc = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode\n"
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    "sys.exit(rc)\n"
)


def write_edf(path: Path, sfreq: int, seconds: int, seed: int = 0) -> Path:
    """A ``seconds`` s EDF of the 19 10-20 channels at ``sfreq`` (1 s records): 10 Hz alpha and
    50 Hz mains over noise, in µV, written a second at a time (memory: one record)."""
    from eegfm.simulate.edf import EDFHeader, EDFSignal, EDFWriter

    signals = tuple(EDFSignal(f"EEG {name}", -500.0, 500.0, sfreq) for name in CHANNELS)
    header = EDFHeader(signals, start=datetime(2020, 1, 1), record_duration=1.0)
    rng = np.random.default_rng(seed)
    t = np.arange(sfreq) / sfreq
    with EDFWriter(path, header) as writer:
        for second in range(seconds):
            phase = 2 * np.pi * (t + second)
            wave = 20 * np.sin(10 * phase) + 5 * np.sin(50 * phase)
            writer.write(wave + 10 * rng.standard_normal((len(CHANNELS), sfreq)))
    return path


def decode(path: Path) -> dict:
    done = subprocess.run([sys.executable, "-c", _DECODE, str(path)], capture_output=True, text=True, cwd=REPO)
    if done.returncode:
        raise SystemExit(f"decoding {path.name} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def preprocess(path: Path, tmp: Path) -> dict:
    key = tmp / "key"
    key.write_bytes(b"0123456789abcdef0123456789abcdef\n")
    out = tmp / f"out-{path.stem}"
    cmd = [sys.executable, "-m", "eegfm.pipelines.preprocess", "--input", str(path), "--output", str(out)]
    cmd += ["--pseudonym_key_file", str(key), "--no_artifact_model", "--runner", "DirectRunner"]
    cmd += ["--direct_running_mode", "in_memory", "--overwrite"]
    done = subprocess.run([sys.executable, "-c", _RSS_WRAPPER, *cmd], capture_output=True, text=True, cwd=REPO)
    if done.returncode:
        raise SystemExit(f"eegfm-preprocess on {path.name} failed (exit status {done.returncode})")
    return {"peak_mb": round(int(done.stdout.strip().splitlines()[-1]) / 1024.0, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sfreq", type=int, default=100_000, help="the high rate, Hz")
    parser.add_argument("--seconds", type=int, default=60, help="the recordings' length, s")
    parser.add_argument("--reference-seconds", type=int, default=600, help="the 256 Hz working-set reference, s")
    parser.add_argument("--skip-preprocess", action="store_true", help="measure the decoding alone")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="eegfm-high-rate-") as folder:
        tmp = Path(folder)
        files = {
            "reference_256hz": write_edf(tmp / "ref.edf", 256, args.seconds),
            "high_rate": write_edf(tmp / "high.edf", args.sfreq, args.seconds),
        }
        full = write_edf(tmp / "full.edf", 256, args.reference_seconds)
        result: dict = {"sfreq": args.sfreq, "seconds": args.seconds, "channels": len(CHANNELS)}
        result["file_mb"] = round(files["high_rate"].stat().st_size / 2**20, 1)
        result["decode"] = {name: decode(path) for name, path in files.items()}
        ref, high = result["decode"]["reference_256hz"], result["decode"]["high_rate"]
        result["decode"]["ratio"] = round(high["working_set_mb"] / max(ref["working_set_mb"], 1.0), 2)
        result["decode"][f"reference_256hz_{args.reference_seconds}s"] = working = decode(full)
        result["decode"]["ratio_to_working_set"] = round(high["working_set_mb"] / working["working_set_mb"], 2)
        if not args.skip_preprocess:
            result["preprocess"] = {name: preprocess(path, tmp) for name, path in files.items()}
            ref, high = result["preprocess"]["reference_256hz"], result["preprocess"]["high_rate"]
            result["preprocess"]["ratio"] = round(high["peak_mb"] / ref["peak_mb"], 2)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
