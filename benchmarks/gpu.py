"""Every GPU figure of eegfm in one run of at most 8 minutes, written as one JSON file.

Run by ``benchmarks/gpu.sh`` on a lent GPU machine (one H100 or H200, its own software, no
internet). Each step runs in its own process with its own time budget and writes what it
measures as it goes, so a step that fails or hangs loses only itself; a step that cannot run on
this machine records ``{"status": "not_run", "why": ...}`` and the run goes on. Sections:

- ``software_stack``: torch, CUDA, driver, GPU, ONNX Runtime, TensorRT, Horovod, braindecode ...
  as used here against ``requirements/lock.txt``, with a line for every difference;
- ``pretrain``: bf16 windows/s and MFU of ``base`` at batch 64, 256 and 1024, eager and
  ``torch.compile``d (target: MFU >= 15 % at 1024);
- ``peers``: braindecode's CBraMod and LaBraM at the same batches (target: eegfm >= 2x CBraMod);
- ``loader``: the training loader's windows/s against every step's (target: >= 10x);
- ``tensorrt``: a TensorRT FP16 engine of the ONNX export against ONNX Runtime on real windows
  (``--windows``), latency at batch 1 and 32 (targets: <= 1 ms at batch 1, within 1e-2);
- ``horovod``: a one-GPU Horovod smoke run with NCCL.

``--dry-run`` checks every step on the CPU with tiny shapes in about a minute and writes the same
sections, marked ``dry_run``, with what the GPU run would measure (``gpu_plan``). Wheels in
``--wheels`` (default ``.whl/``; ``make gpu-wheels``) are installed into a temporary folder first
(never downloaded); without an installed ``eegfm`` it is imported from the repository's ``src/``.
With no arguments on a machine without ``nvidia-smi`` (``make bench``) it only prints that it
skipped.

    bash benchmarks/gpu.sh [--dry-run] [--output FILE] [--windows FILE.npz] [--only STEP ...]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import dataclasses
import datetime
import importlib
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.gpu_steps.common import Record, missing_why, read_record  # noqa: E402

BUDGET_S, RESERVE_S, MIN_STEP_S = 465.0, 8.0, 10.0  # gpu.sh stops everything at 480 s
BATCHES, TIMED_STEPS = (64, 256, 1024), 20
RUNNING: set[subprocess.Popen] = set()  # the steps' processes now running
WRITING = threading.Lock()


@dataclasses.dataclass(frozen=True)
class Step:
    name: str
    module: str
    budget_s: float  # on a GPU; ``rest``: at least this, and whatever the other steps left
    dry_budget_s: float
    options: dict[str, Any] = dataclasses.field(default_factory=dict)
    rest: bool = False
    gpu_only: str | None = None  # why a dry run does not run it


STEPS = (
    Step("stack", "benchmarks.gpu_steps.stack", 20, 60),
    Step("pretrain_eager", "benchmarks.gpu_steps.pretrain", 60, 90, {"compile": False}),
    Step("peers", "benchmarks.gpu_steps.peers", 50, 90),
    Step("loader", "benchmarks.gpu_steps.loader", 50, 90),
    Step("tensorrt", "benchmarks.gpu_steps.tensorrt_engine", 100, 150),
    Step("horovod", "benchmarks.gpu_steps.horovod_smoke", 20, 60),
    # Last: compilation is what most likely runs long, and it gets the time the others left.
    Step(
        "pretrain_compiled",
        "benchmarks.gpu_steps.pretrain",
        150,
        30,
        {"compile": True},
        rest=True,
        gpu_only="dry run: torch.compile runs only on the GPU (minutes of compilation)",
    ),
)
BY_NAME = {step.name: step for step in STEPS}


def run_step(name: str, record_path: str, options: dict[str, Any]) -> int:
    """The body of one step, in its own process: ``run(record, **options)`` of its module."""
    step, record = BY_NAME[name], Record(record_path)
    try:
        importlib.import_module(step.module).run(record, **step.options, **options)
    except ModuleNotFoundError as error:  # a package this machine lacks: say which, go on
        record.not_run(missing_why(error))
    except Exception as error:  # an incompatible version (ImportError too) is a finding: failed
        record.set("status", "failed")
        record.set("why", f"{type(error).__name__}: {str(error)[:1000]}")
        traceback.print_exc()
        return 1
    return 0


def _kill(process: subprocess.Popen) -> None:
    """The step and everything it started (compile workers, loader workers)."""
    for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


def launch(step: Step, options: dict, timeout: float, env: dict, workdir: Path) -> dict[str, Any]:
    """One step in its own process group, stopped at ``timeout``; its record and how it ended."""
    record, log = workdir / f"{step.name}.jsonl", workdir / f"{step.name}.log"
    command = [sys.executable, str(Path(__file__).resolve()), "--step", step.name, "--record", str(record)]
    command += ["--options", json.dumps(options)]
    start = time.monotonic()
    with log.open("w") as out:
        process = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        RUNNING.add(process)
        try:
            code, timed_out = process.wait(timeout), False
        except subprocess.TimeoutExpired:
            code, timed_out = None, True
        finally:  # also when this process is stopped: no step outlives it
            if process.poll() is None:
                _kill(process)
            RUNNING.discard(process)
    result = read_record(record)
    result.update(wall_s=round(time.monotonic() - start, 1), budget_s=round(timeout))
    text = log.read_text(errors="replace")
    if timed_out and result.get("status") not in ("ok", "not_run"):
        result["status"] = "timed_out"
        result["why"] = f"stopped at its {timeout:.0f} s budget; what it recorded before is kept"
    elif "status" not in result:
        last = [line for line in text.splitlines() if line.strip()][-1:] or ["no output"]
        result.update(status="failed", why=f"exit status {code}: {last[0][:500]}")
    if result["status"] not in ("ok", "not_run"):
        result["log_tail"] = text[-2000:]
    return result


def install_wheels(wheels: list[Path], target: Path, timeout: float) -> str | None:
    """pip-install ``wheels`` (no index, no dependencies) into ``target``; None, or why it failed."""
    command = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile"]
    command += ["--no-cache-dir", "--upgrade", "--target", str(target), *map(str, wheels)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"{type(error).__name__}: {error}"
    return done.stderr[-1000:] or f"pip exit status {done.returncode}" if done.returncode else None


def step_env(workdir: Path, wheels: Path, dry_run: bool, timeout: float) -> tuple[dict, dict]:
    """The steps' environment (wheels, eegfm importable, quiet tools) and what was done for it."""
    env, paths, context = dict(os.environ), [], {}
    found = sorted(wheels.glob("*.whl")) if wheels.is_dir() else []
    if found and not dry_run:
        target = workdir / "site"
        error = install_wheels(found, target, timeout)
        context["wheels"] = {"folder": str(wheels), "files": [w.name for w in found], "installed": error is None}
        if error:
            context["wheels"]["error"] = error
        else:
            paths.append(str(target))
    else:
        why = "dry run: wheels are installed only on a GPU run" if found else f"no wheels in {wheels}"
        context["wheels"] = {"folder": str(wheels), "files": [w.name for w in found], "installed": False, "why": why}
    if importlib.util.find_spec("eegfm") is None:
        source = str(REPO / "src")  # the package's own folder: the repository uses a src layout
        paths.append(source)
        sys.path.append(source)  # this process builds the report with eegfm's benchmarks too
        context["eegfm_import"] = f"the repository's src/ ({source}): eegfm is not installed for this python"
    else:
        context["eegfm_import"] = "installed"
    env["PYTHONPATH"] = os.pathsep.join(paths + [p for p in [env.get("PYTHONPATH")] if p])
    env.update(PYTHONUNBUFFERED="1", WANDB_MODE="disabled", TF_CPP_MIN_LOG_LEVEL="3", TOKENIZERS_PARALLELISM="false")
    if dry_run:
        env.setdefault("OMP_NUM_THREADS", "1")  # a shared CPU machine: one thread per step
    return env, context


