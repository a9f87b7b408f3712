"""Benchmark: eegfm beside copies of itself; prints one JSON object.

The same short jobs run alone, then as N copies started together (subprocesses, each with its own
output): a fixed preprocessing of a few eegmat recordings, a fixed ``cpu-tiny`` pretraining and a
fixed fine-tuning from it. Each copy's wall time (the whole command: start-up, imports, work) is
divided by the job's time alone; sharing C cores fairly, N copies take ``max(1, N / C)`` times as
long (``ideal``), and the target is each copy within ``1.3 x ideal`` (issue 81). A process that
sizes its pools to every core and spins its waiting threads turns sharing into thrashing: the
ratios then run far above the ideal.

That ideal holds for a job that gains nothing from a second core. A job that runs s times faster
alone on C cores than on one cannot beat ``max(1, N / C) x`` its time on its share of the cores
(``fair_share_s``: the job alone on ``max(1, C // N)`` threads, through ``EEGFM_THREADS``) when N
copies share them, so its ``worst_vs_ideal`` is at least about s however fairly it shares.
``worst_vs_fair_share`` is what sharing itself costs: the copies' worst time over that bound.

    python benchmarks/cotenancy.py [--copies 2 4] [--steps 60] [--recordings 3] [--src SRC]

``--src`` runs another checkout's ``src`` (the code before a change) with the same jobs. The
script imports nothing from eegfm itself: importing eegfm sets the OpenMP wait policy
(core/threads.py), which the jobs would then inherit, whichever code they run. Setting up (a
preprocessed corpus and a pretrained model to fine-tune) is not timed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EEGMAT = REPO.parent / "shared" / "data" / "eegmat"
TARGET = 1.3  # each copy within 1.3 x the fair-sharing ideal


def _env(src: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")}
    env.update(PYTHONPATH=str(src), WANDB_MODE="disabled", PYTHONDONTWRITEBYTECODE="1")
    return env


def _eegfm(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def _jobs(work: Path, recordings: list[Path], steps: int) -> dict[str, object]:
    """Each job as a function of the copy's own output folder: its command line."""
    key = str(work / "pseudonym.key")
    train = ["--config", "cpu-tiny", "--wandb", "disabled", "--set", "save_every=100000", "--set", "log_every=10"]
    return {
        "preprocess": lambda out: _eegfm(
            "eegfm.pipelines.job.preprocess",
            "--input",
            *map(str, recordings),
            "--output",
            str(out),
            "--pseudonym_key_file",
            key,
        ),
        "pretrain": lambda out: _eegfm(
            "eegfm.training.pretrain",
            "--data",
            str(work / "data"),
            "--output",
            str(out),
            "--max_steps",
            str(steps),
            *train,
            "--set",
            "val_fraction=0",
        ),
        "finetune": lambda out: _eegfm(
            "eegfm.training.finetune",
            "--pretrained",
            str(work / "pretrained" / "model"),
            "--data",
            str(work / "data"),
            "--task",
            "eegmat",
            "--output",
            str(out),
            *train,
            "--set",
            "epochs=2",
        ),
    }


def _run(cmds: list[list[str]], env: dict[str, str]) -> list[float]:
    """Start every command at once; each one's wall time in seconds. Logs go to files: a full pipe
    would stall a copy."""
    with tempfile.TemporaryDirectory(prefix="eegfm-logs-") as logs:
        files = [open(Path(logs) / f"{i}.log", "wb") for i in range(len(cmds))]  # noqa: SIM115
        start = time.perf_counter()
        procs = [
            subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
            for cmd, log in zip(cmds, files, strict=True)
        ]
        walls = [0.0] * len(procs)
        pending = dict(enumerate(procs))
        while pending:
            for index, proc in list(pending.items()):
                if proc.poll() is not None:
                    walls[index] = time.perf_counter() - start
                    del pending[index]
            time.sleep(0.05)
        for index, (proc, log) in enumerate(zip(procs, files)):
            log.close()
            if proc.returncode:
                tail = (Path(logs) / f"{index}.log").read_text(errors="replace")[-3000:]
                raise SystemExit(f"{' '.join(cmds[index][2:])[:200]} failed ({proc.returncode}):\n{tail}")
    return walls


def _set_up(work: Path, corpus: list[Path], env: dict[str, str], jobs: dict) -> None:
    """The corpus the training jobs read (``corpus``: rest and task recordings of three people) and
    the model fine-tuning starts from (not timed)."""
    key = f"from eegfm.pipelines.privacy.deid import create_key; create_key({str(work / 'pseudonym.key')!r})"
    _run([[sys.executable, "-c", key]], env)
    data = [*jobs["preprocess"](work / "data")]
    at = data.index("--input")
    data[at + 1 : data.index("--output")] = map(str, corpus)
    _run([data], env)
    _run([jobs["pretrain"](work / "pretrained")], env)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--copies", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--steps", type=int, default=60, help="pretraining steps of each copy")
    parser.add_argument("--recordings", type=int, default=3, help="eegmat recordings each preprocessing reads")
    parser.add_argument("--src", type=Path, default=REPO / "src", help="the eegfm source tree to run")
    parser.add_argument("--jobs", nargs="+", default=["preprocess", "pretrain", "finetune"])
    args = parser.parse_args(argv)
    corpus = sorted(EEGMAT.glob("Subject0[0-2]_[12].edf"))  # six recordings, rest and task of three people
    cores = len(os.sched_getaffinity(0))
    env = _env(args.src.resolve())
    result: dict = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{cores} cores, {platform.processor() or platform.machine()}",
        "src": str(args.src),
        "command": " ".join(sys.argv),
        "target": f"each copy <= {TARGET} x max(1, N / cores) x alone",
        "jobs": {},
    }
    with tempfile.TemporaryDirectory(prefix="eegfm-cotenancy-") as tmp:
        work = Path(tmp)
        jobs = _jobs(work, corpus[: args.recordings], args.steps)
        _set_up(work, corpus, env, jobs)
        for name in args.jobs:
            alone = _run([jobs[name](work / f"{name}-alone")], env)[0]
            row: dict = {"alone_s": round(alone, 2)}
            on_share: dict[int, float] = {}  # the job alone on a copy's share of the cores
            for n in args.copies:
                threads = max(1, cores // n)
                if threads not in on_share:
                    limited = {**env, "EEGFM_THREADS": str(threads)}
                    on_share[threads] = _run([jobs[name](work / f"{name}-{threads}-threads")], limited)[0]
                    row[f"alone_{threads}_thread_s"] = round(on_share[threads], 2)
                walls = _run([jobs[name](work / f"{name}-{n}-{i}") for i in range(n)], env)
                ideal = max(1.0, n / cores)
                fair_share = ideal * on_share[threads]
                ratios = [wall / alone for wall in walls]
                row[f"N={n}"] = {
                    "walls_s": [round(w, 2) for w in walls],
                    "ratios": [round(r, 2) for r in ratios],
                    "ideal": ideal,
                    "worst_vs_ideal": round(max(ratios) / ideal, 2),
                    "meets_target": max(ratios) <= TARGET * ideal,
                    "fair_share_s": round(fair_share, 2),
                    "worst_vs_fair_share": round(max(walls) / fair_share, 2),
                }
            result["jobs"][name] = row
            print(json.dumps({name: row}), file=sys.stderr, flush=True)
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
