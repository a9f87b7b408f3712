"""Benchmark: eegfm-serve under load on loopback; prints one JSON.

``eegfm-serve`` runs as its own process (the command users run, API keys on) with a fine-tuned-shaped
model of the chosen preset (hms6 head, weights as initialised: speed does not depend on them). Then
``--clients`` concurrent clients, each on its own kept-alive connection, POST one eegmat recording
(an EDF of 60 s, 6 windows) again and again for ``--seconds``. Reported: requests answered, errors
(any status but 200, or a broken connection), latency percentiles (p50, p90, p99, max), throughput
(requests, windows and EEG-seconds per second), and the server's own /metrics counters, which must
agree with the clients' count.

    python benchmarks/serve_load.py [--seconds 60] [--clients 20] [--preset tiny] [--workers 1]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import re
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

DEFAULT_RECORDING = Path(__file__).resolve().parents[2] / "shared" / "data" / "eegmat" / "Subject00_2.edf"


def start_server(model_dir: Path, key: str, args) -> tuple[subprocess.Popen, str, int]:
    """eegfm-serve in a process of its own; its host and port from the banner."""
    command = [sys.executable, "-m", "eegfm.serving.server", "--model", str(model_dir), "--port", "0"]
    command += ["--workers", str(args.workers), "--backend", args.backend, *args.server_args]
    env = {**os.environ, "EEGFM_API_KEYS": key}
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    banner = server.stdout.readline()
    found = re.search(r"http://([\d.]+):(\d+)", banner)
    if not found:
        server.kill()
        raise SystemExit(f"eegfm-serve did not start: {banner!r}")
    host, port = found.group(1), int(found.group(2))
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:  # with several workers, each loads the model after the banner
        try:
            connection = http.client.HTTPConnection(host, port, timeout=30)
            connection.request("GET", "/ready")
            if connection.getresponse().status == 200:
                return server, host, port
        except OSError:
            time.sleep(0.2)
    server.kill()
    raise SystemExit("eegfm-serve did not become ready in 300 s")


def client(host: str, port: int, body: bytes, key: str, until: float, results: list) -> None:
    """POST ``body`` until ``until`` on one kept-alive connection; (latency, status, windows, EEG s) each."""
    headers = {"Content-Type": "application/octet-stream", "Authorization": f"Bearer {key}"}
    connection = http.client.HTTPConnection(host, port, timeout=300)
    while time.monotonic() < until:
        started = time.perf_counter()
        try:
            connection.request("POST", "/v1/predict?filename=recording.edf", body=body, headers=headers)
            response = connection.getresponse()
            reply = json.loads(response.read())
            recordings = reply.get("recordings", [])
            windows, eeg = sum(r["windows"] for r in recordings), sum(r["eeg_seconds"] for r in recordings)
            results.append((time.perf_counter() - started, response.status, windows, eeg))
        except (OSError, http.client.HTTPException, ValueError):
            results.append((time.perf_counter() - started, 0, 0, 0.0))
            connection.close()
            connection = http.client.HTTPConnection(host, port, timeout=300)
    connection.close()


def server_counts(host: str, port: int) -> dict[str, float]:
    """The server's /metrics: predictions answered 200 and windows scored."""
    from prometheus_client.parser import text_string_to_metric_families

    connection = http.client.HTTPConnection(host, port, timeout=30)
    connection.request("GET", "/metrics")
    text = connection.getresponse().read().decode()
    counts = {"predict_200": 0.0, "windows": 0.0}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "eegfm_requests_total" and sample.labels == {
                "route": "/v1/predict",
                "method": "POST",
                "status": "200",
            }:
                counts["predict_200"] += sample.value
            elif sample.name == "eegfm_windows_scored_total":
                counts["windows"] += sample.value
    return counts


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def run(args) -> dict:
    # benchmarks.serve loads torch and the server (8 s): not for --help or a bad argument.
    from benchmarks.serve import make_model

    body = args.recording.read_bytes()
    key = secrets.token_urlsafe(32)
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = make_model(Path(tmp), args.preset)
        server, host, port = start_server(model_dir, key, args)
        try:
            results: list = []
            until = time.monotonic() + args.seconds
            threads = [
                threading.Thread(target=client, args=(host, port, body, key, until, results))
                for _ in range(args.clients)
            ]
            started = time.perf_counter()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            elapsed = time.perf_counter() - started
            counts = server_counts(host, port)
        finally:
            server.terminate()
            exit_status = server.wait(timeout=120)
    return report(args, results, elapsed, counts, exit_status)


def report(args, results: list, elapsed: float, counts: dict, exit_status: int) -> dict:
    answered = [r for r in results if r[1] == 200]
    latencies = [latency for latency, *_ in answered]
    windows, eeg_seconds = sum(r[2] for r in answered), sum(r[3] for r in answered)
    ms = lambda v: round(1000 * v, 1)  # noqa: E731
    return {
        "benchmark": "serve_load",
        "recording": args.recording.name,
        "preset": args.preset,
        "backend": args.backend,
        "workers": args.workers,
        "clients": args.clients,
        "seconds": round(elapsed, 1),
        "requests": len(results),
        "errors": len(results) - len(latencies),
        "latency_ms": {
            "p50": ms(statistics.median(latencies)) if latencies else None,
            "p90": ms(percentile(latencies, 0.9)) if latencies else None,
            "p99": ms(percentile(latencies, 0.99)) if latencies else None,
            "max": ms(max(latencies)) if latencies else None,
        },
        "throughput": {
            "requests_per_s": round(len(latencies) / elapsed, 2),
            "windows_per_s": round(windows / elapsed, 1),
            "eeg_seconds_per_s": round(eeg_seconds / elapsed, 1),
        },
        "server_metrics_agree": counts["predict_200"] == len(latencies) and counts["windows"] == windows,
        "server_exit_status_after_sigterm": exit_status,
        "cpu_count": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "load_average_after": round(os.getloadavg()[0], 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="how long the clients send requests")
    parser.add_argument("--clients", type=int, default=20, help="concurrent clients, one connection each")
    parser.add_argument("--preset", default="tiny", help="model preset (tiny, base ...)")
    parser.add_argument("--backend", default="torch", help="eegfm-serve --backend")
    parser.add_argument("--workers", type=int, default=1, help="eegfm-serve --workers")
    parser.add_argument("--recording", type=Path, default=DEFAULT_RECORDING, help="the EDF every request sends")
    parser.add_argument("server_args", nargs="*", help="more eegfm-serve options (after --)")
    args = parser.parse_args(argv)
    if not args.recording.is_file():
        parser.error(f"--recording {args.recording}: not found")
    result = run(args)
    print(json.dumps(result, indent=2))
    return 0 if result["errors"] == 0 and result["server_metrics_agree"] else 1


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks.serve's model maker
    sys.exit(main())
