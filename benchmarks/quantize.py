"""Benchmark: static INT8 quantization (``serving.quantize``) against the float32 ONNX graph; prints one JSON.

For each fine-tuned run given (its folder is copied first: nothing is written beside it), on the
pipeline output it was trained on:

- ``size``: bytes of ``model.onnx`` as exported and of ``model.int8.onnx``, and their ratio; also
  the ratio against the float graph without the exporter's node debug metadata (which the INT8
  file leaves out), the fair comparison of the weights;
- ``latency_ms``: median ``session.run`` time of each graph at batch 1 and 32 on the run's real
  windows, ONNX Runtime CPU, the same session options (``--threads`` intra-op threads, one
  inter-op, all graph optimizations), interleaved rounds; ``speedup`` = float32 / int8;
- ``preset`` (``--latency_preset``): size and latency of a larger model, weights as initialised;
- ``metrics``: balanced accuracy (and for vote targets the KL) of float32 and int8 on the run's
  held-out subjects (its test split, else validation), calibrated by the run's temperature;
  calibration reads only the run's training subjects. ``probability_change``: the largest and mean
  absolute change of a class probability.

The simulated suite's runs are leave-one-site-out folds; the summary is their mean, as in the suite.

    python benchmarks/quantize.py --eegmat_run RUN --eegmat_data DATA \\
        --simulated_runs RUN [RUN ...] --simulated_data DATA [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import torch

from eegfm.contract import layout
from eegfm.core.logs import setup_logging
from eegfm.evaluation.comparison import baselines
from eegfm.evaluation.comparison.labeled import metrics_of
from eegfm.evaluation.comparison.windows import WindowSet, load_windows
from eegfm.evaluation.robustness_run import held_out
from eegfm.inference.backends import onnx_path_for
from eegfm.metrics.losses import binary_logits
from eegfm.model.config import EEGFMConfig
from eegfm.model.export import OnnxEEGFM, export_onnx
from eegfm.model.modeling import EEGFMModel
from eegfm.serving.quantize import INT8_NAME, FeedReader, QuantizeConfig, quantize_graph


def copy_run(run: Path, into: Path) -> Path:
    """The run's model folder copied (config, weights, recipe), with run.json beside it."""
    target = into / run.name
    shutil.copytree(run / "model", target / "model", ignore=shutil.ignore_patterns("*.onnx", "*.engine"))
    shutil.copy2(run / layout.RUN, target / layout.RUN)
    return target


def feeds(runner: OnnxEEGFM, windows: WindowSet, batch: int):
    for start in range(0, len(windows), batch):
        end = start + batch
        yield runner.feed(windows.eeg[start:end], channel_mask=windows.channel_mask[start:end])


def probabilities(runner: OnnxEEGFM, windows: WindowSet) -> np.ndarray:
    """[N, C] class probabilities, calibrated by the graph's temperature, as eegfm-predict gives them."""
    logits = np.concatenate([runner.session.run(["logits"], f)[0] for f in feeds(runner, windows, 64)])
    logits = torch.as_tensor(logits, dtype=torch.float64).reshape(len(logits), -1)
    if logits.shape[1] == 1:
        logits = binary_logits(logits[:, 0])
    return torch.softmax(logits / runner.temperature, dim=-1).numpy()


def latency_ms(runners: dict[str, OnnxEEGFM], windows: WindowSet, batch: int, repeats: int) -> dict[str, float]:
    """Median ms of one ``session.run`` per graph on the first ``batch`` windows, interleaved."""
    feed = {name: next(feeds(runner, windows, batch)) for name, runner in runners.items()}
    times: dict[str, list[float]] = {name: [] for name in runners}
    for round_ in range(repeats + 3):  # the first three warm up
        for name, runner in runners.items():
            started = time.perf_counter()
            runner.session.run(["logits"], feed[name])
            if round_ >= 3:
                times[name].append((time.perf_counter() - started) * 1000)
    found = {name: round(statistics.median(t), 3) for name, t in times.items()}
    found["speedup"] = round(found["float32"] / found["int8"], 3)
    return found


