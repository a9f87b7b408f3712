"""Local copies of stored recordings: the companion files a header brings along."""

from eegfm.pipelines.localize import _companions


def test_a_brainvision_header_brings_the_data_and_marker_files_it_names(shared_data, tmp_path):
    header = tmp_path / "recording.vhdr"  # a remote header's local copy
    header.write_bytes((shared_data / "formats" / "brainvision" / "test_NO.vhdr").read_bytes())
    assert _companions("s3://b/raw/renamed.vhdr", str(header)) == ["s3://b/raw/test_NO.vmrk", "s3://b/raw/test_NO.eeg"]
    header.write_text("Brain Vision Data Exchange Header File Version 1.0\n[Common Infos]\nDataFile=C:\\rec\\x.eeg\n")
    assert _companions("gs://b/r/y.vhdr", str(header)) == ["gs://b/r/y.vmrk", "gs://b/r/x.eeg"]
    assert _companions("gs://b/r/y.VHDR") == ["gs://b/r/y.vmrk", "gs://b/r/y.eeg"]
    assert _companions("gs://b/r/y.set") == ["gs://b/r/y.fdt"] and _companions("gs://b/r/y.edf") == []
