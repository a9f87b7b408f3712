"""BIDS: the adapter's layout; its sidecars: which apply (inheritance), what they say (bad channels,
mains frequency), and what the job does with them on real recordings."""

import glob
import json
import os

import numpy as np
import pytest

from eegfm.contract import schema
from eegfm.contract.tfrecord import read_records
from eegfm.pipelines.datasets import discover
from eegfm.pipelines.datasets.bids import SidecarError, SidecarIndex, parse_name, sidecar_info
from eegfm.pipelines.job.preprocess import run
from eegfm.pipelines.readers import open_recording
from eegfm.pipelines.signal.harmonize import harmonize, plan_harmonization

RECORDING = "ds/sub-01/ses-a/eeg/sub-01_ses-a_task-rest_run-1_eeg.edf"


def test_bids_names_parse_into_entities_suffix_and_extension():
    assert parse_name(RECORDING) == ({"sub": "01", "ses": "a", "task": "rest", "run": "1"}, "eeg", ".edf")
    assert parse_name("ds/task-rest_eeg.json") == ({"task": "rest"}, "eeg", ".json")
    assert parse_name("ds/participants.tsv") == ({}, "participants", ".tsv")
    assert parse_name("ds/Subject00_1.edf") is None  # not key-value entities


def test_sidecars_apply_by_the_inheritance_principle():
    files = [
        RECORDING,
        "ds/task-rest_eeg.json",  # data set level
        "ds/task-motor_eeg.json",  # another task
        "ds/sub-01/sub-01_task-rest_eeg.json",  # subject level
        "ds/sub-01/ses-a/eeg/sub-01_ses-a_task-rest_eeg.json",  # all runs of the session
        "ds/sub-01/ses-a/eeg/sub-01_ses-a_task-rest_run-1_channels.tsv",
        "ds/sub-01/ses-a/eeg/sub-01_ses-a_task-rest_run-2_channels.tsv",  # another run
        "ds/sub-01/ses-a/eeg/sub-01_ses-a_task-rest_channels.tsv",  # farther (fewer entities)
        "ds/sub-02/sub-02_task-rest_eeg.json",  # another subject's folder
        "ds/sub-01/ses-a/eeg/sub-01_ses-a_task-rest_run-1_events.tsv",  # not a kind that is read
    ]
    index = SidecarIndex(files)
    assert index.applicable(RECORDING, "eeg", ".json") == [
        "ds/task-rest_eeg.json",
        "ds/sub-01/sub-01_task-rest_eeg.json",
        "ds/sub-01/ses-a/eeg/sub-01_ses-a_task-rest_eeg.json",
    ]
    assert index.applicable(RECORDING, "channels", ".tsv") == [
        "ds/sub-01/ses-a/eeg/sub-01_ses-a_task-rest_channels.tsv",
        "ds/sub-01/ses-a/eeg/sub-01_ses-a_task-rest_run-1_channels.tsv",
    ]
    assert index.applicable("ds/sub-02/eeg/sub-02_task-motor_eeg.edf", "eeg", ".json") == ["ds/task-motor_eeg.json"]


