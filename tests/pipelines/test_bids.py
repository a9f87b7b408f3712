"""BIDS sidecars: which apply (inheritance), what they say (bad channels, mains frequency), and
what the job does with them on real recordings."""

import glob
import json
import os

import numpy as np
import pytest

from pipelines import schema
from pipelines.bids import SidecarError, SidecarIndex, parse_name, sidecar_info
from pipelines.harmonize import harmonize, plan_harmonization
from pipelines.preprocess import run
from pipelines.readers import open_recording
from pipelines.tfrecord import read_records

RECORDING = "ds/sub-01/ses-a/eeg/sub-01_ses-a_task-rest_run-1_eeg.edf"


def test_bids_names_parse_into_entities_suffix_and_extension():
    assert parse_name(RECORDING) == ({"sub": "01", "ses": "a", "task": "rest", "run": "1"}, "eeg", ".edf")
    assert parse_name("ds/task-rest_eeg.json") == ({"task": "rest"}, "eeg", ".json")
    assert parse_name("ds/participants.tsv") == ({}, "participants", ".tsv")
    assert parse_name("ds/Subject00_1.edf") is None  # not key-value entities


def test_sidecars_apply_by_the_inheritance_principle():
    files = [
        RECORDING,
        "ds/task-rest_eeg.json",                                       # data set level
        "ds/task-motor_eeg.json",                                      # another task
        "ds/sub-01/sub-01_task-rest_eeg.json",                         # subject level
        "ds/sub-01/ses-a/eeg/sub-01_ses-a_task-rest_eeg.json",         # all runs of the session
        "ds/sub-01/ses-a/eeg/sub-01_ses-a_task-rest_run-1_channels.tsv",
        "ds/sub-01/ses-a/eeg/sub-01_ses-a_task-rest_run-2_channels.tsv",  # another run
        "ds/sub-01/ses-a/eeg/sub-01_ses-a_task-rest_channels.tsv",     # farther (fewer entities)
        "ds/sub-02/sub-02_task-rest_eeg.json",                         # another subject's folder
        "ds/sub-01/ses-a/eeg/sub-01_ses-a_task-rest_run-1_events.tsv",  # not a kind that is read
    ]
    index = SidecarIndex(files)
    assert index.applicable(RECORDING, "eeg", ".json") == [
        "ds/task-rest_eeg.json", "ds/sub-01/sub-01_task-rest_eeg.json",
        "ds/sub-01/ses-a/eeg/sub-01_ses-a_task-rest_eeg.json"]
    assert index.applicable(RECORDING, "channels", ".tsv") == [
        "ds/sub-01/ses-a/eeg/sub-01_ses-a_task-rest_channels.tsv",
        "ds/sub-01/ses-a/eeg/sub-01_ses-a_task-rest_run-1_channels.tsv"]
    assert index.applicable("ds/sub-02/eeg/sub-02_task-motor_eeg.edf", "eeg", ".json") == ["ds/task-motor_eeg.json"]


