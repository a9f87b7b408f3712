"""benchmarks/preprocess.py: the copies that make its larger corpus are distinct recordings to the
job (it writes one copy of identical bytes) and the same EEG to every reader."""

from __future__ import annotations

import numpy as np

from benchmarks.preprocess import _copies
from eegfm.pipelines.job.duplicates import duplicate_sources
from eegfm.pipelines.readers import open_recording
from eegfm.pipelines.readers.local_copy import localized

RECORDINGS = ("Subject00_1.edf", "Subject01_2.edf")


def _sha(path) -> str:
    """The SHA-256 the job records for ``path`` and finds duplicates by."""
    with localized(str(path)) as (_, sha):
        return sha


def test_each_copy_is_written_by_the_job_and_holds_the_same_eeg(shared_data, tmp_path):
    source = tmp_path / "eegmat"
    source.mkdir()
    for name in (*RECORDINGS, "subject-info.csv"):
        (source / name).symlink_to(shared_data / "eegmat" / name)
    copies = _copies(source, 3, tmp_path / "copies")

    first = copies / "copy1"
    assert all((first / name).is_symlink() for name in (*RECORDINGS, "subject-info.csv"))
    assert (copies / "copy3" / "subject-info.csv").is_symlink()
    hashed = []
    for name in RECORDINGS:
        paths = [copies / f"copy{k}" / name for k in (1, 2, 3)]
        assert not any(p.is_symlink() for p in paths[1:])
        hashed += [(_sha(p), str(p), 0, 1) for p in paths]
        with open_recording(paths[0]) as original, open_recording(paths[2]) as copy:
            assert copy.info.ch_names == original.info.ch_names and copy.info.sfreq == original.info.sfreq
            np.testing.assert_array_equal(copy.read(0, 5000), original.read(0, 5000))
    assert len({sha for sha, *_ in hashed}) == len(hashed)
    assert duplicate_sources(hashed) == {}  # the job's own rule keeps every copy
