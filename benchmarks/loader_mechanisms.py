"""The training loader's own mechanisms against what a library does, for ``train_loader.py
--mechanisms``: windows/s and CPU per window of ``EEGLoader`` against itself parsing whole records
(``split_samples=False``), with DataLoader's own transfer (``fast_ipc=False``) and against a plain
DataLoader, each in a forked child, interleaved round by round."""

from __future__ import annotations

import resource
import statistics
import time
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from eegfm.contract.schema import N_CHANS
from eegfm.contract.tfrecord import read_records
from eegfm.contract.windows import Example
from eegfm.training.data import EEGLoader, LoaderConfig, list_files


def cpu_seconds() -> float:
    """CPU time of this process and of its finished (joined) children, e.g. DataLoader workers."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


# --- The loader's own transfer against the plain library path ----------------------------------
# A mechanism of the loader's own stays only where it earns >= 1.5x the windows/s of what a library
# does. Measured on eegmat (757 windows of 10 s, linked 6 times), 2 workers, float32, batches of 64,
# interleaved rounds on a machine under load 5-14 (ratios of median windows/s; CPU per window):
# the hand-off 2.0-3.1x (CPU 2.0-2.5x) over DataLoader's transfer: kept, as LoaderConfig.fast_ipc;
# splitting a record's samples out by hand before protobuf's parse 1.49-1.73x over four runs (CPU
# 1.28-1.45x), kept as LoaderConfig.split_samples: without it benchmarks/train.py's loader lost
# 20-26% of its windows/s. At load 2-3.5 it measured 1.17-1.19x (float32) and 1.27-1.29x (float16)
# with 0 and 2 workers (CPU alike). Removed, under 1.5x: decoding the small fields' varints by hand
# (1.19-1.45x; CPU 1.06-1.10x), glibc's heap kept by mallopt (1.13x; CPU 0.97x).
VARIANTS = ("loader", "loader-whole-parse", "loader-plain-ipc", "plain")


def _plain_batches(files: list[str], batch_size: int, workers: int, dtype: str) -> Iterator[dict]:
    """The plain path: torch's DataLoader with its worker processes, default collation and transfer,
    over windows parsed by protobuf (files dealt to the workers; no shuffle)."""

    class Windows(IterableDataset):
        def __iter__(self):
            info = get_worker_info()
            mine = files if info is None else files[info.id :: info.num_workers]
            while True:
                for path in mine:
                    for raw in read_records(path, "SNAPPY"):
                        f = Example.FromString(raw).features.feature
                        eeg = np.frombuffer(f["eeg"].bytes_list.value[0], "<f2").reshape(N_CHANS, -1)
                        yield {
                            "eeg": eeg.astype(dtype),
                            "channel_mask": np.float32(f["channel_mask"].int64_list.value),
                            "age": np.float32(f["age"].float_list.value[0]),
                            "label": f["label"].int64_list.value[0],
                            "artifact_score": np.float32(f["artifact_score"].float_list.value[0]),
                            "window_start": f["window_start_index"].int64_list.value[0],
                            "site_id": f["site_id"].bytes_list.value[0].decode(),
                            "subject_id": f["subject_id"].bytes_list.value[0].decode(),
                        }

    return iter(
        DataLoader(Windows(), batch_size=batch_size, num_workers=workers, prefetch_factor=4 if workers else None)
    )


def _rate(batches: Iterator[dict], seconds: float) -> tuple[float, float]:
    """Steady-state windows/s, and CPU microseconds per window of this process and its workers."""
    cpu = cpu_seconds()
    count = len(next(batches)["label"])
    steady, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        steady += len(next(batches)["label"])
    rate = steady / (time.perf_counter() - start)
    del batches  # joins the workers, so that their CPU time is counted
    return rate, (cpu_seconds() - cpu) / (count + steady) * 1e6


def _variant_rate(
    data: str, variant: str, workers: int, dtype: str, batch_size: int, seconds: float
) -> tuple[float, float]:
    """``_rate`` of one variant, in a forked child whose workers' CPU time is its own."""
    import multiprocessing

    def run(queue) -> None:
        torch.set_num_threads(1)
        if variant == "plain":
            queue.put(_rate(_plain_batches(list_files(data), batch_size, workers, dtype), seconds))
            return
        config = LoaderConfig(
            batch_size=batch_size,
            num_workers=workers,
            pin_memory=False,
            eeg_dtype=dtype,
            fast_ipc=variant != "loader-plain-ipc",
            split_samples=variant != "loader-whole-parse",
        )
        queue.put(_rate(iter(EEGLoader(data, config, rank=0, world_size=1)), seconds))

    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=run, args=(queue,))
    child.start()
    rate = queue.get(timeout=600)
    child.join(60)
    return rate


def mechanism_benchmark(
    data: str,
    *,
    workers: int = 2,
    dtype: str = "float32",
    batch_size: int,
    seconds: float = 3.0,
    rounds: int = 3,
    against: tuple[str, ...] = VARIANTS[1:],
) -> dict:
    """windows/s and CPU per window of the loader and of the variants ``against`` (``VARIANTS``: the
    loader parsing whole records, with DataLoader's own transfer, a plain DataLoader), interleaved
    round by round; medians and ratios."""
    variants = ("loader", *against)
    runs: dict[str, list[tuple[float, float]]] = {v: [] for v in variants}
    loads = [open("/proc/loadavg").read().split()[:3]]
    for _ in range(rounds):
        for variant in variants:
            runs[variant].append(_variant_rate(data, variant, workers, dtype, batch_size, seconds))
        loads.append(open("/proc/loadavg").read().split()[:3])
    rate = {v: statistics.median(r for r, _ in runs[v]) for v in variants}
    cpu = {v: statistics.median(c for _, c in runs[v]) for v in variants}
    ratios = {
        f"loader / {other}": {
            "windows_per_s": round(rate["loader"] / rate[other], 3),
            "cpu_per_window": round(cpu[other] / cpu["loader"], 3),
        }
        for other in against
    }
    return {
        "workers": workers,
        "eeg_dtype": dtype,
        "batch_size": batch_size,
        "seconds": seconds,
        "variants": {
            v: {
                "windows_per_s": round(rate[v], 1),
                "cpu_us_per_window": round(cpu[v]),
                "rounds_windows_per_s": [round(r) for r, _ in runs[v]],
            }
            for v in variants
        },
        "ratios": ratios,
        "keep_if": "windows_per_s ratio >= 1.5",
        "loadavg": loads,
    }
