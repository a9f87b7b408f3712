import os

from eegfm.core.run_lock import RUN_LOCK, hold_run_lock, release_run_lock
from tests.conftest import run_lock_free_elsewhere, run_lock_held_elsewhere


def test_one_run_at_a_time_holds_a_run_folder_until_it_dies(tmp_path):
    # A second process (a job launched twice) is refused while the first lives, SIGKILL included
    with run_lock_held_elsewhere(tmp_path) as holder:
        problem = hold_run_lock(tmp_path)
        assert problem.startswith(f"{tmp_path}: another run is writing to this folder (pid {holder.pid} on ")
        assert problem.endswith("wait for it to end, or give another --output")
    assert hold_run_lock(tmp_path) is None  # the kernel dropped the dead process's lock
    assert hold_run_lock(tmp_path) is None  # and this process may ask again, by any spelling
    assert hold_run_lock(tmp_path / ".") is None
    assert f"pid {os.getpid()} on " in (tmp_path / RUN_LOCK).read_text()
    release_run_lock(tmp_path)


def test_a_released_folder_can_be_taken_by_another_process(tmp_path):
    # A run that ends in a process that goes on (a notebook, a test) gives the folder back
    assert hold_run_lock(tmp_path) is None
    assert not run_lock_free_elsewhere(tmp_path)
    release_run_lock(tmp_path)
    release_run_lock(tmp_path)  # twice: a no-op
    assert run_lock_free_elsewhere(tmp_path)