def report(results: dict, context: dict, args: argparse.Namespace, started: float, complete: bool) -> dict:
    # The steps' modules only once step_env() has made eegfm importable (src/ on the path, where not installed).
    from benchmarks.gpu_steps import horovod_smoke as gpu_horovod
    from benchmarks.gpu_steps import loader as gpu_loader
    from benchmarks.gpu_steps import peers as gpu_peers
    from benchmarks.gpu_steps import pretrain as gpu_pretrain
    from benchmarks.gpu_steps import report as gpu_report
    from benchmarks.gpu_steps import tensorrt_engine as gpu_tensorrt

    dry, batches = args.dry_run, tuple(args.batches)
    pending = {"status": "not_run", "why": "not run yet (the run was stopped before it)"}
    step = {name: results.get(name, pending) for name in BY_NAME}
    pretrain = gpu_report.pretrain(
        step["pretrain_eager"], step["pretrain_compiled"], dry, gpu_pretrain.plan(batches, args.steps)
    )
    sections = {
        "software_stack": gpu_report.software_stack(step["stack"], context, dry),
        "pretrain": pretrain,
        "peers": gpu_report.peers(step["peers"], pretrain["runs"], dry, gpu_peers.plan(batches, args.steps)),
        "loader": gpu_report.loader(step["loader"], pretrain["runs"], dry, gpu_loader.plan()),
        "tensorrt": gpu_report.judged(
            step["tensorrt"], "TensorRT FP16: <= 1 ms at batch 1, within 1e-2 of ONNX Runtime", dry, gpu_tensorrt.plan()
        ),
        "horovod": gpu_report.judged(step["horovod"], "Horovod runs on one GPU with NCCL", dry, gpu_horovod.plan()),
    }
    return {
        "benchmark": "gpu",
        "dry_run": dry,
        "complete": complete,
        "started": datetime.datetime.fromtimestamp(started, datetime.UTC).isoformat(timespec="seconds"),
        "wall_s": round(time.time() - started, 1),
        "budget_s": args.budget,
        "command": "bash benchmarks/gpu.sh " + " ".join(args.argv),
        "summary": gpu_report.summary(sections),
        **sections,
    }