def test_sidecars_give_bad_channels_and_the_nearest_power_line_frequency():
    channels = (
        "c.tsv",
        "name\ttype\tunits\tstatus\nEEG Fp1\tEEG\tuV\tbad\nEEG Fp2\tEEG\tuV\tgood\n"
        "EEG O2\tEEG\tuV\tBAD\nECG\tECG\tuV\tn/a\n",
    )
    info = sidecar_info(
        channels,
        [
            ("far.json", '{"PowerLineFrequency": 50}'),
            ("near.json", '{"PowerLineFrequency": 60.0, "SamplingFrequency": 500}'),
        ],
    )
    assert info.bad_channels == ("EEG Fp1", "EEG O2") and info.line_freq == 60
    assert sidecar_info(
        ("c.tsv", "name\ttype\tunits\nFp1\tEEG\tuV\n"), [("e.json", '{"PowerLineFrequency": "n/a"}')]
    ) == sidecar_info(None, [])  # no status column, n/a: nothing known
    for channels, jsons, message in [
        (("c.tsv", "label\ttype\nFp1\tEEG\n"), [], "c.tsv: no 'name' column (columns: label, type)"),
        (
            ("c.tsv", "name\tstatus\nFp1\tgood\nFp2\tbroken\n"),
            [],
            "c.tsv: line 3, status: expected one of 'good', 'bad', 'n/a'; got 'broken'",
        ),
        (
            None,
            [("e.json", '{"PowerLineFrequency": 400}')],
            'e.json: PowerLineFrequency: expected 50, 60 or "n/a"; got 400',
        ),
        (
            None,
            [("a.json", '{"PowerLineFrequency": 50}'), ("e.json", '{"PowerLineFrequency": "fifty"}')],
            "e.json: PowerLineFrequency: expected 50, 60",
        ),
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
    with pytest.raises(
        ValueError,
        match=r"marked bad and left out: EEG Fp1; constant from start to end \(not "
        r"recorded\), left out: EEG O2$",
    ):
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
        "name\ttype\tunits\tstatus\nEEG Fp1\tEEG\tuV\tbad\nEEG Cz\tEEG\tuV\tgood\nEEG O2\tEEG\tuV\tbad\n"
    )
    (root / "sub-02" / "eeg" / "sub-02_task-arith_eeg.json").write_text('{"PowerLineFrequency": 60}')
    (root / "sub-03" / "eeg" / "sub-03_task-arith_channels.tsv").write_text("label\ttype\nEEG Fp1\tEEG\n")
    key = tmp_path / "key"
    key.write_bytes(b"0123456789abcdef0123456789abcdef\n")
    manifest = run(
        [
            "--input",
            str(root),
            "--output",
            str(tmp_path / "out"),
            "--pseudonym_key_file",
            str(key),
            "--dataset",
            "bids",
            "--no_artifact_model",
            "--runner",
            "DirectRunner",
            "--direct_running_mode",
            "in_memory",
            "--keep_paths",
        ]
    )
    inputs = {os.path.basename(e["source"]): e for e in manifest["inputs"] if "source" in e}
    first, second, third = (inputs[f"sub-0{n}_task-arith_eeg.edf"] for n in (1, 2, 3))
    assert first["status"] == "processed" and first["marked_bad"] == ["EEG Fp1", "EEG O2"]
    assert first["interpolated"] == ["Fp1", "O2"] and first["line_freq"] == 50  # data set level sidecar
    assert second["status"] == "processed" and second["marked_bad"] == [] and second["line_freq"] == 60
    assert (third["status"], third["stage"]) == ("quarantined", "sidecar")
    assert third["reason"] == (
        "sub-03_task-arith_eeg.edf: sub-03_task-arith_channels.tsv: no 'name' column "
        "(columns: label, type); a BIDS channels.tsv starts with name, type, units"
    )
    quarantine = [json.loads(line) for line in (tmp_path / "out" / "quarantine.jsonl").read_text().splitlines()]
    assert [(q["stage"], os.path.basename(q["path"])) for q in quarantine if q["kind"] != "ignored"] == [
        ("sidecar", "sub-03_task-arith_eeg.edf")
    ]
    masks = {}
    for path in glob.glob(str(tmp_path / "out" / "*" / "part-*.tfrecord")):
        for raw in read_records(path):
            record = schema.decode_example(raw)
            masks.setdefault(record.source_sha256.decode(), set()).add(tuple(record.channel_mask.tolist()))
    expected = tuple(0 if c in ("Fp1", "O2") else 1 for c in schema.CHANNELS)
    assert masks[first["source_sha256"]] == {expected}
    assert masks[second["source_sha256"]] == {(1,) * 19}


def _mgh70_head():
    """MGH's 70-electrode cap as digitized in a head frame (CapTrak: x toward the right ear, y
    toward the nasion; metres): its channels 'EEG 001' ..., their positions and the fiducials."""
    import mne
    from mne.io.constants import FIFF

    montage = mne.channels.make_standard_montage("mgh70")
    names = [label.replace("EEG", "EEG ") for label in montage.ch_names]
    montage.rename_channels(dict(zip(montage.ch_names, names)))
    info = mne.create_info(names, 100.0, "eeg")
    info.set_montage(montage)
    positions = {ch["ch_name"]: np.asarray(ch["loc"][:3]) for ch in info["chs"]}
    fiducials = {d["ident"]: np.asarray(d["r"]) for d in info["dig"] if d["kind"] == FIFF.FIFFV_POINT_CARDINAL}
    return positions, {
        "NAS": fiducials[FIFF.FIFFV_POINT_NASION],
        "LPA": fiducials[FIFF.FIFFV_POINT_LPA],
        "RPA": fiducials[FIFF.FIFFV_POINT_RPA],
    }


def _electrodes_tsv(positions, scale=1000.0, turn=lambda p: p, extra=""):
    rows = "".join(
        f"{name}\t" + "\t".join(f"{v:.3f}" for v in turn(p) * scale) + "\tcup\n" for name, p in positions.items()
    )
    return "name\tx\ty\tz\ttype\n" + rows + "EEG 071\tn/a\tn/a\tn/a\tcup\n" + extra


