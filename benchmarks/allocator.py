"""Benchmark: training steps with eegfm's malloc thresholds against glibc's own; prints one JSON object.

Each job runs in a fresh process on ``--threads`` (1) torch thread(s), as a ``folder`` benchmark's
job-pool worker does, once with ``EEGFM_MALLOC=keep`` (the default of the commands that train,
``core/allocator.py``) and once with ``EEGFM_MALLOC=glibc``: ``--steps`` (40) timed steps after 3
to warm up, best of ``--rounds`` (2). Jobs: EEGNet-8,2 on a batch of 64 five-second 19-channel
windows at 128 Hz (braindecode's module called directly: 25 MB activations a layer; the baseline
itself now trains factored, ``benchmarks/eegnet_step.py``), and the ``tiny`` encoder's pretraining step on 32
five-second windows. For each: ms a step, minor page faults a step (the kernel faulting freed
memory back in), and glibc's time over eegfm's.

    python benchmarks/allocator.py [--threads 1] [--steps 40] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
TIMED = r"""
import json, resource, sys, time
import torch
from eegfm.core.allocator import keep_freed_memory
keep_freed_memory()  # as a training command does; EEGFM_MALLOC=glibc: glibc's rule
torch.set_num_threads(int(sys.argv[1])); torch.manual_seed(0)
steps = int(sys.argv[2])
{build}
for _ in range(3): step()
before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
for _ in range(steps): step()
seconds, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF)
faults, kernel = after.ru_minflt - before.ru_minflt, after.ru_stime - before.ru_stime
print(json.dumps({{"ms_per_step": 1000 * seconds / steps, "faults_per_step": faults / steps,
                  "kernel_seconds_per_step": kernel / steps}}))
"""
JOBS = {
    "eegnet": r"""
from eegfm.model.eegnet import build_model
model = build_model(19, 640, 2, 0.5); opt = torch.optim.AdamW(model.parameters(), 1e-3)
x, y = torch.randn(64, 19, 640), torch.randint(0, 2, (64,))
def step():
    opt.zero_grad(); torch.nn.functional.cross_entropy(model(x), y).backward(); opt.step()
""",
    "pretraining_tiny": r"""
from eegfm.model.modeling import create_pretraining_model
model = create_pretraining_model("tiny"); opt = torch.optim.AdamW(model.parameters(), 1e-4)
eeg, mask = torch.randn(32, 19, 1280) * 30.0, torch.ones(32, 19)
def step():
    model(eeg, channel_mask=mask).loss.backward(); opt.step(); opt.zero_grad(set_to_none=True)
""",
}


def _timed(job: str, choice: str, threads: int, steps: int) -> dict[str, float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "GLIBC_TUNABLES"))}
    env.update({"EEGFM_MALLOC": choice, "PYTHONPATH": str(SRC)})
    code = TIMED.format(build=JOBS[job])
    done = subprocess.run(
        [sys.executable, "-c", code, str(threads), str(steps)], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout.splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="torch threads of each process (default 1)")
    parser.add_argument("--steps", type=int, default=40, help="timed steps of each run (default 40)")
    parser.add_argument("--rounds", type=int, default=2, help="runs of each; the fastest is kept (default 2)")
    parser.add_argument("--jobs", nargs="+", choices=sorted(JOBS), default=list(JOBS), help="jobs to time")
    args = parser.parse_args(argv)
    result: dict[str, object] = {"threads": args.threads, "steps": args.steps}
    for job in args.jobs:
        runs = {
            choice: min((_timed(job, choice, args.threads, args.steps) for _ in range(args.rounds)),
                        key=lambda run: run["ms_per_step"])
            for choice in ("keep", "glibc")
        }  # fmt: skip
        ratio = runs["glibc"]["ms_per_step"] / runs["keep"]["ms_per_step"]
        result[job] = {**runs, "glibc_over_keep": round(ratio, 3)}
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