def safe_report(results: dict, context: dict, args: argparse.Namespace, started: float, complete: bool) -> dict:
    """The report; where building it fails, the steps' raw records and why (the figures stay)."""
    try:
        return report(results, context, args, started, complete)
    except Exception as error:
        traceback.print_exc()
        why = f"building the report failed: {type(error).__name__}: {error}"
        return {
            "benchmark": "gpu",
            "dry_run": args.dry_run,
            "complete": complete,
            "report_error": why,
            "steps": results,
        }


def write(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps(data, indent=2, default=str) + "\n")
    partial.replace(path)


def _skipped(step: Step, args: argparse.Namespace, timeout: float) -> str | None:
    """Why ``step`` is not launched (None: it is)."""
    if args.only and step.name not in args.only:
        return "not selected (--only)"
    if args.dry_run and step.gpu_only:
        return step.gpu_only
    if timeout < MIN_STEP_S:
        return f"no time left in the {args.budget:.0f} s budget"
    return None


def _stop(*_: object) -> None:
    """SIGTERM (gpu.sh's backstop): end the running steps' process groups, then unwind."""
    for process in list(RUNNING):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    sys.exit(143)


def run_all(args: argparse.Namespace) -> dict:
    """Every step in turn (a dry run: ``--jobs`` at a time), the report written after each."""
    started, deadline = time.time(), time.monotonic() + args.budget
    workdir = Path(tempfile.mkdtemp(prefix="eegfm-gpu-"))
    signal.signal(signal.SIGTERM, _stop)
    results: dict[str, dict] = {}
    try:
        env, context = step_env(workdir, args.wheels, args.dry_run, timeout=min(60.0, args.budget / 4))
        options = {"dry_run": args.dry_run, "batches": list(args.batches), "steps": args.steps}
        options["windows"] = str(args.windows) if args.windows else None

        def one(step: Step) -> None:
            left = deadline - time.monotonic() - RESERVE_S
            timeout = left if step.rest else min(step.dry_budget_s if args.dry_run else step.budget_s, left)
            why = _skipped(step, args, timeout)
            if why:
                results[step.name] = {"status": "not_run", "why": why}
                return
            print(f"gpu: {step.name} (up to {timeout:.0f} s) ...", file=sys.stderr, flush=True)
            ended = results[step.name] = launch(step, options, timeout, env, workdir)
            print(f"gpu: {step.name}: {ended['status']} in {ended['wall_s']} s", file=sys.stderr, flush=True)
            with WRITING:
                write(args.output, safe_report(results, context, args, started, complete=False))

        # On a GPU one step at a time: steps sharing the machine would slow each other's figures.
        with concurrent.futures.ThreadPoolExecutor(args.jobs if args.dry_run else 1) as pool:
            order = sorted(STEPS, key=lambda step: -step.dry_budget_s) if args.dry_run else STEPS  # longest first
            for done in [pool.submit(one, step) for step in order]:
                done.result()
        final = safe_report(results, context, args, started, complete=True)
        write(args.output, final)
        return final
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _default_output() -> Path:
    return Path(os.environ["OUT"]) / "gpu.json" if os.environ.get("OUT") else Path("gpu.json")


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="benchmarks/gpu.sh",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="docs/performance.md, 'GPU figures: benchmarks/gpu.sh', says how to carry wheels and real windows.",
    )
    parser.add_argument("--dry-run", action="store_true", help="check every step on the CPU with tiny shapes")
    parser.add_argument(
        "--output", type=Path, default=_default_output(), help="the JSON file (default: $OUT/gpu.json, else gpu.json)"
    )
    parser.add_argument(
        "--windows", type=Path, help="real EEG windows for the TensorRT parity: .npy (N, 19, >= 2560) µV or .npz"
    )
    parser.add_argument("--budget", type=float, default=BUDGET_S, help="seconds for the whole run (default 465)")
    parser.add_argument(
        "--only", nargs="+", choices=list(BY_NAME), metavar="STEP", help=f"run only these steps ({', '.join(BY_NAME)})"
    )
    parser.add_argument("--batches", type=int, nargs="+", default=list(BATCHES), help="batch sizes (64 256 1024)")
    parser.add_argument("--steps", type=int, default=TIMED_STEPS, help="timed steps per pretraining run (20)")
    parser.add_argument("--jobs", type=int, default=2, help="dry run only: steps run at a time (default 2)")
    parser.add_argument("--wheels", type=Path, default=REPO / ".whl", help="wheels to install first (default .whl/)")
    for hidden in ("--step", "--record", "--options"):
        parser.add_argument(hidden, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.budget < MIN_STEP_S or min(args.steps, args.jobs, *args.batches) < 1:
        parser.error("--budget, --steps, --jobs and --batches must be positive (--budget at least 10 s)")
    if args.windows is not None and not args.windows.is_file():
        parser.error(f"--windows: no such file: {args.windows}")
    args.argv = argv
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv and shutil.which("nvidia-smi") is None:  # `make bench` runs every script: report, don't run
        print(json.dumps({"benchmark": "gpu", "skipped": "no NVIDIA GPU here; --dry-run checks it on the CPU"}))
        return 0
    args = parse(argv)
    if args.step:
        return run_step(args.step, args.record, json.loads(args.options))
    final = run_all(args)
    if "report_error" in final:
        print(final["report_error"])
    for line in final.get("summary", []):
        met = {True: "met", False: "NOT met", None: "not judged"}[line["met"]]
        print(f"{line['section']:15} {line['status']:9} {met:10} {line.get('why', '')[:150]}")
        plan = final[line["section"]].get("gpu_plan")
        if args.dry_run and plan:
            print(f"{'':15} on a GPU it measures: {json.dumps(plan)}")
    print(f"wrote {args.output} ({final.get('wall_s')} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
