import multiprocessing
import os
import re
import time

import pytest

from eegfm.core.run_lock import (
    RUN_LOCK,
    RunLockLost,
    check_run_lock,
    hold_run_lock,
    name_job_group,
    release_run_lock,
    run_token,
    shared_with_forks,
)
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


def test_a_process_forked_for_the_job_keeps_the_folder_until_it_ends(tmp_path):
    # Issue 78 #1: the launcher died, its job went on writing, and a second run took the folder meanwhile
    assert hold_run_lock(tmp_path) is None
    with shared_with_forks():
        job = multiprocessing.get_context("fork").Process(target=time.sleep, args=(60,))
        job.start()
    release_run_lock(tmp_path)  # as the launcher's death would
    try:
        assert not run_lock_free_elsewhere(tmp_path)
    finally:
        job.kill()
        job.join()
    assert run_lock_free_elsewhere(tmp_path)


def test_any_other_forked_process_gives_the_folder_back_with_its_run(tmp_path):
    assert hold_run_lock(tmp_path) is None
    loader = multiprocessing.get_context("fork").Process(target=time.sleep, args=(60,))  # a data loader's worker
    loader.start()
    try:
        release_run_lock(tmp_path)
        assert run_lock_free_elsewhere(tmp_path)
    finally:
        loader.kill()
        loader.join()


def test_a_process_of_a_run_writes_nothing_once_another_run_holds_the_folder(tmp_path):
    assert hold_run_lock(tmp_path) is None
    token = run_token(tmp_path)
    assert re.fullmatch(r"[0-9a-f]{16}", token) and run_token(tmp_path / "other") == ""
    name_job_group(tmp_path, 4242)
    assert (tmp_path / RUN_LOCK).read_text().endswith(f"; run {token}; job process group 4242")
    check_run_lock(str(tmp_path), token)  # still ours
    check_run_lock(str(tmp_path), "")  # no lock to check (an object store)
    release_run_lock(tmp_path)
    with run_lock_held_elsewhere(tmp_path) as holder:
        with pytest.raises(RunLockLost, match=f"another run holds this folder now \\(pid {holder.pid} on "):
            check_run_lock(str(tmp_path), token)
