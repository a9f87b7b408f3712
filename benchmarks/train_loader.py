"""Training data loader throughput against the raw read bound; prints one JSON object.

- ``raw``: ``pipelines.tfrecord.read_records`` over the same files in one process (read, snappy
  decompression, CRC checks; nothing parsed): the bound the loader works from. Records per
  second of wall time, and CPU microseconds per record.
- ``loader``: ``training.data.EEGLoader`` in training mode (infinite stream, shuffle buffer,
  batches of ``--batch-size``, by default the ``base`` pretraining preset's, no augmentation as in
  that preset, no pinned memory), for each ``--workers`` count
  and each ``eeg_dtype`` (float32 batches; float16 batches, converted on the GPU by the model,
  which is what the GPU presets ``base`` and ``large-gpu`` use: ``preset`` says so).
  ``windows_per_s`` is steady state (from the first batch on), ``first_batch_s`` the start-up,
  ``cpu_us_per_window`` the CPU time of the main process and its workers per window delivered.
- ``ratio``: loader windows/s over raw records/s (the issue's target: >= 0.5), and
  ``ratio_per_core``: raw CPU per record over loader CPU per window, the same ratio on an idle
  machine with one core per process; it is what the wall ratio of ``W`` workers approaches
  (times ``W``) where ``W`` cores are free. This machine is shared, so every measurement repeats
  ``--rounds`` times interleaved and the median is reported, with the load average.

Usage: ``python benchmarks/train_loader.py [--data outputs/demo/tfrecords] [--seconds 3]``
(``make demo`` writes the default data).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from pipelines.tfrecord import read_records  # noqa: E402
from training.config import load_config  # noqa: E402
from training.data import EEGLoader, LoaderConfig, list_files  # noqa: E402

BASE_LOADER = load_config("base", "pretrain").loader
BASE_BATCH = BASE_LOADER.batch_size


def _cpu_seconds() -> float:
    """CPU time of this process and of its finished (joined) children, e.g. DataLoader workers."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def raw_rate(files: list[str], seconds: float) -> dict[str, float]:
    """Plain read_records passes over ``files`` for at least ``seconds``."""
    count, start, cpu = 0, time.perf_counter(), _cpu_seconds()
    while time.perf_counter() - start < seconds:
        for path in files:
            count += sum(1 for _ in read_records(path, "SNAPPY"))
    elapsed = time.perf_counter() - start
    return {"per_s": count / elapsed, "cpu_us": (_cpu_seconds() - cpu) / count * 1e6}


def loader_rate(data: str, workers: int, dtype: str, batch_size: int, seconds: float) -> dict[str, float]:
    """Steady-state windows per second through the loader, start-up time and CPU per window."""
    config = LoaderConfig(batch_size=batch_size, num_workers=workers, pin_memory=False, eeg_dtype=dtype)
    start, cpu = time.perf_counter(), _cpu_seconds()
    batches = iter(EEGLoader(data, config, rank=0, world_size=1))
    total = len(next(batches)["label"])
    first = time.perf_counter()
    count = 0
    while time.perf_counter() - first < seconds:
        count += len(next(batches)["label"])
    elapsed = time.perf_counter() - first
    batches.close()  # shuts the workers down, so their CPU time is counted
    return {"per_s": count / elapsed, "first_batch_s": first - start,
            "cpu_us": (_cpu_seconds() - cpu) / (total + count) * 1e6}


def loader_benchmark(data: str | Path, *, workers: tuple[int, ...] = (0, 2),
                     dtypes: tuple[str, ...] = ("float32", "float16"), batch_size: int = BASE_BATCH,
                     seconds: float = 3.0, rounds: int = 3, consumed_per_s: float | None = None) -> dict:
    """The loader section of the report; ``consumed_per_s``: windows/s a training step takes."""
    data = str(data)
    torch.set_num_threads(1)  # one core per process, like a DataLoader worker
    files = list_files(data)
    load_before = os.getloadavg()[0]
    cases = [(w, d) for w in workers for d in dtypes]
    raw: list[dict[str, float]] = []
    runs: dict[tuple[int, str], list[dict[str, float]]] = {case: [] for case in cases}
    for _ in range(rounds):
        raw.append(raw_rate(files, seconds))
        for n_workers, dtype in cases:
            runs[n_workers, dtype].append(loader_rate(data, n_workers, dtype, batch_size, seconds))

    def median(values: list[dict[str, float]], key: str) -> float:
        return statistics.median(v[key] for v in values)

    raw_rate_, raw_cpu = median(raw, "per_s"), median(raw, "cpu_us")
    loader = {}
    for (n_workers, dtype), values in runs.items():
        rate, cpu = median(values, "per_s"), median(values, "cpu_us")
        loader[f"workers={n_workers},{dtype}"] = {
            "windows_per_s": round(rate, 1), "first_batch_s": round(median(values, "first_batch_s"), 2),
            "cpu_us_per_window": round(cpu), "ratio": round(rate / raw_rate_, 3),
            "ratio_per_core": round(raw_cpu / cpu, 3),
        }
        if consumed_per_s:
            loader[f"workers={n_workers},{dtype}"]["times_training_demand"] = round(rate / consumed_per_s, 1)
    return {
        "data": data, "files": len(files), "batch_size": batch_size, "cpu_count": os.cpu_count(),
        "preset": {"name": "base", "batch_size": BASE_LOADER.batch_size, "eeg_dtype": BASE_LOADER.eeg_dtype},
        "rounds": rounds, "seconds": seconds,
        "raw": {"records_per_s": round(raw_rate_, 1), "cpu_us_per_record": round(raw_cpu)},
        "loader": loader,
        "training_consumes_windows_per_s": consumed_per_s,
        "targets": {"ratio": ">= 0.5", "times_training_demand": ">= 10"},
        "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(REPO / "outputs" / "demo" / "tfrecords"),
                        help="folder of the pipeline's TFRecords (default: what `make demo` writes)")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2],
                        help="DataLoader worker counts to measure (0: batches built in this process)")
    parser.add_argument("--dtypes", nargs="+", default=["float32", "float16"], choices=["float32", "float16"],
                        help="eeg_dtype of the batches; the GPU presets use float16")
    parser.add_argument("--batch-size", type=int, default=BASE_BATCH,
                        help=f"windows per batch (default: the base pretraining preset's, {BASE_BATCH})")
    parser.add_argument("--seconds", type=float, default=3.0,
                        help="steady-state seconds of each measurement (after the first batch)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="interleaved repetitions of every measurement; the median is reported")
    args = parser.parse_args()
    result = loader_benchmark(args.data, workers=tuple(args.workers), dtypes=tuple(args.dtypes),
                              batch_size=args.batch_size, seconds=args.seconds, rounds=args.rounds)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
