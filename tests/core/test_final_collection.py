"""core.final_collection: a command's exit skips the last collection of what its imports made."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"

# Objects alive at exit, after ``{setup}``, each in a reference cycle with a finalizer that says it
# ran: the last collection at exit finds garbage cycles only among objects it still tracks.
EXIT = """
import gc, sys, tempfile, os
{setup}
class Cycle:
    def __init__(self): self.me = self
    def __del__(self): os.write(1, b"collected ")
keep = [Cycle() for _ in range(3)]
gc.collect()  # before exit: collected as ever
print("frozen before exit:", gc.get_freeze_count(), flush=True)
folder = tempfile.TemporaryDirectory()
print(folder.name, flush=True)
del keep
"""
SKIP = "from eegfm.core.final_collection import skip_final_collection; skip_final_collection(); skip_final_collection()"


def exit_of(setup: str) -> tuple[str, Path]:
    """What a fresh process that first ran ``setup`` printed by its exit, and its temporary folder."""
    done = subprocess.run(
        [sys.executable, "-c", EXIT.format(setup=setup)], env={"PYTHONPATH": str(SRC)},
        capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    return done.stdout, Path(done.stdout.split("\n")[1].strip())


def test_the_command_runs_as_ever_and_exit_handlers_still_clean_up():
    out, folder = exit_of(SKIP)
    assert "frozen before exit: 0" in out  # nothing frozen while the command runs
    assert not folder.exists()  # the temporary folder's finalizer ran at exit
    assert "collected" not in out  # the last collection passed over the cycles alive at exit


def test_without_it_the_last_collection_walks_them():
    out, folder = exit_of("")
    assert "frozen before exit: 0" in out and not folder.exists()
    assert out.count("collected") == 3