def graph_sizes(float_path: Path, int8_path: Path) -> dict[str, float]:
    graph = onnx.load(str(float_path))
    for node in graph.graph.node:
        del node.metadata_props[:]
    bare = graph.ByteSize()
    float_bytes, int8_bytes = float_path.stat().st_size, int8_path.stat().st_size
    return {
        "float32_bytes": float_bytes,
        "int8_bytes": int8_bytes,
        "ratio": round(float_bytes / int8_bytes, 3),
        "float32_without_node_metadata_bytes": bare,
        "ratio_without_node_metadata": round(bare / int8_bytes, 3),
    }


def split_windows(run: Path, data: str) -> tuple[WindowSet, WindowSet, str]:
    """The run's training and held-out windows of its task, and the held-out split's name."""
    info = json.loads((run / layout.RUN).read_text())
    if info.get("split_group") != "subject":
        raise ValueError(f"{run}/run.json: split_group {info.get('split_group')!r}; expected 'subject'")
    windows = load_windows(data, info["record_task"])
    name, groups = held_out(info, "auto")
    train = windows.where(np.isin(windows.subject, info["split"]["train"]))
    test = windows.where(np.isin(windows.subject, list(groups)))
    if not len(train) or not len(test):
        raise ValueError(f"{run}: {len(train)} training and {len(test)} {name} windows in {data}; expected both")
    return train, test, name


