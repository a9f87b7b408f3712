"""``eegfm-predict``'s progress: one log line per recording where stderr is no terminal, naming it as
its outputs do (serving.predict_progress)."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import shutil
import struct
import subprocess
import sys
import termios
from pathlib import Path

from eegfm.serving import predict
from eegfm.serving.predict_progress import LONG_RECORDING_S, RecordingProgress

SRC = Path(__file__).resolve().parents[2] / "src"


def test_each_recording_gets_a_line_with_its_token_status_windows_and_seconds(hms6_run, shared_data, tmp_path, capsys):
    ward = tmp_path / "ward"
    ward.mkdir()
    for name in ("Subject09_2.edf", "Subject10_2.edf"):
        shutil.copy(shared_data / "eegmat" / name, ward / name)
    (ward / "Subject11_2.edf").write_bytes(b"")  # quarantined at read
    common = ["--model", str(hms6_run), "--input", str(ward), "--no_artifact_model", "--no_plots"]
    key = ["--pseudonym_key_file", str(tmp_path / "key"), "--create_key_file"]
    assert predict.main([*common, *key, "--output", str(tmp_path / "out")]) == 0
    err = capsys.readouterr().err
    lines = re.findall(r"recording (\d)/3 (\S+): (processed|quarantined at \w+)\D.*?(\d+) windows, (\d+\.\d) s", err)
    assert sorted(int(n) for n, *_ in lines) == [1, 2, 3]
    assert all(re.fullmatch(r"file-[0-9a-f]{12}\.edf", name) for _, name, *_ in lines)
    assert sorted(status for _, _, status, *_ in lines) == ["processed", "processed", "quarantined at read"]
    assert {int(w) for _, _, status, w, _ in lines if status == "processed"} == {6}  # 62 s in 10 s windows
    assert "Subject" not in err

    assert predict.main([*common, *key, "--output", str(tmp_path / "kept"), "--keep_paths"]) == 0
    err = capsys.readouterr().err
    assert f"recording 1/3 {ward}/Subject" in err and "processed, 6 windows" in err


def test_a_terminal_gets_a_windows_bar_only_inside_a_long_recording(capsys):
    with RecordingProgress(2, terminal=True) as progress:
        progress.windows(32, 320.0)
        assert progress._windows_bar is None  # a short recording: the recordings' bar is enough
        progress.windows(64, LONG_RECORDING_S + 40)
        assert progress._windows_bar is not None and progress._windows_bar.n == 64
    with RecordingProgress(2, terminal=False) as progress:
        progress.windows(64, LONG_RECORDING_S + 40)
        assert progress._windows_bar is None


def test_on_a_terminal_a_bar_names_recordings_by_token(hms6_run, shared_data, tmp_path):
    """A real pseudo-terminal (40 rows: tqdm hides a bar below a screen's last row, and a bare pty has none)."""
    ward = tmp_path / "ward"
    ward.mkdir()
    shutil.copy(shared_data / "eegmat" / "Subject14_2.edf", ward / "Subject14_2.edf")
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1", "PYTHONIOENCODING": "utf-8"}
    argv = ["--model", str(hms6_run), "--input", str(ward), "--output", str(tmp_path / "out"), "--no_plots"]
    argv += ["--no_artifact_model", "--pseudonym_key_file", str(tmp_path / "key"), "--create_key_file"]
    with subprocess.Popen(
        [sys.executable, "-m", "eegfm.serving.predict", *argv], stderr=follower, stdout=subprocess.PIPE, env=env
    ) as process:
        os.close(follower)
        shown = b""
        while chunk := _read(leader):
            shown += chunk
        assert process.wait(timeout=600) == 0
    os.close(leader)
    text = shown.decode("utf-8", "replace")
    assert re.search(r"recordings: 100%\|.*\| 1/1 .*file-[0-9a-f]{12}\.edf: 6 windows", text), text[-2000:]
    assert "Subject" not in text and "recording 1/1" not in text  # the bar, not the log line


def _read(fd: int) -> bytes:
    try:
        return os.read(fd, 65536)
    except OSError:  # the other end closed: Linux says EIO
        return b""
