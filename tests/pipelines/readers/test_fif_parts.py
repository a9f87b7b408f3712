import gzip
import shutil

import mne
import numpy as np

from eegfm.contract.schema import decode_example
from eegfm.contract.tfrecord import read_records
from eegfm.pipelines.job.preprocess import run
from eegfm.pipelines.readers import open_recording
from eegfm.pipelines.readers.fif_parts import PartReference, next_part_name, previous_part, previous_part_names


def _links(path):
    with open(path, "rb") as fh:
        return previous_part(fh), next_part_name(str(path))


def test_each_part_names_the_one_before_and_after_it(split_fif):
    parts = sorted((split_fif / "split").iterdir(), key=lambda p: (len(p.name), p.name))
    assert [p.name for p in parts[:3]] == ["rest_raw.fif", "rest_raw-1.fif", "rest_raw-2.fif"]
    first, last = _links(parts[0]), _links(parts[-1])
    assert first == (None, "rest_raw-1.fif")
    assert last[0].basename == parts[-2].name and last[0].number == len(parts) - 2 and last[1] is None
    for k in range(1, len(parts) - 1):
        before, after = _links(parts[k])
        assert (before.role, before.basename, before.number) == ("previous", parts[k - 1].name, k - 1)
        assert after == parts[k + 1].name


def test_files_that_are_not_split_or_not_fif_have_no_parts(split_fif, shared_data, tmp_path):
    assert _links(split_fif / "whole" / "rest_raw.fif") == (None, None)
    assert _links(shared_data / "formats" / "fif" / "data_resting_EO_200Hz_raw.fif") == (None, None)
    assert _links(shared_data / "eegmat" / "Subject00_1.edf") == (None, None)
    part = (split_fif / "split" / "rest_raw-1.fif").read_bytes()
    (tmp_path / "cut.fif").write_bytes(part[:1000])  # cut inside the measurement info, before the reference
    assert _links(tmp_path / "cut.fif") == (None, None)
    (tmp_path / "empty.fif").write_bytes(b"")
    assert _links(tmp_path / "empty.fif") == (None, None)


def test_bids_split_names_and_gzipped_parts(split_fif, tmp_path):
    raw = mne.io.read_raw_fif(split_fif / "whole" / "rest_raw.fif", preload=True, verbose="error")
    raw.save(tmp_path / "sub-01_task-rest_eeg.fif", split_size=1_850_000, split_naming="bids", verbose="error")
    assert _links(tmp_path / "sub-01_task-rest_split-01_eeg.fif") == (None, "sub-01_task-rest_split-02_eeg.fif")
    before, after = _links(tmp_path / "sub-01_task-rest_split-02_eeg.fif")
    assert after == "sub-01_task-rest_split-03_eeg.fif"
    # MNE stores the name the recording was saved under, not its first part's: both are tried.
    assert previous_part_names("sub-01_task-rest_split-02_eeg.fif", before) == [
        "sub-01_task-rest_eeg.fif",
        "sub-01_task-rest_split-01_eeg.fif",
    ]
    (tmp_path / "gz").mkdir()
    raw.save(tmp_path / "gz" / "x_raw.fif.gz", split_size=1_850_000, verbose="error")
    assert next_part_name(str(tmp_path / "gz" / "x_raw.fif.gz")) == "x_raw.fif-1.gz"  # MNE's naming
    with gzip.open(tmp_path / "gz" / "x_raw.fif-1.gz", "rb") as fh:
        assert previous_part(fh).basename == "x_raw.fif.gz"
    assert next_part_name(str(tmp_path / "gz" / "x_raw.fif-1.gz")) == "x_raw.fif-2.gz"
    # Given without its first part, a gzipped later part is a FIF like any other, read from there on.
    with open_recording(tmp_path / "gz" / "x_raw.fif-1.gz") as reader:
        n = reader.info.n_times
        assert 0 < n < raw.n_times and reader.split_parts[0] == "x_raw.fif-1.gz"
        np.testing.assert_allclose(reader.read(), raw.get_data()[:, -n:] * 1e6, rtol=1e-6, atol=1e-6)


