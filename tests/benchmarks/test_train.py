"""benchmarks/train.py's GPU measurement, run on the CPU: the code a GPU session will run."""

from __future__ import annotations

import math

import pytest
import torch

from benchmarks.pretraining_step import step_throughput
from benchmarks.train import loader_vs_gpu


def test_step_throughput_counts_model_flops_per_window_and_reports_mfu():
    runs = [
        step_throughput(
            torch.device("cpu"),
            preset="tiny",
            batch=batch,
            n_times=512,
            steps=2,
            warmup=1,
            peak=1e12 if batch == 2 else None,
        )
        for batch in (2, 4, 6)
    ]
    assert [run["tokens_per_step"] for run in runs] == [2 * 19 * 2, 4 * 19 * 2, 6 * 19 * 2]  # 1 s patches
    flops = [run["flops_per_step"] for run in runs]
    # nearly linear in the batch (the contrastive head's batch-by-batch similarities add a little)
    assert 0 < flops[0] < flops[1] < flops[2]
    assert math.isclose(flops[2] - flops[1], flops[1] - flops[0], rel_tol=0.01)
    assert math.isclose(flops[1], 2 * flops[0], rel_tol=0.01)
    first = runs[0]  # MFU: achieved FLOP/s over the 1 TFLOP/s peak given
    assert math.isclose(first["mfu"], flops[0] / (first["step_ms"] / 1e3) / 1e12, rel_tol=0.02, abs_tol=1e-4)
    assert first["mfu"] > 0 and first["tokens_per_s"] > 0 and first["max_allocated_mb"] is None
    assert runs[1]["mfu"] is None


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU")
def test_step_throughput_on_the_gpu_reports_memory_and_mfu():
    run = step_throughput(torch.device("cuda"), preset="base", batch=8, steps=2, warmup=1, peak=989e12)
    assert run["max_allocated_mb"] > 0 and 0 < run["mfu"] < 1 and run["flops_per_step"] > 0


def test_tensorflow_reference_reads_every_record_of_our_files(tmp_path):
    pytest.importorskip("tensorflow")
    from benchmarks.train_loader import tf_rate
    from eegfm.contract.tfrecord import write_records

    records = [bytes([i % 251]) * (1000 + 97 * i) for i in range(300)]  # some cross 256 KiB blocks
    paths = [str(tmp_path / "a.tfrecord"), str(tmp_path / "b.tfrecord")]
    write_records(paths[0], records[:200])
    write_records(paths[1], records[200:])
    rate, per_pass = tf_rate(paths, seconds=0.2)
    assert per_pass == 300 and rate > 0


def test_loader_is_compared_with_every_gpu_run_and_the_hungriest():
    runs = [
        step_throughput(torch.device("cpu"), preset="tiny", batch=batch, n_times=512, steps=2, warmup=1)
        for batch in (2, 8)
    ]
    loader = {
        "loader": {
            "workers=2,float16": {"windows_per_s": 10.0},
            "workers=4,float16": {"windows_per_s": 3000.0},
            "workers=4,float32": {"windows_per_s": 1.0},
        }
    }
    report = loader_vs_gpu(loader, {"runs": runs}, workers=4)
    assert report["windows_per_s"] == 3000.0
    assert [r["times_step"] for r in report["times_step_per_run"]] == [
        round(3000.0 / run["samples_per_s"], 2) for run in runs
    ]
    hungriest = max(run["samples_per_s"] for run in runs)
    assert report["times_hungriest_step"] == round(3000.0 / hungriest, 2)
    with pytest.raises(KeyError):  # the preset's worker count must have been measured
        loader_vs_gpu(loader, {"runs": runs}, workers=8)
