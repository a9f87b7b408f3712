"""What the steps of ``benchmarks/gpu.py`` share: the record a step writes, and its verdicts.

Each step runs in its own process and writes what it measures as it goes, one JSON line per
fact, to a record file (:class:`Record`): when the step fails or runs out of its time, what it
wrote before stays. :func:`read_record` folds the lines back into one section. A step that
cannot run says why with ``status: not_run``; :func:`missing_why` words that for a package the
machine lacks (with the version ``requirements/lock.txt`` pins, to carry as a wheel).
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
LOCK = REPO / "requirements" / "lock.txt"
BENCH_LOCK = REPO / "requirements" / "bench.txt"
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

# import name -> distribution name, where they differ
DISTRIBUTIONS = {
    "yaml": "pyyaml",
    "google_crc32c": "google-crc32c",
    "google": "protobuf",
    "apache_beam": "apache-beam",
    "torch_geometric": "torch-geometric",
    "sklearn": "scikit-learn",
    "pyedflib": "pyedflib",
}


class Record:
    """Append-only JSON lines: ``set`` a key, ``add`` to a list; each line is flushed at once."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def _write(self, op: str, key: str, value: Any) -> None:
        with self.path.open("a") as out:
            out.write(json.dumps({"op": op, "key": key, "value": value}, default=str) + "\n")
            out.flush()

    def set(self, key: str, value: Any) -> None:
        self._write("set", key, value)

    def add(self, key: str, value: Any) -> None:
        self._write("add", key, value)

    def not_run(self, why: str) -> None:
        self.set("status", "not_run")
        self.set("why", why)


def read_record(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The section a record file holds (``{}`` for none); a torn last line is skipped."""
    section: dict[str, Any] = {}
    path = Path(path)
    if not path.is_file():
        return section
    for line in path.read_text().splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue  # the step was killed while writing it
        if entry["op"] == "add":
            section.setdefault(entry["key"], []).append(entry["value"])
        else:
            section[entry["key"]] = entry["value"]
    return section


def pinned_versions(path: Path = LOCK) -> dict[str, str]:
    """``name==version`` lines of a requirements file, by normalised distribution name."""
    versions = {}
    if not path.is_file():
        return versions
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            versions[normalise(name)] = version.strip()
    return versions


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower().strip()


def missing_why(error: ImportError) -> str:
    """Why a step cannot run without the module ``error`` names, and what to carry."""
    module = (getattr(error, "name", None) or str(error)).split(".")[0]
    dist = DISTRIBUTIONS.get(module, module.replace("_", "-"))
    pinned = pinned_versions().get(normalise(dist))
    carry = f"{dist}=={pinned}" if pinned else dist
    return (
        f"{type(error).__name__}: {error}. {dist} is not installed for this python; carry its wheel "
        f"({carry}, with what it needs) in .whl/ (docs/performance.md, GPU figures)"
    )


def verdict(checks: list[bool | None]) -> bool | None:
    """A section's ``met``: False if any target failed, True if all were met, else None (not judged)."""
    if any(check is False for check in checks):
        return False
    if checks and all(check is True for check in checks):
        return True
    return None


def cuda_or_dry_run(record: Record, dry_run: bool) -> bool | None:
    """Whether torch sees a CUDA device; None (recorded as not run) where it does not and this is
    not a dry run, which checks the step on the CPU."""
    import torch

    cuda = torch.cuda.is_available()
    if not cuda and not dry_run:
        record.not_run("no CUDA device is visible to torch")
        return None
    return cuda