def quantized(float_path: Path, runner: OnnxEEGFM, train: WindowSet, args) -> tuple[Path, dict]:
    """The INT8 graph beside ``float_path``, calibrated on up to ``--calibration_windows`` of ``train``."""
    calibration = train.where(np.random.default_rng(0).permutation(len(train)) < args.calibration_windows)
    config = QuantizeConfig(calibration_windows=args.calibration_windows)
    reader = FeedReader(feeds(runner, calibration, config.batch_size), -(-len(calibration) // config.batch_size))
    started = time.perf_counter()
    path = quantize_graph(float_path, float_path.with_name(INT8_NAME), reader, config)
    return path, {"windows": len(calibration), "seconds": round(time.perf_counter() - started, 2)}


def benchmark_run(run: Path, data: str, workdir: Path, args) -> dict:
    """Size, latency and metrics of one run's float32 and int8 graphs."""
    local = copy_run(run, workdir)
    float_path = onnx_path_for(local / "model")
    train, test, split = split_windows(local, data)
    runner = OnnxEEGFM(float_path, threads=args.threads)
    int8_path, calibration = quantized(float_path, runner, train, args)
    runners = {"float32": runner, "int8": OnnxEEGFM(int8_path, threads=args.threads)}
    n_classes = len(runner.id2label) if len(runner.id2label) > 1 else 2
    prior = baselines.targets(train, n_classes).mean(0)
    target = baselines.targets(test, n_classes)
    probs = {name: probabilities(r, test) for name, r in runners.items()}
    metrics = {name: metrics_of(p, target, prior) for name, p in probs.items()}
    keys = [k for k in ("balanced_accuracy", "kl", "auroc") if k in metrics["float32"]]
    change = np.abs(probs["int8"] - probs["float32"])
    return {
        "run": f"{run.parent.name}/{run.name}",
        "held_out": {"split": split, "windows": len(test)},
        "calibration": calibration,
        "size": graph_sizes(float_path, int8_path),
        "latency_ms": {f"batch_{b}": latency_ms(runners, test, b, args.repeats) for b in (1, 32)},
        "metrics": {name: {k: round(float(m[k]), 4) for k in keys} for name, m in metrics.items()},
        "probability_change": {"max": round(float(change.max()), 4), "mean": round(float(change.mean()), 4)},
        "same_predicted_class": round(float(np.mean(probs["int8"].argmax(1) == probs["float32"].argmax(1))), 4),
    }


def benchmark_preset(preset: str, data: str, workdir: Path, args) -> dict:
    """Size and latency of a six-class model of ``preset`` with weights as initialised (speed does
    not depend on them), calibrated on the eegmat run's training windows and timed on the others."""
    train, test, _ = split_windows(args.eegmat_run, data)
    model_dir = workdir / preset / "model"
    torch.manual_seed(0)
    EEGFMModel(EEGFMConfig.from_preset(preset, head="hms6", modalities=[])).save_pretrained(model_dir)
    float_path = export_onnx(EEGFMModel.from_pretrained(model_dir), model_dir / "model.onnx")
    runner = OnnxEEGFM(float_path, threads=args.threads)
    int8_path, calibration = quantized(float_path, runner, train, args)
    runners = {"float32": runner, "int8": OnnxEEGFM(int8_path, threads=args.threads)}
    return {
        "preset": preset,
        "calibration": calibration,
        "size": graph_sizes(float_path, int8_path),
        "latency_ms": {f"batch_{b}": latency_ms(runners, test, b, args.repeats) for b in (1, 32)},
    }


def summary(results: list[dict]) -> dict:
    """The mean over runs of the metrics, their change, the size ratio and the speed-ups."""
    keys = results[0]["metrics"]["float32"]
    mean = lambda values: round(float(np.mean(values)), 4)  # noqa: E731
    found = {name: {k: mean([r["metrics"][name][k] for r in results]) for k in keys} for name in ("float32", "int8")}
    found["change"] = {k: round(found["int8"][k] - found["float32"][k], 4) for k in keys}
    found["size_ratio"] = mean([r["size"]["ratio"] for r in results])
    found["speedup"] = {b: mean([r["latency_ms"][b]["speedup"] for r in results]) for b in ("batch_1", "batch_32")}
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--eegmat_run", type=Path, help="a fine-tuning run on eegmat (the eegmat benchmark's)")
    parser.add_argument("--eegmat_data", help="the pipeline output that run trained on")
    parser.add_argument("--simulated_runs", type=Path, nargs="*", default=[], help="leave-one-site-out runs")
    parser.add_argument("--simulated_data", help="the pipeline output those runs trained on")
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads (inter-op: 1)")
    parser.add_argument("--repeats", type=int, default=30, help="timed runs per graph and batch size")
    parser.add_argument(
        "--latency_preset",
        default=None,
        help="also time a model of this preset (e.g. base; weights as initialised) on the eegmat windows",
    )
    parser.add_argument("--calibration_windows", type=int, default=256, help="training windows to calibrate on")
    args = parser.parse_args(argv)
    setup_logging("WARNING")
    suites = {"eegmat": ([args.eegmat_run] if args.eegmat_run else [], args.eegmat_data)}
    suites["simulated"] = (args.simulated_runs, args.simulated_data)
    report: dict = {
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
        "machine": {"cpus": len(os.sched_getaffinity(0)), "processor": platform.machine()},
        "onnxruntime": onnxruntime.__version__,
        "intra_op_threads": args.threads,
    }
    with tempfile.TemporaryDirectory(prefix="eegfm-quantize-") as workdir:
        for suite, (runs, data) in suites.items():
            if not runs:
                continue
            if not data:
                parser.error(f"--{suite}_data: required with the {suite} runs")
            results = [benchmark_run(run, data, Path(workdir) / suite / str(i), args) for i, run in enumerate(runs)]
            report[suite] = {"summary": summary(results), "runs": results}
        if args.latency_preset:
            if not (args.eegmat_run and args.eegmat_data):
                parser.error("--latency_preset: needs --eegmat_run and --eegmat_data (its windows)")
            report["preset"] = benchmark_preset(args.latency_preset, args.eegmat_data, Path(workdir), args)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