def test_the_part_before_is_looked_for_under_the_stored_name_then_by_number():
    ref = PartReference("previous", "/acq/pc/run1_raw-1.fif", 1)
    assert previous_part_names("run1_raw-2.fif", ref) == ["run1_raw-1.fif"]
    assert previous_part_names("renamed-1.fif", PartReference("previous", "", 0)) == ["renamed.fif"]
    assert previous_part_names("a-1.fif.gz", PartReference("previous", "C:\\meg\\a.fif.gz", 0)) == ["a.fif.gz"]
    assert previous_part_names("x.fif", PartReference("previous", "x.fif", 0)) == []


def _eeg_by_site(output):
    """{site folder: [window eeg bytes in start order]}."""
    found = {}
    for shard in output.glob("*/part-*.tfrecord"):
        with open(shard, "rb") as fh:
            examples = [decode_example(r) for r in read_records(fh, "SNAPPY")]
        found.setdefault(shard.parent.name, []).extend(examples)
    return {site: [e.eeg.tobytes() for e in sorted(ex, key=lambda e: e.window_start_s)] for site, ex in found.items()}


def test_a_split_recording_is_read_once_through_its_first_part(split_fif, tmp_path):
    key = tmp_path / "key"
    key.write_bytes(b"0123456789abcdef0123456789abcdef\n")
    # Without its first part, the later ones are read from the first given on.
    partial = tmp_path / "in" / "partial"
    shutil.copytree(split_fif / "split", partial)
    (partial / "rest_raw.fif").unlink()
    shutil.copytree(split_fif / "split", tmp_path / "in" / "split")
    shutil.copytree(split_fif / "whole", tmp_path / "in" / "whole")
    manifest = run(
        [
            "--input",
            str(tmp_path / "in"),
            "--output",
            str(tmp_path / "out"),
            "--pseudonym_key_file",
            str(key),
            "--window_seconds",
            "10",
            "--stride_seconds",
            "10",
            "--no_artifact_model",
            "--keep_paths",
        ]
    )
    inputs = {e["source"].split("/in/", 1)[1]: e for e in manifest["inputs"]}
    n_parts = len(list((split_fif / "split").iterdir()))
    assert len(inputs) == 2 * n_parts - 1 + 1
    split, whole = inputs["split/rest_raw.fif"], inputs["whole/rest_raw.fif"]
    assert split["status"] == whole["status"] == "processed"
    assert split["eeg_seconds"] == whole["eeg_seconds"] > 59.9
    assert split["windows"] == whole["windows"] == 6
    assert split["split_parts"][:2] == ["rest_raw.fif", "rest_raw-1.fif"] and len(split["split_parts"]) == n_parts
    assert whole["split_parts"] == []
    for k in range(1, n_parts):
        assert inputs[f"split/rest_raw-{k}.fif"]["status"] == "ignored"
        assert inputs[f"split/rest_raw-{k}.fif"]["reason"] == (
            f"part {k + 1} of a split FIF recording; its data are read through the first part, rest_raw.fif"
        )
    assert inputs["partial/rest_raw-1.fif"]["status"] == "processed"
    assert inputs["partial/rest_raw-1.fif"]["eeg_seconds"] < split["eeg_seconds"]
    assert inputs["partial/rest_raw-2.fif"]["reason"].endswith("read through the first part, rest_raw-1.fif")
    assert manifest["counts"]["windows"] == 6 + 6 + inputs["partial/rest_raw-1.fif"]["windows"]
    eeg = _eeg_by_site(tmp_path / "out")
    split_site, whole_site = split["site"], whole["site"]
    assert eeg[split_site] == eeg[whole_site]  # the same samples, each window once
