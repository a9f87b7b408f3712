import os
import subprocess
import sys
from pathlib import Path

from pipelines.run_lock import RUN_LOCK, hold_run_lock, release_run_lock


def test_one_run_at_a_time_holds_a_run_folder_until_it_dies(tmp_path):
    # A second process (a job launched twice) is refused while the first lives, SIGKILL included
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pipelines.run_lock import hold_run_lock; "
         f"assert hold_run_lock({str(tmp_path)!r}) is None; print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[2])
    try:
        assert holder.stdout.readline().strip() == "held"
        problem = hold_run_lock(tmp_path)
        assert problem.startswith(f"{tmp_path}: another run is writing to this folder (pid {holder.pid} on ")
        assert problem.endswith("wait for it to end, or give another --output")
    finally:
        holder.kill()
        holder.wait()
    assert hold_run_lock(tmp_path) is None  # the kernel dropped the dead process's lock
    assert hold_run_lock(tmp_path) is None  # and this process may ask again, by any spelling
    assert hold_run_lock(tmp_path / ".") is None
    assert f"pid {os.getpid()} on " in (tmp_path / RUN_LOCK).read_text()


def test_a_released_folder_can_be_taken_by_another_process(tmp_path):
    # A run that ends in a process that goes on (a notebook, a test) gives the folder back
    assert hold_run_lock(tmp_path) is None
    take = [sys.executable, "-c", "import sys; from pipelines.run_lock import hold_run_lock; "
            f"sys.exit(0 if hold_run_lock({str(tmp_path)!r}) is None else 3)"]
    repo = Path(__file__).resolve().parents[2]
    assert subprocess.run(take, cwd=repo).returncode == 3
    release_run_lock(tmp_path)
    release_run_lock(tmp_path)  # twice: a no-op
    assert subprocess.run(take, cwd=repo).returncode == 0

