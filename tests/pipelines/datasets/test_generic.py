import posixpath

from eegfm.pipelines.datasets import discover


def test_labels_csv_labels_recordings_and_event_windows_by_task(tmp_path, shared_data, caplog):
    for n in range(4):
        (tmp_path / "site-a").mkdir(exist_ok=True)
        (tmp_path / "site-a" / f"rec{n}.edf").symlink_to(shared_data / "eegmat" / f"Subject0{n}_2.edf")
    (tmp_path / "labels.csv").write_text(
        "path,patient_id,task,label,start_s,duration_s\n"
        "site-a/rec0.edf,p0,abnormal,1,,\n"  # line 2: the whole recording
        "site-a/rec1.edf,p1,spike,1,10.5,2\n"  # lines 3-5: event windows
        "site-a/rec1.edf,p1,spike,0,30,2\n"
        "site-a/rec1.edf,p1,spike,x,40,2\n"
        "site-a/rec2.edf,,abnormal,1.5,,\n"  # line 6: not a class index
        "site-a/rec3.edf,,abnormal,0,,\n"  # lines 7-8: two recording labels
        "site-a/rec3.edf,,abnormal,1,,\n"
        "site-a/gone.edf,,abnormal,1,,\n"
    )
    items, _, datasets = discover([str(tmp_path)])
    by_name = {posixpath.basename(i.path): i for i in items}
    assert set(datasets.values()) == {"edf"} and len(items) == 4
    rec0 = by_name["rec0.edf"]
    assert (rec0.task, rec0.recording_label, rec0.windows, rec0.subject_key) == ("abnormal", 1, (), "p0")
    rec1 = by_name["rec1.edf"]
    assert rec1.recording_label == -1 and [(w.offset_s, w.duration_s, w.label, w.task) for w in rec1.windows[:2]] == [
        (10.5, 2.0, 1, "spike"),
        (30.0, 2.0, 0, "spike"),
    ]
    assert rec1.windows[2].problem == "labels.csv line 5: label: expected a number >= 0; got 'x'"
    assert by_name["rec2.edf"].windows[0].problem == (
        "labels.csv line 6: label: expected an integer >= 0 (a class index); got '1.5'"
    )
    rec3 = by_name["rec3.edf"]
    assert (rec3.task, rec3.recording_label) == ("abnormal", 0)
    assert rec3.windows[0].problem == (
        "labels.csv line 8: path: site-a/rec3.edf has a label for the whole recording "
        "already (labels.csv line 7); one per recording"
    )
    assert "labels.csv: 1 labeled file(s) are not among the input recordings, e.g. " in caplog.text
    assert caplog.text.count("not among the input recordings") == 1


def test_labels_csv_paths_written_on_windows_or_with_dots_name_the_same_file(tmp_path, shared_data):
    (tmp_path / "site-a").mkdir()
    for n in range(3):
        (tmp_path / "site-a" / f"r{n}.edf").symlink_to(shared_data / "eegmat" / f"Subject0{n}_2.edf")
    (tmp_path / "labels.csv").write_text(
        f"path,task,label\nsite-a\\r0.edf,abnormal,1\n./site-a/r1.edf,abnormal,0\n{tmp_path}/site-a/r2.edf,abnormal,1\n"
    )
    items, _, _ = discover([str(tmp_path)])
    assert {posixpath.basename(i.path): i.recording_label for i in items} == {"r0.edf": 1, "r1.edf": 0, "r2.edf": 1}


def test_label_rows_name_what_is_missing():
    from eegfm.pipelines.datasets.generic import label_row

    assert label_row({"path": "x.edf", "label": "1"}, "l.csv line 2").problem == (
        "l.csv line 2: task: expected the label space's name (e.g. abnormal) beside a label, or HMS's vote columns "
        "(seizure_vote, lpd_vote, gpd_vote, lrda_vote, grda_vote, other_vote); got no such column"
    )
    assert label_row({"task": "t", "label": "2", "start_s": "5"}, "w").problem == (
        "w: duration_s: expected a number; got no such column"
    )
    assert label_row({"task": "t", "label": "2", "start_s": "5", "duration_s": "0"}, "w").problem == (
        "w: duration_s: expected a number of seconds > 0; got '0'"
    )
    assert label_row({"task": "t", "label": "3", "start_s": "-1", "duration_s": "2"}, "w").problem == (
        "w: start_s: expected a number >= 0; got '-1'"
    )
    assert label_row({"task": " t ", "label": "3"}, "w") == ("t", 3)


def test_a_split_column_gives_each_recording_its_corpus_split(tmp_path, shared_data):
    for n in range(3):
        (tmp_path / f"rec{n}.edf").symlink_to(shared_data / "eegmat" / f"Subject0{n}_2.edf")
    (tmp_path / "labels.csv").write_text(
        "path,patient_id,task,label,split\n"
        "rec0.edf,p0,folder,1,train\n"
        "rec1.edf,p1,folder,0,VAL\n"  # line 3: any case
        "rec2.edf,p2,folder,0,holdout\n"  # line 4: not a split
    )
    items, _, _ = discover([str(tmp_path)])
    by_name = {posixpath.basename(i.path): i for i in items}
    assert [by_name[f"rec{n}.edf"].corpus_split for n in range(3)] == ["train", "dev", ""]
    assert (
        by_name["rec2.edf"].windows[0].problem == "labels.csv line 4: split: expected train, val or test; got 'holdout'"
    )
