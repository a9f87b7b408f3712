"""Benchmark: how fast eegfm's commands answer; prints one JSON object.

1. Every console script's ``--help`` (setup.py), each in a new interpreter, the best and worst of
   ``--rounds``; the reference is a bare interpreter (``python -c pass``) in the same run. Target:
   each under 1 s.
2. ``eegfm-predict``'s first prediction on one 3-minute EDF (eegmat's ``Subject00_1.edf``, 182 s),
   the whole command in a new interpreter (imports, model, reading, scoring, writing), with a
   fine-tuned model folder. Target: under 5 s. The first run after the model's ONNX or TorchScript
   files are made is not counted: ``--rounds`` runs, first and best reported.

    python benchmarks/startup.py --model RUN_OR_MODEL_FOLDER [--rounds 3] [--skip-predict]

The script imports nothing from eegfm (a command's start is what is measured).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RECORDING = REPO.parent / "shared" / "data" / "eegmat" / "Subject00_1.edf"


def _wall(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"{' '.join(cmd)[:200]} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return wall


def _scripts() -> dict[str, str]:
    text = (REPO / "setup.py").read_text(encoding="utf-8")
    return dict(re.findall(r'"(eegfm-[\w-]+) = ([\w.]+:\w+)"', text))


def _help_command(name: str, target: str) -> list[str]:
    """What the console script's wrapper runs, with --help."""
    module, function = target.split(":")
    code = f"import sys; from {module} import {function}; sys.argv = [{name!r}, '--help']; sys.exit({function}())"
    return [sys.executable, "-c", code]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="a fine-tuned run or model folder for eegfm-predict")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--skip-predict", action="store_true")
    args = parser.parse_args(argv)
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    bare = min(_wall([sys.executable, "-c", "pass"], env) for _ in range(args.rounds))
    helps = {}
    for name, target in sorted(_scripts().items()):
        walls = [_wall(_help_command(name, target), env) for _ in range(args.rounds)]
        helps[name] = {"best_s": round(min(walls), 3), "worst_s": round(max(walls), 3), "under_1s": max(walls) < 1}
    result = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cores": len(os.sched_getaffinity(0)),
        "bare_interpreter_s": round(bare, 3),
        "help": helps,
        "every_help_under_1s": all(row["under_1s"] for row in helps.values()),
    }
    if not args.skip_predict:
        if args.model is None:
            raise SystemExit("--model: a fine-tuned model folder is needed for the prediction (or --skip-predict)")
        with tempfile.TemporaryDirectory(prefix="eegfm-startup-") as tmp:
            cmd = [sys.executable, "-m", "eegfm.serving.predict", "--model", str(args.model), "--input", str(RECORDING)]
            walls = [_wall([*cmd, "--output", str(Path(tmp) / f"out{i}")], env) for i in range(args.rounds)]
        result["first_prediction"] = {
            "recording": f"{RECORDING.name}, 182 s, 21 channels at 500 Hz",
            "first_s": round(walls[0], 2),
            "best_s": round(min(walls), 2),
            "under_5s": max(walls) < 5,
        }
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
