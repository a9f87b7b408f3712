"""Benchmark: an EEGNet-8,2 training step with its first block factored (``model.eegnet_factored``,
what the benchmark's EEGNet baseline trains with) against braindecode's ``EEGNetv4`` called
directly; prints one JSON object.

Both train the same network from the same weights on the same batch (``--batch`` (64) five-second
19-channel windows at 128 Hz, random; dropout 0.25; AdamW) on ``--threads`` (1) torch thread(s),
as a ``folder`` benchmark's job-pool worker does: ``--steps`` (30) timed steps after 3 to warm
up, the two ways interleaved for ``--rounds`` (3), best of each kept. Also the eval-mode forward
pass of 256 windows (validation). Ratios: the module's time over the factored one's.

    python benchmarks/eegnet_step.py [--threads 1] [--steps 30] [--rounds 3] [--batch 64]
"""

from __future__ import annotations

import argparse
import copy
import json
import time

import torch

from eegfm.core.allocator import keep_freed_memory
from eegfm.metrics.losses import soft_cross_entropy
from eegfm.model import eegnet_factored
from eegfm.model.eegnet import build_model

N_CHANS, N_TIMES = 19, 640  # five seconds at EEGNet's 128 Hz


def _ways(model: torch.nn.Module) -> dict[str, object]:
    return {"module": model, "factored": lambda x: eegnet_factored.forward(model, x)}


def _train_ms(model: torch.nn.Module, run, x: torch.Tensor, y: torch.Tensor, steps: int) -> float:
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        soft_cross_entropy(run(x), y).backward()
        optimizer.step()

    for _ in range(3):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return 1000 * (time.perf_counter() - start) / steps


@torch.no_grad()
def _eval_ms(model: torch.nn.Module, run, x: torch.Tensor, steps: int) -> float:
    model.eval()
    run(x)
    start = time.perf_counter()
    for _ in range(steps):
        run(x)
    return 1000 * (time.perf_counter() - start) / steps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1, as a pool worker)")
    parser.add_argument("--steps", type=int, default=30, help="timed steps of each run (default 30)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved runs of each way; best kept (default 3)")
    parser.add_argument("--batch", type=int, default=64, help="training windows a step (default 64, the baseline's)")
    args = parser.parse_args(argv)
    keep_freed_memory()  # as the commands that train do
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = build_model(N_CHANS, N_TIMES, 2, 0.25)
    x, y = torch.randn(args.batch, N_CHANS, N_TIMES), torch.softmax(torch.randn(args.batch, 2), -1)
    validation = torch.randn(256, N_CHANS, N_TIMES)
    train: dict[str, list[float]] = {"module": [], "factored": []}
    predict: dict[str, list[float]] = {"module": [], "factored": []}
    for _ in range(args.rounds):
        for way in train:
            copied = copy.deepcopy(model)
            run = _ways(copied)[way]
            train[way].append(_train_ms(copied, run, x, y, args.steps))
            predict[way].append(_eval_ms(copied, run, validation, max(1, args.steps // 10)))
    best = {way: min(times) for way, times in train.items()}
    best_eval = {way: min(times) for way, times in predict.items()}
    result = {
        "threads": args.threads,
        "batch": args.batch,
        "train_ms_per_step": {way: round(ms, 2) for way, ms in best.items()},
        "module_over_factored": round(best["module"] / best["factored"], 3),
        "eval_ms_per_256_windows": {way: round(ms, 2) for way, ms in best_eval.items()},
        "eval_module_over_factored": round(best_eval["module"] / best_eval["factored"], 3),
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
