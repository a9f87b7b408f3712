"""Where the corpus goes: checked before anything is written, staged, then moved into place.

Kept free of numerical imports so the command line can refuse a bad ``--output`` instantly.
"""

from __future__ import annotations

import os
import secrets
import shutil
from pathlib import Path

from eegfm.core.config import ConfigError


def check_output(output: Path, overwrite: bool) -> Path:
    """Where to stage files; ConfigError if ``output`` is a file, a non-empty directory (unless
    ``overwrite``) or under no writable directory."""
    output = Path(output)
    if output.exists() and not output.is_dir():
        raise ConfigError(f"output: expected a directory path; {output} is an existing file")
    if output.is_dir() and any(output.iterdir()) and not overwrite:
        raise ConfigError(f"output: {output} exists and is not empty (use --overwrite to replace it)")
    ancestor = next((p for p in output.parents if p.exists()), Path(output.anchor or "."))  # nearest existing
    if not ancestor.is_dir():
        raise ConfigError(f"output: cannot create {output}: {ancestor} is a file, not a directory")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise ConfigError(f"output: cannot create {output}: {ancestor} is not writable")
    return ancestor


def stage_directory(ancestor: Path, output: Path) -> Path:
    """A hidden temporary directory beside the output; ConfigError if it cannot be created."""
    staging = ancestor / f".{output.name}.partial-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        staging.mkdir()  # honours the umask, unlike tempfile.mkdtemp's 0700
        return staging
    except OSError as err:
        raise ConfigError(f"output: cannot create {output}: {err.strerror} ({ancestor})") from err


def publish(staging: Path, output: Path) -> None:
    """Move the finished corpus into place, replacing an old one only after success."""
    output.parent.mkdir(parents=True, exist_ok=True)
    previous = None
    if output.exists():
        previous = output.with_name(f".{output.name}.previous-{os.getpid()}")
        os.rename(output, previous)
    os.rename(staging, output)
    if previous is not None:
        shutil.rmtree(previous)
