"""``eegfm-preprocess`` as one process tree (issue 78 #1, #2): whatever ends the launcher ends every
process of its job within seconds and frees the output folder only then; a worker that cannot start
fails the run with one line; a process left behind never writes over a later run's outputs."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from eegfm.core.process_tree import group_members
from eegfm.core.run_lock import RUN_LOCK, hold_run_lock, release_run_lock, run_token
from tests.conftest import run_lock_free_elsewhere, run_lock_held_elsewhere
from tests.pipelines.interrupted_job import signal_after_first_spill

REPO = Path(__file__).resolve().parents[3]
TWO_WORKERS = ["--direct_running_mode", "multi_processing", "--direct_num_workers", "2"]


def _corpus(shared_data: Path, folder: Path, sites=("a",), files: int = 4) -> Path:
    """``files`` eegmat recordings linked at each of ``sites`` (62 s each where 4, or all 64)."""
    for site in sites:
        (folder / site).mkdir(parents=True)
        edfs = sorted((shared_data / "eegmat").glob("*.edf"))
        for edf in edfs if files >= len(edfs) else [e for e in edfs if e.name.endswith("_2.edf")][:files]:
            (folder / site / edf.name).symlink_to(edf)
    return folder


def _argv(corpus: Path, out: Path, key_file: str, *extra: str) -> list[str]:
    argv = ["--input", str(corpus), "--output", str(out), "--pseudonym_key_file", key_file]
    return [*argv, "--no_artifact_model", *extra]


def _preprocess(argv: list[str], **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "eegfm.pipelines.job.preprocess", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        **kwargs,
    )


def _job_group(out: Path, launcher: subprocess.Popen) -> tuple[int, list[int]]:
    """The job's process group, once its worker processes run, and its processes then."""
    deadline = time.monotonic() + 120
    while True:
        assert launcher.poll() is None, launcher.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "no worker process started in 120 s"
        lock = (out / RUN_LOCK).read_text() if (out / RUN_LOCK).exists() else ""
        if "job process group " in lock:
            group = int(lock.rsplit("job process group ", 1)[1])
            if len(members := group_members(group)) >= 3:  # the job's process and Beam's workers
                return group, members
        time.sleep(0.05)


def _gone_within(pids: list[int], seconds: float) -> list[int]:
    deadline = time.monotonic() + seconds
    while (left := [pid for pid in pids if _alive(pid)]) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")  # a zombie has ended
    except FileNotFoundError:
        return False


def _outputs(out: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(out)): (p.stat().st_size, p.stat().st_mtime_ns) for p in out.rglob("*") if p.is_file()}


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL])
def test_sigterm_or_the_launchers_death_ends_every_process_of_a_two_worker_job(shared_data, key_file, tmp_path, signum):
    corpus, out = _corpus(shared_data, tmp_path / "corpus"), tmp_path / "out"
    launcher = _preprocess(_argv(corpus, out, key_file, *TWO_WORKERS), start_new_session=True)
    group, members = _job_group(out, launcher)
    os.kill(launcher.pid, signum)  # the launcher alone, as `kill PID` or an orchestrator's stop sends it
    _, stderr = launcher.communicate(timeout=60)
    assert launcher.returncode == (143 if signum == signal.SIGTERM else -signal.SIGKILL), stderr[-3000:]
    if signum == signal.SIGTERM:
        # It returns only once the job's processes are gone, having removed what they wrote.
        assert stderr.strip().splitlines()[-1] == "eegfm-preprocess: stopped by SIGTERM"
        assert [pid for pid in members if _alive(pid)] == [] and group_members(group) == []
        assert sorted(p.name for p in out.iterdir()) == [RUN_LOCK]
    assert _gone_within(members, 5.0) == [] and group_members(group) == []
    assert run_lock_free_elsewhere(out)
    # A run into the same folder now is whole and stays so: no process of the first is left to write.
    rerun = _preprocess(_argv(corpus, out, key_file, "--direct_running_mode", "in_memory"))
    stdout, stderr = rerun.communicate(timeout=180)
    assert rerun.returncode == 0 and "eegfm-preprocess: wrote" in stdout, stderr[-3000:]
    written = _outputs(out)
    time.sleep(3)
    assert _outputs(out) == written and json.loads((out / "manifest.json").read_text())["counts"]


def _run_capped(corpus: Path, out: Path, key_file: str, megabytes: int) -> tuple[str, str]:
    """A two-worker run whose launcher (and so its job) may use ``megabytes`` of address space
    (``ulimit -v``), which must fail within 120 s with status 1: its stdout and last line of stderr."""

    def capped() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (megabytes * 2**20, resource.getrlimit(resource.RLIMIT_AS)[1]))

    launcher = _preprocess(_argv(corpus, out, key_file, *TWO_WORKERS), preexec_fn=capped)
    try:
        stdout, stderr = launcher.communicate(timeout=120)
    finally:
        launcher.kill()
    assert launcher.returncode == 1, stderr[-3000:]
    return stdout, stderr.strip().splitlines()[-1]


LIMIT_HINT = "(a memory or thread limit, ulimit -v or -u, too low for this many worker processes?)"


