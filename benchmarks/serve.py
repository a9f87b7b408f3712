"""Benchmark: predictions on raw recordings (``serving``), by backend and over HTTP; prints one JSON.

On the 64 eegmat recordings (about 2.1 EEG-hours), with a fine-tuned-shaped model of the chosen
preset (hms6 head, weights as initialised: speed does not depend on them) and the pipeline's
default recipe (10 s windows):

- ``pipeline_only``: the pipeline's steps per recording in-process (``process_recording``: read,
  harmonize, resample, filter, quality), no model: the reference, what preprocessing alone costs;
- ``torch`` and ``onnx``: ``Predictor.predict`` over the same files (the steps plus the model), as
  EEG-hours per second and as a share of the reference's speed (``vs_pipeline_only``);
- ``http``: the same recordings POSTed one at a time to ``eegfm-serve`` on localhost: latency per
  request (median, 95th percentile) against the in-process prediction of the same file
  (``overhead_ratio``; upload, temporary file, JSON).

Rounds are interleaved and the best round kept (a shared machine only ever adds time).

    python benchmarks/serve.py [--data ../shared/data/eegmat] [--preset base] [--rounds 2] [--http_files 8]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import secrets
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch
from threadpoolctl import threadpool_limits

from eegfm.contract.preprocess_spec import write_preprocess_spec
from eegfm.contract.schema import CHANNELS, SFREQ
from eegfm.core.logs import setup_logging
from eegfm.inference.predictor import PredictConfig, Predictor
from eegfm.model.config import EEGFMConfig
from eegfm.model.modeling import EEGFMModel
from eegfm.pipelines.datasets import discover
from eegfm.pipelines.job.process import PreprocessConfig, process_recording
from eegfm.serving.api.app import create_app
from eegfm.serving.api.metrics import Metrics
from eegfm.serving.api.runner import make_uvicorn_server
from eegfm.serving.api.service import PredictionService, ServeLimits
from eegfm.serving.server import build_parser as serve_parser

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "eegmat"


def make_model(folder: Path, preset: str) -> Path:
    """A model folder as fine-tuning leaves it: weights, config, the preprocessing recipe."""
    torch.manual_seed(0)
    model_dir = folder / "model"
    EEGFMModel(EEGFMConfig.from_preset(preset, head="hms6", modalities=[])).save_pretrained(model_dir)
    config = PreprocessConfig()
    write_preprocess_spec(model_dir, config.to_dict(), config.config_hash(), channels=list(CHANNELS), sfreq=SFREQ)
    return model_dir


def pipeline_only(files: list[str], config) -> float:
    """Seconds for the pipeline's steps over ``files``, as its Beam workers run them (one BLAS thread)."""
    items, _, _ = discover(files, warn_sidecars=False)
    key, config_hash = secrets.token_bytes(32), config.config_hash()
    start = time.perf_counter()
    with threadpool_limits(limits=1, user_api="blas"):
        for item in items:
            for _ in process_recording(item, key, config, config_hash):
                pass
    return time.perf_counter() - start


def predict_all(predictor, files: list[str]) -> tuple[float, float]:
    start = time.perf_counter()
    seconds = sum(p.eeg_seconds for p in predictor.predict(files))
    return time.perf_counter() - start, seconds


def http_latencies(predictor, files: list[str]) -> tuple[list[float], list[float]]:
    options = serve_parser().parse_args(["--model", "-", "--port", "0", "--no-auth"])
    app = create_app(PredictionService(predictor, ServeLimits()), None, Metrics())
    server, sock = make_uvicorn_server(app, options)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    over_http, in_process = [], []
    try:
        for path in files:
            body = Path(path).read_bytes()
            start = time.perf_counter()
            connection = http.client.HTTPConnection(*sock.getsockname()[:2], timeout=600)
            connection.request(
                "POST",
                "/v1/predict?filename=recording.edf",
                body=body,
                headers={"Content-Type": "application/octet-stream"},
            )
            response = connection.getresponse()
            response.read()
            connection.close()
            over_http.append(time.perf_counter() - start)
            assert response.status == 200, response.status
            start = time.perf_counter()
            list(predictor.predict([path]))
            in_process.append(time.perf_counter() - start)
    finally:
        server.should_exit = True
        thread.join()
    return over_http, in_process


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="a folder of EDF recordings")
    parser.add_argument("--preset", default="base", help="model preset (tiny, base, large ...)")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds; the best is kept")
    parser.add_argument("--batch_size", type=int, default=32, help="windows per forward pass")
    parser.add_argument("--http_files", type=int, default=8, help="recordings POSTed to the HTTP API")
    args = parser.parse_args(argv)
    setup_logging("WARNING")
    files = sorted(str(p) for p in args.data.glob("*.edf"))
    if not files:
        parser.error(f"--data {args.data}: no .edf files")
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = make_model(Path(tmp), args.preset)
        predictors = {
            name: Predictor(model_dir, PredictConfig(backend=name, batch_size=args.batch_size))
            for name in ("torch", "onnx")
        }
        config = predictors["torch"].preprocess
        best: dict[str, float] = {}
        eeg_seconds = 0.0
        for _ in range(args.rounds):
            best["pipeline_only"] = min(best.get("pipeline_only", float("inf")), pipeline_only(files, config))
            for name, predictor in predictors.items():
                seconds, eeg_seconds = predict_all(predictor, files)
                best[name] = min(best.get(name, float("inf")), seconds)
        http, direct = http_latencies(predictors["onnx"], files[: args.http_files])
    hours = eeg_seconds / 3600
    report: dict = {
        "benchmark": "serve",
        "data": str(args.data),
        "files": len(files),
        "eeg_hours": round(hours, 4),
        "preset": args.preset,
        "rounds": args.rounds,
        "batch_size": args.batch_size,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average_before": round(load_before, 2),
    }
    for name, seconds in best.items():
        report[name] = {"seconds": round(seconds, 2), "eeg_hours_per_s": round(hours / seconds, 4)}
        if name != "pipeline_only":
            report[name]["vs_pipeline_only"] = round(best["pipeline_only"] / seconds, 3)
    report["onnx_vs_torch"] = round(best["torch"] / best["onnx"], 3)
    report["http"] = {
        "backend": "onnx",
        "requests": len(http),
        "latency_ms_median": round(1000 * statistics.median(http), 1),
        "latency_ms_p95": round(1000 * sorted(http)[max(0, round(0.95 * len(http)) - 1)], 1),
        "in_process_ms_median": round(1000 * statistics.median(direct), 1),
        "overhead_ratio": round(statistics.median(http) / statistics.median(direct), 3),
    }
    report["load_average_after"] = round(os.getloadavg()[0], 2)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
