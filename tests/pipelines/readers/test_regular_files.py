"""Inputs opened without blocking (``pipelines.readers.regular_files``): an entry listed as a recording and
swapped for a FIFO, a socket or a device before it is read is refused with why, never waited on."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from eegfm.pipelines.readers.regular_files import NotRegularFile, check_regular, open_regular

REPO = Path(__file__).resolve().parents[3]


def test_fifos_sockets_devices_and_folders_are_refused_at_once(tmp_path):
    fifo = tmp_path / "x.edf"
    os.mkfifo(fifo)  # no writer: a plain open() would wait for one for ever
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(tmp_path / "s.edf"))
        for path, kind in ((fifo, "a FIFO"), (tmp_path / "s.edf", "a socket"), ("/dev/zero", "a character device")):
            with pytest.raises(NotRegularFile, match=f"not a regular file when opened \\({kind};"):
                open_regular(path)
    with pytest.raises(NotRegularFile, match="a folder"):
        check_regular(tmp_path)
    with pytest.raises(FileNotFoundError):
        open_regular(tmp_path / "none.edf")
    (tmp_path / "r.edf").write_bytes(b"0123")
    with open_regular(tmp_path / "r.edf") as fh:
        assert os.get_blocking(fh.fileno()) and fh.read() == b"0123"
    assert check_regular(tmp_path / "r.edf") == 4


def test_a_recording_swapped_for_a_fifo_after_listing_is_quarantined_with_why(shared_data, tmp_path):
    from eegfm.pipelines.datasets import discover
    from eegfm.pipelines.job.process import process_recording
    from eegfm.pipelines.job.process_io import PreprocessConfig

    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("Subject00_2.edf", "Subject01_2.edf"):
        shutil.copy(shared_data / "eegmat" / name, folder / name)
    items, _, _ = discover([str(folder)])
    swapped = next(item for item in items if item.path.endswith("Subject01_2.edf"))
    os.unlink(swapped.path)
    os.mkfifo(swapped.path)
    config = PreprocessConfig()
    *_, outcome = process_recording(swapped, b"k" * 32, config, config.config_hash())
    assert (outcome.status, outcome.stage) == ("quarantined", "read")
    assert outcome.reason.startswith("Subject01_2.edf: not a regular file when opened (a FIFO;")


def test_the_job_accounts_for_a_recording_swapped_for_a_fifo_once_listed(shared_data, key_file, tmp_path):
    # The swap lands between the launcher's listing (its "writing to" line) and the workers' reads.
    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    names = ["Subject00_2.edf", "Subject01_2.edf", "Subject02_2.edf"]
    for name in names:
        (folder / name).symlink_to(shared_data / "eegmat" / name)
    argv = ["--input", str(folder), "--output", str(out), "--pseudonym_key_file", key_file, "--keep_paths"]
    argv += ["--no_artifact_model", "--runner", "DirectRunner", "--direct_running_mode", "in_memory"]
    job = subprocess.Popen(
        [sys.executable, "-m", "eegfm.pipelines.job.preprocess", *argv],
        stderr=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    lines = []
    for line in job.stderr:
        lines.append(line)
        if "writing to" in line:
            os.unlink(folder / names[-1])
            os.mkfifo(folder / names[-1])
            break
    try:
        _, rest = job.communicate(timeout=180)  # before the fix: waited on the FIFO for ever
    finally:
        job.kill()
    assert job.returncode == 0, "".join(lines) + rest[-3000:]
    inputs = json.loads((out / "manifest.json").read_text())["inputs"]
    by_name = {Path(entry["source"]).name: entry for entry in inputs}
    assert sorted(by_name) == names
    assert [by_name[n]["status"] for n in names] == ["processed", "processed", "quarantined"]
    assert by_name[names[-1]]["stage"] == "read" and "(a FIFO;" in by_name[names[-1]]["reason"]
