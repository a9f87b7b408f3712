"""The software a GPU run actually used, against what ``requirements/lock.txt`` pins.

A lent GPU machine brings its own stack (its torch is a CUDA build of another release, it has no
Beam or MNE, maybe no TensorRT or Horovod); every figure of ``benchmarks/gpu.py`` holds for that
stack, not for the pinned one. This records, for each package that matters to the figures, the
version found (and whether it imports, for the ones imported to read it), the version pinned
(``requirements/lock.txt``; the benchmark peers' ``requirements/bench.txt``; Horovod's build script),
and a line for every difference; plus the GPU, its driver, CUDA, cuDNN and NCCL as torch sees them.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import platform
import re
import subprocess
from typing import Any

from benchmarks.gpu_steps.common import BENCH_LOCK, LOCK, REPO, Record, normalise, pinned_versions

# distribution -> module to look for. Only the ones in IMPORTED are imported (slow or needed for
# more than a version); the others are looked up in the installed metadata and by find_spec.
PACKAGES = {
    "torch": "torch",
    "triton": "triton",
    "torch-geometric": "torch_geometric",
    "transformers": "transformers",
    "onnx": "onnx",
    "onnxruntime": "onnxruntime",
    "onnxscript": "onnxscript",
    "tensorrt": "tensorrt",
    "horovod": "horovod",
    "braindecode": "braindecode",
    "numpy": "numpy",
    "scipy": "scipy",
    "protobuf": "google.protobuf",
    "pyyaml": "yaml",
    "safetensors": "safetensors",
    "cramjam": "cramjam",
    "google-crc32c": "google_crc32c",
    "mne": "mne",
    "apache-beam": "apache_beam",
}
IMPORTED = ("torch", "onnxruntime", "tensorrt")
# The pinned torch is the CPU build: no CUDA, driver or GPU is pinned.
CPU_PINNED = "none: the pinned torch is the CPU build"


def _found(dist: str, module: str) -> dict[str, Any]:
    """Version and importability of one package, without importing it unless it is in IMPORTED."""
    entry: dict[str, Any] = {"version": None}
    names = (dist, f"{dist}-cu13", f"{dist}-cu12", f"{dist.replace('-', '_')}_cu13")  # tensorrt's wheels
    for name in names:
        try:
            entry["version"] = importlib.metadata.version(name)
            break
        except importlib.metadata.PackageNotFoundError:
            continue
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        spec = None
    entry["importable"] = spec is not None
    if spec is not None and module in IMPORTED:
        try:
            imported = importlib.import_module(module)
            entry["version"] = getattr(imported, "__version__", entry["version"])
        except Exception as error:  # a broken install (wrong CUDA, missing library) is a finding
            entry["importable"] = False
            entry["import_error"] = f"{type(error).__name__}: {str(error)[:300]}"
    return entry


def _horovod_pinned() -> str | None:
    script = REPO / "scripts" / "install_horovod.sh"
    found = re.search(r"^VERSION=(\S+)", script.read_text(), re.M) if script.is_file() else None
    return found.group(1) if found else None


def _python_pinned() -> str | None:
    found = re.search(r"Python (\d+\.\d+)", LOCK.read_text()) if LOCK.is_file() else None
    return found.group(1) if found else None


def _release(version: str | None) -> str | None:
    """The release without a local build tag: 2.11.0+cu130 -> 2.11.0."""
    return None if version is None else version.split("+", 1)[0]


def packages() -> dict[str, dict[str, Any]]:
    pinned, bench = pinned_versions(LOCK), pinned_versions(BENCH_LOCK)
    pinned["horovod"] = _horovod_pinned()
    result = {}
    for dist, module in PACKAGES.items():
        entry = _found(dist, module)
        entry["pinned"] = pinned.get(normalise(dist))
        if normalise(dist) in bench:
            entry["pinned_for_benchmarks"] = bench[normalise(dist)]
        result[dist] = entry
    return result


def accelerator() -> dict[str, Any]:
    """What torch sees of CUDA, and the driver as nvidia-smi reports it."""
    try:
        import torch
    except Exception as error:  # the stack is reported all the same
        return {"torch_error": f"{type(error).__name__}: {error}", "driver": _driver()}
    info: dict[str, Any] = {
        "torch_cuda": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
    }
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update(
            gpu=props.name,
            gpus=torch.cuda.device_count(),
            capability=f"{props.major}.{props.minor}",
            memory_gib=round(props.total_memory / 2**30, 1),
            multiprocessors=props.multi_processor_count,
            nccl=_nccl(torch),
        )
    info["driver"] = _driver()
    return info


def _nccl(torch) -> str | None:
    try:
        version = torch.cuda.nccl.version()
    except Exception:  # a build without NCCL
        return None
    return ".".join(map(str, version)) if isinstance(version, tuple) else str(version)


def _driver() -> str | None:
    """The NVIDIA driver's version as nvidia-smi reports it (None without one)."""
    try:
        smi = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=15,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    rows = smi.stdout.strip().splitlines()
    return rows[0].strip() if smi.returncode == 0 and rows else None


def differences(found: dict[str, dict[str, Any]], python: str, gpu: dict[str, Any]) -> list[str]:
    """One line for every way this machine's stack differs from the pinned one."""
    lines = []
    pinned_python = _python_pinned()
    if pinned_python and not python.startswith(pinned_python + "."):
        lines.append(f"python: {python} here, {pinned_python} pinned")
    for dist, entry in found.items():
        here, pin = entry["version"], entry["pinned"]
        if here is None and pin is None:
            continue
        if here is None:
            lines.append(f"{dist}: not installed here, {pin} pinned")
        elif pin is None:
            lines.append(f"{dist}: {here} here, not pinned")
        elif _release(here) != _release(pin):
            lines.append(f"{dist}: {here} here, {pin} pinned")
        elif not entry["importable"]:
            lines.append(f"{dist}: {here} here as pinned, but it does not import ({entry.get('import_error')})")
        bench = entry.get("pinned_for_benchmarks")
        if bench and _release(here) != _release(bench):
            lines.append(f"{dist}: {here or 'not installed'} here, {bench} pinned for the benchmark peers (bench.txt)")
    if gpu.get("torch_cuda"):
        lines.append(f"CUDA: torch built for CUDA {gpu['torch_cuda']} here; {CPU_PINNED}")
    if gpu.get("driver") or gpu.get("gpu"):
        lines.append(f"GPU {gpu.get('gpu')}, driver {gpu.get('driver')} here; {CPU_PINNED}")
    return lines


def run(record: Record, *, dry_run: bool, **_: Any) -> None:
    import sys

    found = packages()
    gpu = accelerator()
    python = platform.python_version()
    record.set("python", {"version": python, "executable": sys.executable, "pinned": _python_pinned()})
    record.set("packages", found)
    record.set("accelerator", {**gpu, "pinned": {"cuda": CPU_PINNED, "driver": CPU_PINNED, "gpu": CPU_PINNED}})
    ort = found.get("onnxruntime", {})
    if ort.get("importable"):
        import onnxruntime

        record.set("onnxruntime_providers", onnxruntime.get_available_providers())
    record.set("differences", differences(found, python, gpu))
    record.set("status", "ok")