def test_sidecars_give_bad_channels_and_the_nearest_power_line_frequency():
    channels = ("c.tsv", "name\ttype\tunits\tstatus\nEEG Fp1\tEEG\tuV\tbad\nEEG Fp2\tEEG\tuV\tgood\n"
                         "EEG O2\tEEG\tuV\tBAD\nECG\tECG\tuV\tn/a\n")
    info = sidecar_info(channels, [("far.json", '{"PowerLineFrequency": 50}'),
                                   ("near.json", '{"PowerLineFrequency": 60.0, "SamplingFrequency": 500}')])
    assert info.bad_channels == ("EEG Fp1", "EEG O2") and info.line_freq == 60
    assert sidecar_info(("c.tsv", "name\ttype\tunits\nFp1\tEEG\tuV\n"), [("e.json", '{"PowerLineFrequency": "n/a"}')]) \
        == sidecar_info(None, [])  # no status column, n/a: nothing known
    for channels, jsons, message in [
        (("c.tsv", "label\ttype\nFp1\tEEG\n"), [], "c.tsv: no 'name' column (columns: label, type)"),
        (("c.tsv", "name\tstatus\nFp1\tgood\nFp2\tbroken\n"), [],
         "c.tsv: line 3, status: expected one of 'good', 'bad', 'n/a'; got 'broken'"),
        (None, [("e.json", '{"PowerLineFrequency": 400}')], 'e.json: PowerLineFrequency: expected 50, 60 or "n/a"; got 400'),
        (None, [("a.json", '{"PowerLineFrequency": 50}'), ("e.json", '{"PowerLineFrequency": "fifty"}')],
         "e.json: PowerLineFrequency: expected 50, 60"),
        (None, [("e.json", '{"PowerLineFrequency": 50,}')], "e.json: not valid JSON"),
        (None, [("e.json", "[50]")], "e.json: expected a JSON object; got list"),
    ]:
        with pytest.raises(SidecarError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
            sidecar_info(channels, jsons)


def test_a_channel_marked_bad_is_interpolated_not_used(shared_data):
    with open_recording(str(shared_data / "eegmat" / "Subject00_2.edf")) as reader:
        names, data = reader.info.ch_names, reader.read(0, 5000)
    kept = harmonize(data, names, plan=plan_harmonization(names))
    cmap, matrix = plan_harmonization(names, exclude=["EEG Fp1", "EEG O2"])
    assert cmap.missing == ("Fp1", "O2") and matrix.shape[0] == 2
    left_out = harmonize(data, names, plan=(cmap, matrix))
    fp1, o2 = schema.CHANNELS.index("Fp1"), schema.CHANNELS.index("O2")
    assert left_out.channel_mask[[fp1, o2]].tolist() == [0, 0] and left_out.channel_mask.sum() == 17
    others = [i for i in range(19) if i not in (fp1, o2)]
    np.testing.assert_array_equal(left_out.data[others], kept.data[others])
    # The interpolated Fp1 follows the measured one (frontal activity spreads) without being it.
    assert not np.allclose(left_out.data[fp1], kept.data[fp1])
    assert np.corrcoef(left_out.data[fp1], kept.data[fp1])[0, 1] > 0.5
    with pytest.raises(ValueError, match="marked bad and left out: EEG Fp1, EEG O2"):
        plan_harmonization(names, min_channels=18, exclude=["EEG Fp1", "EEG O2"])
    # Constant channels are left out the same way, and named as such.
    assert plan_harmonization(names, exclude=["EEG Fp1"], constant=["EEG O2"])[0].missing == ("Fp1", "O2")
    with pytest.raises(ValueError, match=r"marked bad and left out: EEG Fp1; constant from start to end \(not "
                                         r"recorded\), left out: EEG O2$"):
        plan_harmonization(names, min_channels=18, exclude=["EEG Fp1"], constant=["EEG O2"])


def test_the_job_applies_bids_sidecars_and_quarantines_a_malformed_one(shared_data, tmp_path):
    root = tmp_path / "ds"
    for sub, src in (("01", "Subject00_2.edf"), ("02", "Subject01_2.edf"), ("03", "Subject02_2.edf")):
        (root / f"sub-{sub}" / "eeg").mkdir(parents=True)
        (root / f"sub-{sub}" / "eeg" / f"sub-{sub}_task-arith_eeg.edf").symlink_to(shared_data / "eegmat" / src)
    (root / "dataset_description.json").write_text('{"Name": "eegmat as BIDS", "BIDSVersion": "1.9.0"}')
    (root / "participants.tsv").write_text("participant_id\tage\tsex\nsub-01\t21\tF\n")
    (root / "task-arith_eeg.json").write_text('{"PowerLineFrequency": 50, "SamplingFrequency": 500}')
    (root / "sub-01" / "eeg" / "sub-01_task-arith_channels.tsv").write_text(
        "name\ttype\tunits\tstatus\nEEG Fp1\tEEG\tuV\tbad\nEEG Cz\tEEG\tuV\tgood\nEEG O2\tEEG\tuV\tbad\n")
    (root / "sub-02" / "eeg" / "sub-02_task-arith_eeg.json").write_text('{"PowerLineFrequency": 60}')
    (root / "sub-03" / "eeg" / "sub-03_task-arith_channels.tsv").write_text("label\ttype\nEEG Fp1\tEEG\n")
    key = tmp_path / "key"
    key.write_bytes(b"0123456789abcdef0123456789abcdef\n")
    manifest = run(["--input", str(root), "--output", str(tmp_path / "out"), "--pseudonym_key_file", str(key),
                    "--dataset", "bids", "--no_artifact_model", "--runner", "DirectRunner",
                    "--direct_running_mode", "in_memory"])
    inputs = {os.path.basename(e["source"]): e for e in manifest["inputs"] if "source" in e}
    first, second, third = (inputs[f"sub-0{n}_task-arith_eeg.edf"] for n in (1, 2, 3))
    assert first["status"] == "processed" and first["marked_bad"] == ["EEG Fp1", "EEG O2"]
    assert first["interpolated"] == ["Fp1", "O2"] and first["line_freq"] == 50  # data set level sidecar
    assert second["status"] == "processed" and second["marked_bad"] == [] and second["line_freq"] == 60
    assert (third["status"], third["stage"]) == ("quarantined", "sidecar")
    assert third["reason"] == ("sub-03_task-arith_eeg.edf: sub-03_task-arith_channels.tsv: no 'name' column "
                               "(columns: label, type); a BIDS channels.tsv starts with name, type, units")
    quarantine = [json.loads(line) for line in (tmp_path / "out" / "quarantine.jsonl").read_text().splitlines()]
    assert [(q["stage"], os.path.basename(q["path"])) for q in quarantine if q["kind"] != "ignored"] \
        == [("sidecar", "sub-03_task-arith_eeg.edf")]
    masks = {}
    for path in glob.glob(str(tmp_path / "out" / "*" / "part-*.tfrecord")):
        for raw in read_records(path):
            record = schema.decode_example(raw)
            masks.setdefault(record.source_sha256.decode(), set()).add(tuple(record.channel_mask.tolist()))
    expected = tuple(0 if c in ("Fp1", "O2") else 1 for c in schema.CHANNELS)
    assert masks[first["source_sha256"]] == {expected}
    assert masks[second["source_sha256"]] == {(1,) * 19}
