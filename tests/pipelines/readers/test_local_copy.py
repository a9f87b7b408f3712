"""Local copies of stored recordings: the companion files a header brings along."""

import os

import numpy as np
import pytest

from eegfm.pipelines.job.process_io import StageError
from eegfm.pipelines.readers.local_copy import _companions, localized
from tests.pipelines.readers.test_readers import _mff


def test_a_brainvision_header_brings_the_data_and_marker_files_it_names(shared_data, tmp_path):
    header = tmp_path / "recording.vhdr"  # a remote header's local copy
    header.write_bytes((shared_data / "formats" / "brainvision" / "test_NO.vhdr").read_bytes())
    assert _companions("s3://b/raw/renamed.vhdr", str(header)) == ["s3://b/raw/test_NO.vmrk", "s3://b/raw/test_NO.eeg"]
    header.write_text("Brain Vision Data Exchange Header File Version 1.0\n[Common Infos]\nDataFile=C:\\rec\\x.eeg\n")
    assert _companions("gs://b/r/y.vhdr", str(header)) == ["gs://b/r/y.vmrk", "gs://b/r/x.eeg"]
    assert _companions("gs://b/r/y.VHDR") == ["gs://b/r/y.vmrk", "gs://b/r/y.eeg"]
    assert _companions("gs://b/r/y.set") == ["gs://b/r/y.fdt"] and _companions("gs://b/r/y.edf") == []


def test_a_remote_recording_brings_the_parts_of_its_format(tmp_path):
    nk = ["gs://b/r/DA1.21E", "gs://b/r/DA1.PNT", "gs://b/r/DA1.LOG", "gs://b/r/DA1.21e", "gs://b/r/DA1.pnt"]
    assert _companions("gs://b/r/DA1.EEG")[:5] == nk
    assert _companions("gs://b/r/c 8.cdt") == ["gs://b/r/c 8.cdt.dpa", "gs://b/r/c 8.cdt.cef", "gs://b/r/c 8.cdt.ceo"]
    assert _companions("gs://b/r/c.dat") == ["gs://b/r/c.dap", "gs://b/r/c.rs3", "gs://b/r/c.ceo"]
    assert _companions("gs://b/r/a.cnt") == ["gs://b/r/a.evt"]
    lay = tmp_path / "recording.lay"  # a remote header's local copy
    lay.write_text("[FileInfo]\nFile=C:\\export\\p 1.dat\nFileType=Interleaved\n")
    assert _companions("gs://b/r/p.lay", str(lay)) == ["gs://b/r/p 1.dat"]
    assert _companions("gs://b/r/p.lay") == ["gs://b/r/p.dat"]


@pytest.mark.timeout(60)
def test_a_fifo_inside_an_mff_folder_is_a_read_error_not_a_hang(tmp_path):
    """Hashing an MFF folder opens each of its files: a FIFO among them would wait for a writer for ever."""
    folder = _mff(tmp_path / "night.mff", np.zeros((2, 1000)))
    os.mkfifo(folder / "signal2.bin")
    with pytest.raises(StageError, match=r"expected only regular files in it; one is not a regular file \(a FIFO\)"):
        with localized(str(folder)):
            pass
