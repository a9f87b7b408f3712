"""pipelines.job.progress: finished inputs counted across worker processes and shown while a job runs."""

from __future__ import annotations

import io
import logging
import multiprocessing
import threading
import time

import pytest

from eegfm.pipelines.job.progress import ProgressReporter, progress_line, read_progress, record_done


def _writer(path: str, count: int) -> None:
    for _ in range(count):
        record_done(path, 1.5)


def test_lines_from_concurrent_processes_are_all_counted(tmp_path):
    path = str(tmp_path / "done")
    assert read_progress(path) == (0, 0.0, 0)  # nothing finished yet: no file
    workers = [multiprocessing.get_context("fork").Process(target=_writer, args=(path, 300)) for _ in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    size = len(b"1.500\n") * 900
    assert read_progress(path) == (900, pytest.approx(1350.0), size)
    with open(path, "ab") as fh:
        fh.write(b"12.5")  # a line still being written
    assert read_progress(path) == (900, pytest.approx(1350.0), size)
    assert read_progress(path, size) == (0, 0.0, size)  # from where the last read ended: nothing new
    with open(path, "ab") as fh:
        fh.write(b"00\n3.000\n")  # the line completed, and one more
    assert read_progress(path, size) == (2, pytest.approx(15.5), size + len(b"12.500\n3.000\n"))


def test_recording_progress_never_fails(tmp_path):
    record_done(None, 10.0)  # not a local run: nothing to do
    record_done(str(tmp_path / "missing" / "done"), 10.0)  # cannot be written: logged at debug level
    record_done(str(tmp_path / "done"), float("nan"))
    assert read_progress(str(tmp_path / "done"))[:2] == (1, 0.0)  # NaN seconds count as none


def test_the_progress_line_says_how_far_and_how_long():
    assert progress_line(3, 10, 1800.0, 60.0) == (
        "progress: 3/10 recordings (30%), 0.50 EEG-hours read, 1m00s elapsed, about 2m20s left"
    )
    assert progress_line(10, 10, 7200.0, 4000.0) == (
        "progress: 10/10 recordings (100%), 2.00 EEG-hours read, 1h06m elapsed"
    )


def _finish(path: str, count: int, pause: float) -> threading.Thread:
    def work():
        for _ in range(count):
            time.sleep(pause)
            record_done(path, 3600.0)

    thread = threading.Thread(target=work)
    thread.start()
    return thread


def test_without_a_terminal_the_reporter_logs_lines_while_it_runs_and_at_the_end(tmp_path, caplog):
    path = str(tmp_path / "done")
    with caplog.at_level(logging.INFO, logger="eegfm.preprocess"):
        with ProgressReporter(path, 4, stream=io.StringIO(), log_every=0.25, poll=0.05):
            _finish(path, 4, 0.2).join()
            time.sleep(0.3)  # scoring and writing: the reporter has seen the last recording
    messages = [r.getMessage() for r in caplog.records]
    lines = [m for m in messages if m.startswith("progress:")]
    assert len(lines) >= 3  # some while it ran, one at the end
    assert any("left" in line for line in lines[:-1])
    assert lines[-1].startswith("progress: 4/4 recordings (100%), 4.00 EEG-hours read")
    stage_two = [m for m in messages if m.startswith("all 4 recordings read (4.00 EEG-hours); scoring")]
    assert len(stage_two) == 1 and messages.index(stage_two[0]) < messages.index(lines[-1])


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_on_a_terminal_the_reporter_draws_a_bar(tmp_path, caplog):
    path, terminal = str(tmp_path / "done"), _Terminal()
    with caplog.at_level(logging.INFO, logger="eegfm.preprocess"):
        with ProgressReporter(path, 3, stream=terminal, poll=0.05):
            _finish(path, 3, 0.1).join()
            time.sleep(0.2)  # a poll after the last one
    drawn = terminal.getvalue()
    assert "recordings:" in drawn and "3/3" in drawn and "3.00 EEG-h" in drawn
    messages = [r.getMessage() for r in caplog.records]
    assert messages[-2].startswith("all 3 recordings read")
    assert messages[-1].startswith("progress: 3/3 recordings (100%)")
