import os

import pytest

from eegfm.pipelines.datasets import LabeledInterval, discover


def _tuab_tree(shared_data, root):
    """The TUH Abnormal corpus's layout over eegmat recordings: edf/{train,eval}/{normal,abnormal}/
    01_tcp_ar/<patient>_<session>_<token>.edf."""
    eegmat = shared_data / "eegmat"
    layout = {
        "train/normal/01_tcp_ar/aaaaaaaq_s001_t000.edf": "Subject00_1.edf",
        "train/normal/01_tcp_ar/aaaaaaaq_s002_t000.edf": "Subject00_2.edf",
        "train/abnormal/01_tcp_ar/aaaaabdn_s001_t001.edf": "Subject01_1.edf",
        "eval/abnormal/01_tcp_ar/aaaaacjb_s003_t000.edf": "Subject02_2.edf",
    }
    for name, source in layout.items():
        (root / "edf" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "edf" / name).symlink_to(eegmat / source)
    return root


def test_tuab_adapter_labels_each_recording_by_its_folder_and_groups_a_patients_sessions(shared_data, tmp_path):
    root = _tuab_tree(shared_data, tmp_path / "tuab")
    items, _, datasets = discover([str(root)])
    assert datasets == {"edf": "tuab"}
    by_name = {os.path.basename(i.path): i for i in items}
    assert {n: i.recording_label for n, i in by_name.items()} == {
        "aaaaaaaq_s001_t000.edf": 0,
        "aaaaaaaq_s002_t000.edf": 0,
        "aaaaabdn_s001_t001.edf": 1,
        "aaaaacjb_s003_t000.edf": 1,
    }
    assert {i.task for i in items} == {"tuab_abnormal"} and {i.dataset for i in items} == {"tuab"}
    assert {n: i.corpus_split for n, i in by_name.items()} == {  # the corpus's own split: its folder
        "aaaaaaaq_s001_t000.edf": "train",
        "aaaaaaaq_s002_t000.edf": "train",
        "aaaaabdn_s001_t001.edf": "train",
        "aaaaacjb_s003_t000.edf": "eval",
    }
    first, second = by_name["aaaaaaaq_s001_t000.edf"], by_name["aaaaaaaq_s002_t000.edf"]
    assert first.subject_key == second.subject_key == "tuh-aaaaaaaq" and first.session_key == "s001"
    # A file of another name is no recording of the corpus: the folder is a plain one, unless named
    (root / "edf" / "train" / "normal" / "notes.edf").symlink_to(shared_data / "eegmat" / "Subject03_1.edf")
    assert discover([str(root)])[2] == {"edf": "edf"}
    items, _, _ = discover([str(root)], dataset="tuab")
    stray = next(i for i in items if i.path.endswith("notes.edf"))
    assert (stray.recording_label, stray.task, stray.dataset) == (-1, "", "edf")
    assert sum(i.recording_label == 1 for i in items) == 2


def test_a_window_takes_the_label_of_the_stretch_it_lies_mostly_in():
    from eegfm.pipelines.datasets import LabeledInterval, interval_label
    from eegfm.pipelines.datasets.tuh import tusz_intervals

    text = (
        "# version = csv_v1.0.0\n# bname = aaaaaaac_s001_t000\n# duration = 62.00 secs\n#\n"
        "channel,start_time,stop_time,label,confidence\n"
        "TERM,0.0000,20.0000,bckg,1.0000\nTERM,20.0000,36.0000,cpsz,1.0000\nTERM,36.0000,50.0000,bckg,1.0000\n"
    )
    events = tusz_intervals(text, "a.csv_bi")
    assert events == (LabeledInterval(0.0, 20.0, 0), LabeledInterval(20.0, 36.0, 1), LabeledInterval(36.0, 50.0, 0))
    assert [interval_label(s, s + 10, events) for s in (0, 10, 20, 30, 40, 50)] == [0, 0, 1, 1, 0, -1]
    assert interval_label(15, 25, events) == 1  # half each: the seizure
    # channel-based rows overlap: their union counts once
    per_channel = (LabeledInterval(20, 24, 1), LabeledInterval(21, 24, 1), LabeledInterval(0, 30, 0))
    assert interval_label(20, 30, per_channel) == 0
    with pytest.raises(ValueError, match=r"^a.csv_bi: line 7, label: expected bckg or a seizure type \(absz, "):
        tusz_intervals(text.replace("cpsz", "spike"), "a.csv_bi")
    with pytest.raises(ValueError, match=r"^a.csv_bi: line 8: start_time, stop_time: expected seconds; got 'x', "):
        tusz_intervals(text.replace("36.0000,50.0000", "x,50.0000"), "a.csv_bi")
    with pytest.raises(ValueError, match=r"^a.csv_bi: line 5: columns: expected .*; missing label"):
        tusz_intervals(text.replace(",label,", ",kind,"), "a.csv_bi")