def test_electrodes_tsv_places_a_caps_numbered_channels_by_their_head_frame_whatever_its_axes():
    from eegfm.pipelines.datasets.bids import electrode_positions
    from eegfm.pipelines.signal.harmonize import map_channels

    positions, fiducials = _mgh70_head()
    names = list(positions)
    by_layout = map_channels(names, "mgh70").canonical

    def sites(electrodes, coordsystem):
        digitized, why = electrode_positions(
            ("sub-01_electrodes.tsv", electrodes), ("sub-01_coordsystem.json", json.dumps(coordsystem))
        )
        assert why == "" and digitized is not None
        cmap = map_channels(names, "file", digitized)
        assert cmap.cap.startswith("file-")
        return cmap.canonical

    def agreement(canonical):
        return {site for site, i in canonical.items() if by_layout.get(site) == i}

    captrak = {"EEGCoordinateSystem": "CapTrak", "EEGCoordinateUnits": "mm"}
    landmark_rows = "".join(
        f"{k}\t" + "\t".join(f"{v:.3f}" for v in p * 1000) + "\tfiducial\n" for k, p in fiducials.items()
    )
    # the fiducials as rows, as coordsystem landmarks (in cm), or only implied by CapTrak's axes
    as_rows = sites(_electrodes_tsv(positions, extra=landmark_rows), captrak)
    as_landmarks = sites(
        _electrodes_tsv(positions),
        {
            **captrak,
            "AnatomicalLandmarkCoordinates": {k: list(p * 100) for k, p in fiducials.items()},
            "AnatomicalLandmarkCoordinateSystem": "CapTrak",
            "AnatomicalLandmarkCoordinateUnits": "cm",
        },
    )
    by_axes = sites(_electrodes_tsv(positions), captrak)
    # EEGLAB's frame: x toward the nasion, y toward the left ear, units not stated (metres by size)
    eeglab = sites(
        _electrodes_tsv(positions, scale=1.0, turn=lambda p: np.array([p[1], -p[0], p[2]])),
        {"EEGCoordinateSystem": "EEGLAB", "EEGCoordinateUnits": "n/a"},
    )
    assert as_rows == as_landmarks and len(agreement(as_rows)) >= 14
    # electrodes.tsv may name the electrodes without the recording's prefix ('001' for 'EEG 001')
    bare = {name.replace("EEG ", ""): p for name, p in positions.items()}
    assert sites(_electrodes_tsv(bare), captrak) == by_axes
    for canonical in (as_rows, by_axes, eeglab):
        # where the fiducials are implied, a site or two near the 7 degree limit may go, none moves
        assert not {site for site, i in canonical.items() if site in by_layout and by_layout[site] != i}
        assert len(agreement(canonical)) >= 12 and {
            "Cz",
            "Fz",
            "Pz",
            "Fp1",
            "Fp2",
            "O1",
            "O2",
            "C3",
            "C4",
        } <= agreement(canonical)
        assert names[canonical["Cz"]] == "EEG 034"


def test_electrodes_tsv_without_a_head_frame_or_malformed_is_refused_naming_the_file_and_field():
    from eegfm.pipelines.datasets.bids import electrode_positions

    positions, _ = _mgh70_head()
    digitized, why = electrode_positions(
        ("e.tsv", _electrodes_tsv(positions)),
        ("c.json", '{"EEGCoordinateSystem": "MNI152NLin2009cAsym", "EEGCoordinateUnits": "mm"}'),
    )
    assert digitized is None and why == (
        "e.tsv: positions in the 'MNI152NLin2009cAsym' coordinate system (c.json), with no nasion and ears "
        "(NAS, LPA and RPA rows, or AnatomicalLandmarkCoordinates) to place them on the head by"
    )
    assert electrode_positions(("e.tsv", _electrodes_tsv(positions)), None)[0] is None  # no system named
    with pytest.raises(SidecarError, match=r"^e.tsv: line 3, y: expected a number or 'n/a'; got '1,5'$"):
        electrode_positions(("e.tsv", "name\tx\ty\tz\nE1\t1\t2\t3\nE2\t1\t1,5\t3\n"), None)
    with pytest.raises(
        SidecarError,
        match=r"^e.tsv: columns: expected name, x, y, z \(then optional ones\); "
        r"got name, X, Y, Z$",
    ):
        electrode_positions(("e.tsv", "name\tX\tY\tZ\nE1\t1\t2\t3\n"), None)
    with pytest.raises(
        SidecarError,
        match=r"^c.json: EEGCoordinateUnits: expected one of 'm', 'cm', 'mm', 'n/a'; "
        r"got 'inch'$",
    ):
        electrode_positions(("e.tsv", _electrodes_tsv(positions)), ("c.json", '{"EEGCoordinateUnits": "inch"}'))


