"""What a benchmark's folder was made from, so that a rerun never mixes: ``OUT/data``, each
``OUT/pretrain*`` and each run under ``OUT/runs`` carries ``fingerprint.json``, a SHA-256 of each
thing it depends on (the labels table, the split, the classes, the window length, the preset and
overrides, the seed and method, the folders it was made from) and of them all.

A rerun whose fingerprint differs recomputes the folder, with a warning naming what changed; one
whose fingerprint is the same reuses it. The file holds hashes only: the labels table names files
and subjects, and a clinic's folders may name patients.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from eegfm.core.logs import get_logger

log = get_logger(__name__)
FILE = "fingerprint.json"
ABOUT = "SHA-256 of what this folder was made from (benchmark.fingerprint); a rerun with another makes it anew"
# what a changed field is called in the warning (a field not named here is called by its key)
NAMES = {
    "labels": "the labels table",
    "split": "the split",
    "classes": "the classes or their order",
    "window_seconds": "the window length",
    "data": "the data folder",
    "unlabeled": "the --unlabeled folders",
    "encoder": "the encoder",
    "members": "the runs it stacks",
    "config": "the preset",
    "settings": "the overrides",
    "steps": "the pretraining steps",
    "architecture": "the architecture",
    "method": "the method",
    "seed": "the seed",
    "task": "the task",
}


def digest(value: Any) -> str:
    """The SHA-256 of ``value`` as canonical JSON (sorted keys; paths and the like as text)."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def file_digest(path: Path) -> str:
    """The SHA-256 of a file's bytes."""
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def of(fields: Mapping[str, Any]) -> dict[str, Any]:
    """The fingerprint of ``fields``: each one hashed, and the hash of them all."""
    hashed = {name: digest(value) for name, value in sorted(fields.items())}
    return {"fingerprint": digest(hashed), "fields": hashed}


def read(folder: Path) -> dict[str, Any] | None:
    """``folder``'s fingerprint, or None where it has none (or an unreadable one)."""
    try:
        found = json.loads((folder / FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) and isinstance(found.get("fields"), dict) else None


def changes(folder: Path, fields: Mapping[str, Any]) -> list[str]:
    """What differs between ``folder``'s fingerprint and ``fields``, named for a person ([] where
    nothing does)."""
    earlier, now = read(folder), of(fields)
    if earlier is None:
        return ["it has no readable fingerprint.json (made before fingerprints, or by hand)"]
    if earlier.get("fingerprint") == now["fingerprint"]:
        return []
    names = sorted(set(earlier["fields"]) | set(now["fields"]))
    changed = [NAMES.get(n, n) for n in names if earlier["fields"].get(n) != now["fields"].get(n)]
    return changed or ["its fingerprint"]


def write(folder: Path, fields: Mapping[str, Any]) -> None:
    """Write ``fields``' fingerprint into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    text = json.dumps({**of(fields), "about": ABOUT}, indent=2)
    (folder / FILE).write_text(text + "\n", encoding="utf-8")


def refresh(folder: Path, fields: Mapping[str, Any], what: str) -> None:
    """Make ``folder`` the one ``fields`` describe: kept where its fingerprint is theirs, else
    removed (with a warning naming what changed) and made anew with their fingerprint. Written
    before the work, so an interrupted run of the same inputs resumes in it."""
    if folder.is_dir() and any(folder.iterdir()):
        changed = changes(folder, fields)
        if not changed:
            return
        log.warning("%s: %s changed since it was made: recomputing it (%s)", folder, ", ".join(changed), what)
        remove(folder)
    write(folder, fields)


def remove(folder: Path) -> None:
    """Delete a stale artifact folder (a link to one: only the link, never what it points to)."""
    if folder.is_symlink():
        folder.unlink()
    else:
        shutil.rmtree(folder)


def identity(folder: str | Path) -> str:
    """What stands for a folder an artifact was made from: its fingerprint where it has one (a
    model folder: its parent's, where the pretraining's fingerprint is), else the hash of its
    manifest or model config (a folder made elsewhere, or before fingerprints), else its path."""
    folder = Path(folder)
    for place in (folder, folder.parent):
        if (found := read(place)) is not None:
            return str(found["fingerprint"])
    for name in ("manifest.json", "config.json"):
        if (folder / name).is_file():
            return file_digest(folder / name)
    return digest(str(folder.resolve()))


def config_identity(config: str) -> str:
    """A preset by its name; a YAML file by its content (the same file edited is another recipe)."""
    path = Path(config)
    return file_digest(path) if path.is_file() else config