def test_tusz_adapter_reads_each_recordings_events_and_lists_them_as_read(shared_data, tmp_path):
    root = tmp_path / "tusz" / "edf" / "dev" / "aaaaaaac" / "s001_2002" / "02_tcp_le"
    root.mkdir(parents=True)
    (root / "aaaaaaac_s001_t000.edf").symlink_to(shared_data / "eegmat" / "Subject00_2.edf")
    (root / "aaaaaaac_s001_t000.csv_bi").write_text(
        "channel,start_time,stop_time,label,confidence\nTERM,0.0,30.0,bckg,1.0\nTERM,30.0,62.0,seiz,1.0\n"
    )
    (root / "aaaaaaac_s001_t000.csv").write_text(
        "channel,start_time,stop_time,label,confidence\nFP1-F7,30.0,62.0,fnsz,1.0\n"
    )
    items, ignored, datasets = discover([str(tmp_path / "tusz")])
    assert datasets == {"edf": "tusz"} and len(items) == 1
    item = items[0]
    assert (item.task, item.dataset, item.subject_key, item.session_key) == (
        "tusz_seizure",
        "tusz",
        "tuh-aaaaaaac",
        "s001",
    )
    assert [iv.label for iv in item.intervals] == [0, 1] and item.label_problem == ""  # the .csv_bi, not the .csv
    assert item.corpus_split == "dev"
    assert {os.path.basename(g.path): g.reason for g in ignored} == {
        "aaaaaaac_s001_t000.csv_bi": "metadata sidecar (.csv_bi), read by the data set adapter",
        "aaaaaaac_s001_t000.csv": "metadata sidecar (.csv), read by the data set adapter",
    }


def test_tuar_rows_are_coded_by_artifact_kind_whichever_order_a_pair_is_written_in():
    from eegfm.core.tasks import TUAR_LABELS
    from eegfm.pipelines.datasets import LabeledInterval
    from eegfm.pipelines.datasets.tuh import tuar_intervals

    text = (
        "# version = csv_v1.0.0\n# bname = aaaaaaju_s005_t000\n# duration = 62.00 secs\n"
        "# montage_file = $NEDC_NFC/lib/nedc_eas_default_montage.txt\n#\n"
        "channel,start_time,stop_time,label,confidence\n"
        "FP1-F7,3.0000,5.5000,eyem,1.0000\nFP2-F8,3.2000,5.0000,eyem,1.0000\n"
        "T3-T5,20.0000,31.0000,musc,1.0000\nC3-CZ,40.0000,41.0000,elpp,1.0000\n"
        "F7-T3,44.0000,52.0000,MUSC_EYEM,1.0000\nCZ-C4,55.0000,56.0000,elec_musc,1.0000\n"
    )
    events = tuar_intervals(text, "a.csv")
    code = TUAR_LABELS.index
    assert events == (
        LabeledInterval(3.0, 5.5, code("eyem")),
        LabeledInterval(3.2, 5.0, code("eyem")),
        LabeledInterval(20.0, 31.0, code("musc")),
        LabeledInterval(40.0, 41.0, code("elec")),
        LabeledInterval(44.0, 52.0, code("eyem_musc")),
        LabeledInterval(55.0, 56.0, code("musc_elec")),
    )
    with pytest.raises(
        ValueError,
        match=r"^a.csv: line 9, label: expected an artifact kind \(eyem, chew, shiv, elec, "
        r"musc, .*\); got 'seiz'",
    ):
        tuar_intervals(text.replace("T3-T5,20.0000,31.0000,musc", "T3-T5,20.0000,31.0000,seiz"), "a.csv")
    with pytest.raises(ValueError, match=r"^a.csv: line 7: expected 0 <= start_time < stop_time; got 5, 3"):
        tuar_intervals(text.replace("3.0000,5.5000", "5.0000,3.0000"), "a.csv")


