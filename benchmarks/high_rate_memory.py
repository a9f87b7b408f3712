"""Benchmark: peak memory of decoding and preprocessing a high-rate recording against the same
recording's length at 256 Hz.

Prints one JSON object. Writes two synthetic EDFs of ``--seconds`` s with the 19 10-20 channels (the
project's own EDF writer, in a temporary folder): one at ``--sfreq`` (100 kHz by default, the
highest rate the readers accept) and the reference at 256 Hz. Each is measured in a fresh process:

- ``decode``: ``process_recording`` over the file, as ``eegfm-preprocess``'s workers and the
  server's upload decoding run it: peak RSS above the process's RSS once everything is imported
  (the pipeline's working set);
- ``preprocess``: the whole ``eegfm-preprocess`` command (one in-memory worker, no artifact model):
  its peak RSS;
- ``server`` (with ``--model``): ``eegfm-serve`` on localhost, each file POSTed once to
  ``/v1/predict``: the server's peak RSS above its RSS before the request, and the most its
  temporary folder held meanwhile (polled every 50 ms).

``ratio`` is the high-rate figure over the 256 Hz one of the same length, measured in the same run;
``decode.ratio_to_working_set`` over the decoding of ``--reference-seconds`` (600) at 256 Hz, which
fills the pipeline's chunks: the bound ``docs/preprocessing.md`` states.

    python benchmarks/high_rate_memory.py [--sfreq 100000] [--seconds 60] [--reference-seconds 600]
                                          [--skip-preprocess] [--model outputs/demo/finetune]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

import numpy as np

from eegfm.simulate.edf import EDFHeader, EDFSignal, EDFWriter

REPO = Path(__file__).resolve().parents[1]
CHANNELS = "Fp1 Fp2 F7 F3 Fz F4 F8 T3 C3 Cz C4 T4 T5 P3 Pz P4 T6 O1 O2".split()

# The decoding side: imports first, then the RSS they leave, then the peak over one recording.
_DECODE = r"""
import json, resource, sys
from eegfm.pipelines.datasets import SourceItem
from eegfm.pipelines.job.process_io import PreprocessConfig
from eegfm.pipelines.job.process import process_recording

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
    cmd = [sys.executable, "-m", "eegfm.pipelines.job.preprocess", "--input", str(path), "--output", str(out)]
    cmd += ["--pseudonym_key_file", str(key), "--no_artifact_model", "--runner", "DirectRunner"]
    cmd += ["--direct_running_mode", "in_memory", "--overwrite"]
    done = subprocess.run([sys.executable, "-c", _RSS_WRAPPER, *cmd], capture_output=True, text=True, cwd=REPO)
    if done.returncode:
        raise SystemExit(f"eegfm-preprocess on {path.name} failed (exit status {done.returncode})")
    return {"peak_mb": round(int(done.stdout.strip().splitlines()[-1]) / 1024.0, 1)}


def _status_kb(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith(field + ":"))


def _folder_mb(folder: Path) -> float:
    total = 0
    for root, _dirs, names in os.walk(folder):
        for name in names:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:  # removed while walked
                pass
    return total / 2**20


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class _FolderPeak(threading.Thread):
    """The most ``folder`` holds, polled every 50 ms until :meth:`stop`."""

    def __init__(self, folder: Path):
        super().__init__(daemon=True)
        self.folder, self.peak_mb, self.done = folder, 0.0, threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.05):
            self.peak_mb = max(self.peak_mb, _folder_mb(self.folder))

    def stop(self) -> float:
        self.done.set()
        self.join()
        return self.peak_mb


def _wait_healthy(port: int) -> None:
    for _ in range(600):
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            connection.request("GET", "/health")
            connection.getresponse().read()
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"eegfm-serve on port {port} did not answer /health in 120 s")


def serve_one(path: Path, model: str, scratch: Path) -> dict:
    """``path`` POSTed once to a fresh ``eegfm-serve`` whose TMPDIR is ``scratch``."""
    scratch.mkdir()
    port = _free_port()
    cmd = [sys.executable, "-m", "eegfm.serving.server", "--model", model, "--no-auth"]
    cmd += ["--port", str(port), "--max_upload_mb", "4096"]
    env = {**os.environ, "TMPDIR": str(scratch)}
    server = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_healthy(port)
        time.sleep(1.0)
        before = _status_kb(server.pid, "VmRSS")
        disk = _FolderPeak(scratch)
        disk.start()
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1800)
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(path.stat().st_size)}
        with open(path, "rb") as body:
            connection.request("POST", "/v1/predict?filename=recording.edf", body=body, headers=headers)
            response = connection.getresponse()
            response.read()
        tmp_peak = disk.stop()
        peak = _status_kb(server.pid, "VmHWM")
    finally:
        server.terminate()
        server.wait(60)
    return {
        "status": response.status,
        "rss_before_mb": round(before / 1024, 1),
        "peak_above_mb": round((peak - before) / 1024, 1),
        "tmp_peak_mb": round(tmp_peak, 1),
    }


def serve(files: dict[str, Path], model: str, tmp: Path) -> dict:
    """Each file POSTed once to a fresh ``eegfm-serve``: peak RSS above the RSS before the request,
    and the peak of its temporary folder, in MB; ``ratio``: the high rate's over the 256 Hz one's."""
    out = {name: serve_one(path, model, tmp / f"serve-{name}") for name, path in files.items()}
    ref, high = out["reference_256hz"], out["high_rate"]
    out["ratio"] = round(high["peak_above_mb"] / max(ref["peak_above_mb"], 1.0), 2)
    out["upload_mb"] = round(files["high_rate"].stat().st_size / 2**20, 1)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sfreq", type=int, default=100_000, help="the high rate, Hz")
    parser.add_argument("--seconds", type=int, default=60, help="the recordings' length, s")
    parser.add_argument("--reference-seconds", type=int, default=600, help="the 256 Hz working-set reference, s")
    parser.add_argument("--skip-preprocess", action="store_true", help="measure the decoding alone")
    parser.add_argument("--model", help="a fine-tuned run or model folder: also measure eegfm-serve with it")
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
        if args.model:
            result["server"] = serve(files, args.model, tmp)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
