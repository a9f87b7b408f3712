"""Benchmark: the matrix logarithm of the head's band covariances, by the eigendecomposition (what
``model.spd.log_spd`` takes without a gradient) against matrix products alone (what an ONNX export
and a gradient take); prints one JSON object.

The work is one training batch's: ``--batch`` (32) windows x 5 bands of 19 x 19 shrunk covariances
of real eegmat EEG (10 s at rest), float32, on ``--threads`` torch threads (1: a fine-tuning
run's share beside another job). Each figure is the median of ``--rounds`` timed rounds of 10
calls; the ratio is the products' time over the eigendecomposition's, and beside it the largest
difference between the two logarithms of a matrix (Frobenius norm, relative).

    python benchmarks/spd_log.py [--batch 32] [--threads 1] [--rounds 7] [--data ../shared/data/eegmat]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import mne
import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from eegfm.model.band_powers import COVARIANCE_BANDS, welch_band_covariances  # noqa: E402
from eegfm.model.spd import log_spd, log_spd_by_products, shrink  # noqa: E402

CALLS = 10


def covariances(data: Path, batch: int) -> torch.Tensor:
    """[batch, bands, 19, 19] shrunk band covariances of Subject00's rest, 10 s windows at 256 Hz."""
    raw = mne.io.read_raw_edf(data / "Subject00_1.edf", preload=True, verbose="ERROR")
    raw.pick(raw.ch_names[:19]).resample(256.0, verbose="ERROR")  # eegmat's first 19: the 10-20 electrodes
    signal = raw.get_data() * 1e6
    windows = signal[:, : signal.shape[1] // 2560 * 2560].reshape(19, -1, 2560).transpose(1, 0, 2)
    windows = np.resize(windows, (batch, 19, 2560)).astype(np.float32)  # repeated where the recording is short
    return shrink(welch_band_covariances(torch.as_tensor(windows), 256.0, COVARIANCE_BANDS))


def timed(logarithm, matrices: torch.Tensor, rounds: int) -> float:
    logarithm(matrices)  # warm-up
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(CALLS):
            logarithm(matrices)
        times.append((time.perf_counter() - start) / CALLS)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32, help="windows a batch (default 32)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--rounds", type=int, default=7, help="timed rounds of 10 calls (default 7)")
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "eegmat", help="eegmat's folder")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    matrices = covariances(args.data, args.batch)
    eigh_s, products_s = timed(log_spd, matrices, args.rounds), timed(log_spd_by_products, matrices, args.rounds)
    eigh, products = log_spd(matrices).double(), log_spd_by_products(matrices).double()
    difference = ((products - eigh).flatten(-2).norm(dim=-1) / eigh.flatten(-2).norm(dim=-1)).max().item()
    result = {
        "matrices": list(matrices.shape),
        "threads": args.threads,
        "eigh_ms": round(1000 * eigh_s, 2),
        "products_ms": round(1000 * products_s, 2),
        "products_over_eigh": round(products_s / eigh_s, 2),
        "max_relative_difference": float(f"{difference:.2g}"),
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