def test_tuar_layout_is_detected_and_its_event_files_listed_as_read(shared_data, tmp_path):
    """TUH Artifact's layout (edf/01_tcp_ar/<patient>_<session>_<token>.edf with its .csv): found by
    auto, one patient per code, no corpus split; a recording without its .csv is processed
    unlabeled under --dataset tuar; beside a .csv_bi the same layout is TUSZ's."""
    root = tmp_path / "tuar" / "edf" / "01_tcp_ar"
    root.mkdir(parents=True)
    for k, name in enumerate(["aaaaaaju_s005_t000", "aaaaaaju_s007_t001", "aaaaakbt_s001_t000"]):
        (root / f"{name}.edf").symlink_to(shared_data / "eegmat" / f"Subject0{k}_2.edf")
        (root / f"{name}.csv").write_text("channel,start_time,stop_time,label,confidence\nFP1-F7,1.0,12.0,chew,1.0\n")
    items, ignored, datasets = discover([str(tmp_path / "tuar")])
    assert datasets == {"edf": "tuar"} and len(items) == 3
    assert {i.task for i in items} == {"tuar_artifact"} and {i.corpus_split for i in items} == {""}
    assert sorted(i.subject_key for i in items) == ["tuh-aaaaaaju", "tuh-aaaaaaju", "tuh-aaaaakbt"]
    assert all(i.intervals == (LabeledInterval(1.0, 12.0, 1),) for i in items)
    assert {g.reason for g in ignored} == {"metadata sidecar (.csv), read by the data set adapter"}
    (root / "aaaaakbt_s001_t000.csv").unlink()
    assert discover([str(tmp_path / "tuar")])[2] == {"edf": "edf"}  # not every recording has its events
    items, _, _ = discover([str(tmp_path / "tuar")], dataset="tuar")
    plain = next(i for i in items if i.path.endswith("aaaaakbt_s001_t000.edf"))
    assert (plain.task, plain.dataset, plain.intervals) == ("", "edf", ())
    for name in ("aaaaaaju_s005_t000", "aaaaaaju_s007_t001"):
        (root / f"{name}.csv_bi").write_text("channel,start_time,stop_time,label,confidence\nTERM,0.0,62.0,bckg,1.0\n")
    (root / "aaaaakbt_s001_t000.edf").unlink()
    assert discover([str(tmp_path / "tuar")])[2] == {"edf": "tusz"}


def test_tuev_events_become_one_window_each_labelled_by_most_of_their_channel_rows():
    from eegfm.pipelines.datasets import LabeledWindow
    from eegfm.pipelines.datasets.tuh import tuev_windows

    text = (
        "7,31.0000000,32.0000000,6\n8,31.0000000,32.0000000,6\n2,31.0000000,32.0000000,3\n"
        "0,0.5000000,1.5000000,4\n1,40.0000000,41.0000000,1\n3,40.0000000,41.0000000,2\n\n"
    )
    events = tuev_windows(text, "a.rec")
    # one window per event, 2 s either side; two bckg rows outvote one pled; a tie goes to spsw
    assert [(w.offset_s, w.duration_s, w.label) for w in events] == [(-1.5, 5.0, 3), (29.0, 5.0, 5), (38.0, 5.0, 0)]
    assert {(w.task, w.slack_s) for w in events} == {("tuev_event", 2.0)}
    assert isinstance(events[0], LabeledWindow)
    with pytest.raises(
        ValueError,
        match=r"^a.rec: line 2, label: expected a code 1-6 \(1 spsw, 2 gped, .*6 bckg\); "
        r"got '7'",
    ):
        tuev_windows(text.replace("8,31.0000000,32.0000000,6", "8,31.0000000,32.0000000,7"), "a.rec")
    with pytest.raises(
        ValueError,
        match=r"^a.rec: line 4: start, stop: expected 0 <= start < stop seconds; "
        r"got 1.5000000, 0.5000000",
    ):
        tuev_windows(text.replace("0.5000000,1.5000000", "1.5000000,0.5000000"), "a.rec")
    with pytest.raises(ValueError, match=r"^a.rec: line 1: expected 4 fields \(channel,start,stop,label\); got 3"):
        tuev_windows("31.0,32.0,6\n", "a.rec")
    with pytest.raises(ValueError, match=r"^a.rec: line 1: expected numbers .*got 'FP1-F7,31.0,32.0,6'"):
        tuev_windows("FP1-F7,31.0,32.0,6\n", "a.rec")
    with pytest.raises(ValueError, match=r"^a.rec: no events"):
        tuev_windows("\n", "a.rec")