def test_a_worker_that_cannot_start_under_a_memory_limit_fails_the_run_with_one_line(shared_data, key_file, tmp_path):
    # Issue 78 #2: under `ulimit -v` 2.5 GB Beam could not start a thread and the run hung for ever,
    # its job and workers alive 12 min later. Where the limit strikes a worker process's thread, the
    # worker ends itself and its line is the run's.
    corpus, out = _corpus(shared_data, tmp_path / "corpus"), tmp_path / "out"
    stdout, last = _run_capped(corpus, out, key_file, 2500)
    assert last.startswith("eegfm-preprocess: the Beam job stopped: ") and last.endswith(LIMIT_HINT), last
    assert "can't start new thread" in last or "MemoryError" in last, last
    assert "wrote" not in stdout and not (out / "manifest.json").exists()
    assert run_lock_free_elsewhere(out)


def test_a_launcher_that_runs_out_of_memory_says_so_in_one_line(shared_data, key_file, tmp_path):
    # Under `ulimit -v` 1.5 GB the launcher's own import of Beam raises MemoryError (on this machine;
    # the cap decides where a run fails): one line, not a traceback through Beam's modules.
    corpus, out = _corpus(shared_data, tmp_path / "corpus"), tmp_path / "out"
    stdout, last = _run_capped(corpus, out, key_file, 1500)
    stopped = ("eegfm-preprocess: the launcher stopped: ", "eegfm-preprocess: the Beam job stopped: ")
    assert last.startswith(stopped) and last.endswith(LIMIT_HINT), last
    assert "wrote" not in stdout and not (out / "manifest.json").exists()


def test_a_process_left_behind_writes_nothing_once_a_later_run_holds_the_folder(shared_data, key_file, tmp_path):
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    from eegfm.pipelines.datasets import discover
    from eegfm.pipelines.job.launcher import local_runner
    from eegfm.pipelines.job.process_io import PreprocessConfig
    from eegfm.pipelines.job.stages import JobSpec, build_pipeline
    from eegfm.pipelines.privacy.deid import load_key

    out = tmp_path / "out"
    assert hold_run_lock(out) is None  # the run whose launcher was killed ...
    token = run_token(out)
    release_run_lock(out)
    corpus = _corpus(shared_data, tmp_path / "corpus")
    items, ignored, _ = discover([str(corpus)])
    spec = JobSpec((str(corpus),), str(out), key_file, use_artifact_model=False, run_token=token)
    options = PipelineOptions(["--direct_running_mode", "in_memory"])
    with run_lock_held_elsewhere(out):  # ... and a later run in its folder
        with pytest.raises(Exception, match="another run holds this folder now"):
            with beam.Pipeline(runner=local_runner(options), options=options) as p:
                build_pipeline(p, spec, PreprocessConfig(), items, ignored, load_key(key_file))
    assert not list(out.glob("*/part-*")) and not (out / "manifest.json").exists()


@pytest.mark.slow  # two workers signalled mid-run, then a second run: about 40 s
def test_sigterm_mid_run_ends_the_job_and_a_rerun_is_never_overwritten(shared_data, key_file, tmp_path):
    # Issue 78 #1: the command exited 143 but its job went on; a second run into the folder printed
    # "wrote", then the first job's process overwrote its manifest and shards 5 s later.
    # eegmat at three sites: about 6 s of work, so the signal lands mid-run.
    corpus, out = _corpus(shared_data, tmp_path / "corpus", sites=("a", "b", "c"), files=64), tmp_path / "out"
    out.mkdir()
    argv = _argv(corpus, out, key_file, *TWO_WORKERS)
    launcher, stdout, stderr = signal_after_first_spill(argv, out, signal.SIGTERM, only_the_launcher=True)
    assert launcher.returncode == 143 and "wrote" not in stdout, stderr[-3000:]
    assert stderr.strip().splitlines()[-1] == "eegfm-preprocess: stopped by SIGTERM"
    group = int((out / RUN_LOCK).read_text().rsplit("job process group ", 1)[1])
    assert group_members(group) == [] and run_lock_free_elsewhere(out)
    rerun = _preprocess(_argv(corpus, out, key_file, *TWO_WORKERS, "--overwrite"))
    stdout, stderr = rerun.communicate(timeout=300)
    assert rerun.returncode == 0 and "eegfm-preprocess: wrote" in stdout, stderr[-3000:]
    written = _outputs(out)
    time.sleep(8)
    assert _outputs(out) == written


def test_sigterm_to_an_in_memory_run_unwinds_it_with_one_line(shared_data, key_file, tmp_path):
    # One process: the signal unwinds the job itself, through Beam's step that was running.
    corpus, out = _corpus(shared_data, tmp_path / "corpus", files=64), tmp_path / "out"
    out.mkdir()
    argv = _argv(corpus, out, key_file, "--direct_running_mode", "in_memory")
    launcher, stdout, stderr = signal_after_first_spill(argv, out, signal.SIGTERM, only_the_launcher=True)
    assert launcher.returncode == 143 and "wrote" not in stdout, stderr[-3000:]
    assert stderr.strip().splitlines()[-1] == "eegfm-preprocess: stopped by SIGTERM"
    assert "Traceback" not in stderr and sorted(p.name for p in out.iterdir()) == [RUN_LOCK]
    assert run_lock_free_elsewhere(out)
