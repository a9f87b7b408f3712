"""Benchmark: which wait switches torch's bundled OpenMP runtime honours; prints one JSON object.

``--copies`` (4) copies of small parallel torch work (``--rounds``, 150, of conv1d + GELU + matmul
+ layer norm on (8, 64, 1280), torch's default threads) start together, with each switch set alone;
the slowest copy's time over one copy alone. A runtime that spins its waiting threads takes the cores the other
copies need (core/threads.py).

    python benchmarks/openmp_waits.py [--copies 4] [--rounds 150]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

WORK = r"""
import time, torch
torch.manual_seed(0)
x = torch.randn(8, 64, 1280); w = torch.randn(64, 64, 7); lin = torch.randn(1280, 256)
start = time.perf_counter()
for _ in range(150):
    y = torch.nn.functional.conv1d(x, w, padding=3)
    y = torch.nn.functional.gelu(y) @ lin
    y = torch.nn.functional.layer_norm(y, y.shape[-1:])
print(time.perf_counter() - start)
"""
SWITCHES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")
SETTINGS = {
    "nothing set (spin)": {},
    "OMP_WAIT_POLICY=PASSIVE": {"OMP_WAIT_POLICY": "PASSIVE"},
    "GOMP_SPINCOUNT=0": {"GOMP_SPINCOUNT": "0"},
    # a short spin before sleeping: a thread woken within microseconds of its last region stays
    # awake, as back-to-back small kernels need; libgomp's own default is 300,000
    "GOMP_SPINCOUNT=10000": {"GOMP_SPINCOUNT": "10000"},
    "GOMP_SPINCOUNT=100000": {"GOMP_SPINCOUNT": "100000"},
    "KMP_BLOCKTIME=0": {"KMP_BLOCKTIME": "0"},
}


def _slowest(copies: int, switches: dict[str, str], work: str = WORK) -> float:
    env = {k: v for k, v in os.environ.items() if k not in SWITCHES} | switches
    procs = [
        subprocess.Popen([sys.executable, "-c", work], env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(copies)
    ]
    return max(float(proc.communicate()[0]) for proc in procs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--copies", type=int, default=4, help="copies started together")
    parser.add_argument("--rounds", type=int, default=150, help="rounds of work in each copy")
    args = parser.parse_args(argv)
    work = WORK.replace("range(150)", f"range({args.rounds})")
    result = {}
    for name, switches in SETTINGS.items():
        alone = min(_slowest(1, switches, work) for _ in range(2))
        together = _slowest(args.copies, switches, work)
        result[name] = {"alone_s": round(alone, 2), f"{args.copies}_copies_slowest_s": round(together, 2)}
        result[name]["ratio"] = round(together / alone, 2)
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