def test_tuev_adapter_finds_patients_in_both_naming_schemes_and_lists_the_event_files_as_read(shared_data, tmp_path):
    root = tmp_path / "tuev" / "edf"
    train, evaluation = root / "train" / "aaaaaaar", root / "eval" / "032"
    train.mkdir(parents=True)
    evaluation.mkdir(parents=True)
    (train / "aaaaaaar_00000001.edf").symlink_to(shared_data / "eegmat" / "Subject00_2.edf")
    (evaluation / "spsw_032_a_.edf").symlink_to(shared_data / "eegmat" / "Subject01_2.edf")
    (train / "aaaaaaar_00000001.rec").write_text("0,10.0,11.0,6\n")
    (evaluation / "spsw_032_a_.rec").write_text("0,10.0,11.0,1\n0,20.0,21.0,bad\n")
    items, ignored, datasets = discover([str(root)])
    assert set(datasets.values()) == {"tuev"} and len(items) == 2
    by_name = {os.path.basename(i.path): i for i in items}
    first, second = by_name["aaaaaaar_00000001.edf"], by_name["spsw_032_a_.edf"]
    assert (first.dataset, first.task, first.subject_key) == ("tuev", "tuev_event", "tuh-aaaaaaar")
    assert [(w.offset_s, w.label) for w in first.windows] == [(8.0, 5)] and first.label_problem == ""
    assert second.subject_key == "tuev-032" and second.windows == ()
    assert second.label_problem.startswith("spsw_032_a_.rec: line 2: expected numbers")
    assert {os.path.basename(g.path): g.reason for g in ignored} == {
        name: "TUEV event file (.rec) of the EDF beside it, read by the tuev adapter"
        for name in ("aaaaaaar_00000001.rec", "spsw_032_a_.rec")
    }
    # Without its .rec an EDF is no recording of the corpus: the folder is a plain one
    (train / "aaaaaaar_00000002.edf").symlink_to(shared_data / "eegmat" / "Subject02_2.edf")
    assert discover([str(root / "train")])[2] == {"aaaaaaar": "edf"}


def test_tuep_adapter_labels_each_patients_recordings_by_its_diagnosis_folder(shared_data, tmp_path):
    root = tmp_path / "tuh_eeg_epilepsy" / "v2.0.1"
    for folder, patient, source in (
        ("00_epilepsy", "aaaaaanr", "Subject00_2.edf"),
        ("01_no_epilepsy", "aaaaaebo", "Subject01_2.edf"),
    ):
        leaf = root / folder / patient / "s001_2003" / "02_tcp_le"
        leaf.mkdir(parents=True)
        (leaf / f"{patient}_s001_t001.edf").symlink_to(shared_data / "eegmat" / source)
    items, _, used = discover([str(root)])
    assert set(used.values()) == {"tuep"}
    assert sorted((i.subject_key, i.session_key, i.task, i.recording_label) for i in items) == [
        ("tuh-aaaaaanr", "s001", "tuep_epilepsy", 1),
        ("tuh-aaaaaebo", "s001", "tuep_epilepsy", 0),
    ]