def test_electrodes_and_coordsystem_apply_across_their_space_entity():
    files = [
        "ds/sub-01/eeg/sub-01_task-rest_eeg.edf",
        "ds/sub-01/eeg/sub-01_space-CapTrak_electrodes.tsv",
        "ds/sub-01/eeg/sub-01_space-CapTrak_coordsystem.json",
        "ds/sub-02/eeg/sub-02_space-CapTrak_electrodes.tsv",
    ]
    index = SidecarIndex(files, kinds=(("electrodes", ".tsv"), ("coordsystem", ".json")))
    assert index.applicable(files[0], "electrodes", ".tsv") == [files[1]]
    assert index.applicable(files[0], "coordsystem", ".json") == [files[2]]


def test_the_job_places_a_bids_recordings_numbered_channels_by_its_electrodes_tsv(shared_data, tmp_path):
    # eegmat's 19 channels spread over MGH's 70-electrode cap, saved as EDF channels 'EEG 001' ...
    # in a BIDS data set whose electrodes.tsv says where each sat (CapTrak, mm).
    from tests.pipelines.job.test_process import _spread, _ten_twenty, _write_edf

    positions, fiducials = _mgh70_head()
    eeg = _ten_twenty(shared_data / "eegmat" / "Subject00_2.edf")
    spread = _spread(eeg, "mgh70", [name.replace(" ", "") for name in positions])
    root = tmp_path / "ds"
    (root / "dataset_description.json").parent.mkdir(parents=True)
    (root / "dataset_description.json").write_text('{"Name": "a cap", "BIDSVersion": "1.9.0"}')
    systems = {
        "01": {"EEGCoordinateSystem": "CapTrak", "EEGCoordinateUnits": "mm"},
        "02": {"EEGCoordinateSystem": "MNI305", "EEGCoordinateUnits": "mm"},
        "03": {"EEGCoordinateSystem": "CapTrak", "EEGCoordinateUnits": "mm"},
    }
    for sub, system in systems.items():
        folder = root / f"sub-{sub}" / "eeg"
        folder.mkdir(parents=True)
        start = 1000 * int(sub)  # not the same recording three times (duplicates are left out)
        _write_edf(folder / f"sub-{sub}_task-arith_eeg.edf", list(positions), spread[:, start : start + 30000])
        text = _electrodes_tsv(positions)
        (folder / f"sub-{sub}_space-{system['EEGCoordinateSystem']}_electrodes.tsv").write_text(
            text if sub != "03" else text.replace("cup\n", "cup\nEEG 000\t1,5\t0\t0\tcup\n", 1)
        )
        (folder / f"sub-{sub}_space-{system['EEGCoordinateSystem']}_coordsystem.json").write_text(json.dumps(system))
    key = tmp_path / "key"
    key.write_bytes(b"0123456789abcdef0123456789abcdef\n")
    args = [
        "--input",
        str(root),
        "--pseudonym_key_file",
        str(key),
        "--dataset",
        "bids",
        "--no_artifact_model",
        "--runner",
        "DirectRunner",
        "--direct_running_mode",
        "in_memory",
        "--keep_paths",
    ]
    manifest = run([*args, "--output", str(tmp_path / "out"), "--montage", "file"])
    inputs = {os.path.basename(e["source"])[:6]: e for e in manifest["inputs"] if "source" in e}
    placed, unplaced, malformed = inputs["sub-01"], inputs["sub-02"], inputs["sub-03"]
    assert placed["status"] == "processed" and placed["cap"] == "file" and placed["cap_sites"]["Cz"] == "EEG 034"
    assert placed["cap_sites"]["Fp1"] == "EEG 001" and len(placed["cap_sites"]) >= 14
    assert (unplaced["status"], unplaced["stage"]) == ("quarantined", "harmonize")
    assert unplaced["reason"].endswith(
        "sub-02_space-MNI305_electrodes.tsv: positions in the 'MNI305' coordinate system "
        "(sub-02_space-MNI305_coordsystem.json), with no nasion and ears (NAS, LPA and RPA rows, or "
        "AnatomicalLandmarkCoordinates) to place them on the head by"
    )
    assert (malformed["status"], malformed["stage"]) == ("quarantined", "sidecar")
    assert malformed["reason"].endswith(
        "sub-03_space-CapTrak_electrodes.tsv: line 3, x: expected a number or 'n/a'; got '1,5'"
    )
    # Without --montage file the sidecars are not read: numbered channels, quarantined as before
    manifest = run([*args, "--output", str(tmp_path / "names")])
    assert {(e["status"], e.get("stage")) for e in manifest["inputs"] if e.get("source", "").endswith(".edf")} == {
        ("quarantined", "harmonize")
    }


