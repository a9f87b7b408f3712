"""What a library says when it fails reaches a reason only as one line without its traceback or any
absolute path: an EDF uploaded as .cnt made MNE quote a traceback with the install's paths."""

from __future__ import annotations

import shutil

import pytest

from eegfm.pipelines.datasets import discover
from eegfm.pipelines.job.process import Outcome, PreprocessConfig, process_recording
from eegfm.pipelines.readers.base import one_line


@pytest.mark.parametrize(
    "err, expected",
    [
        (
            RuntimeError('File "/opt/venv/lib/python3.11/site-packages/mne/utils.py", line 279, in read_str'),
            "RuntimeError",
        ),
        (
            ValueError("Could not read /data/Smith^Jane_19700101/rec.edf: bad header"),
            "ValueError: Could not read <path>: bad header",
        ),
        (OSError("No such file: C:\\Users\\x\\DOE_JOHN.edf"), "OSError: No such file: <path>"),
        (ValueError("sfreq 0.5 is too low,\n expected 1/s"), "ValueError: sfreq 0.5 is too low, expected 1/s"),
    ],
)
def test_one_line_drops_tracebacks_and_absolute_paths(err, expected):
    assert one_line(err) == expected


def test_an_edf_named_cnt_is_quarantined_without_the_librarys_traceback(shared_data, tmp_path):
    folder = tmp_path / "Smith^Jane_19700101"
    folder.mkdir()
    shutil.copy(shared_data / "eegmat" / "Subject00_2.edf", folder / "x.cnt")
    config = PreprocessConfig()
    (outcome,) = process_recording(discover([str(folder / "x.cnt")])[0][0], b"k" * 32, config, "h")
    assert isinstance(outcome, Outcome) and (outcome.status, outcome.stage) == ("quarantined", "read")
    assert "not a readable .cnt" in outcome.reason
    for leak in ('File "', "site-packages", str(tmp_path), "Smith"):
        assert leak not in outcome.reason, outcome.reason