def test_bids_layout_takes_subjects_sessions_and_participants_tsv(tmp_path, shared_data):
    root = tmp_path / "ds"
    for sub, ses, src in [
        ("01", "a", "Subject00_1.edf"),
        ("01", "b", "Subject00_2.edf"),
        ("02", "a", "Subject01_1.edf"),
    ]:
        eeg = root / f"sub-{sub}" / f"ses-{ses}" / "eeg"
        eeg.mkdir(parents=True, exist_ok=True)
        (eeg / f"sub-{sub}_ses-{ses}_task-rest_eeg.edf").symlink_to(shared_data / "eegmat" / src)
        (eeg / f"sub-{sub}_ses-{ses}_task-rest_eeg.json").write_text("{}")
    (root / "dataset_description.json").write_text('{"Name": "test", "BIDSVersion": "1.8.0"}')
    (root / "participants.tsv").write_text("participant_id\tage\tsex\nsub-01\t34\tF\nsub-02\t97\tmale\n")
    items, ignored, datasets = discover([str(root)], site="hospital-x")
    assert datasets == {"ds": "bids"} and len(items) == 3
    by_path = {i.path.rsplit("/", 1)[1]: i for i in items}
    first = by_path["sub-01_ses-a_task-rest_eeg.edf"]
    assert (first.subject_key, first.session_key, first.task) == ("01", "a", "rest")
    assert (first.age, first.sex, first.site) == (34.0, "F", "hospital-x")
    assert (by_path["sub-02_ses-a_task-rest_eeg.edf"].age, by_path["sub-02_ses-a_task-rest_eeg.edf"].sex) == (90.0, "M")
    assert len([g for g in ignored if g.path.endswith("_eeg.json")]) == 3
    unnamed, _, _ = discover([str(root)])
    assert {i.site for i in unnamed} == {"ds"}

    # BIDS writes ages over 89 as "89+" to de-identify them; some data sets leave out "sub-".
    (root / "participants.tsv").write_text("participant_id\tage\tsex\n01\t89+\tF\nsub-02\tn/a\tn/a\n")
    ages = {(i.subject_key, i.age, i.sex) for i in discover([str(root)])[0]}
    assert ages == {("01", 89.0, "F"), ("02", None, "")}


def test_bids_sourcedata_and_derivatives_are_not_read_as_more_recordings(tmp_path, shared_data):
    """OpenNeuro data sets ship the files they were converted from (sourcedata/) and processed
    versions (derivatives/, often a BIDS data set of its own): the same recordings again."""
    root = tmp_path / "ds"
    recording = shared_data / "eegmat" / "Subject00_2.edf"
    layout = [
        "sub-01/eeg/sub-01_task-rest_eeg.edf",
        "sourcedata/sub-01/eeg/sub-01_task-rest_eeg.edf",
        "derivatives/clean/sub-01/eeg/sub-01_task-rest_desc-clean_eeg.edf",
        "code/example.edf",
    ]
    for name in layout:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).symlink_to(recording)
    (root / "dataset_description.json").write_text('{"Name": "t", "BIDSVersion": "1.8.0"}')
    (root / "derivatives" / "clean" / "dataset_description.json").write_text(
        '{"Name": "c", "DatasetType": "derivative"}'
    )
    items, ignored, datasets = discover([str(root)])
    assert datasets == {"ds": "bids"} and [i.path for i in items] == [str(root / layout[0])]
    why = {g.path[len(str(root)) + 1 :]: g.reason for g in ignored}
    assert why[layout[1]] == (
        f"in the BIDS folder sourcedata/, the files the data set's recordings were converted "
        f"from, not one of its raw recordings; give {root}/sourcedata as --input to process "
        f"it on its own"
    )
    assert why[layout[2]].startswith("in the BIDS folder derivatives/, processed versions of the data set's")
    assert why[layout[3]].startswith("in the BIDS folder code/")
    # Given as the input, a derivative data set is read as one.
    derived, _, _ = discover([str(root / "derivatives" / "clean")])
    assert [i.path for i in derived] == [str(root / layout[2])]
