import math
import os
import posixpath
import shutil

import pandas as pd
import pytest

from eegfm.pipelines.sources import (
    HMS_VOTE_COLUMNS,
    LabeledInterval,
    LabeledWindow,
    discover,
    eegmat_split,
    expand_inputs,
    site_from_path,
)


def test_the_whole_shared_tree_is_accounted_for(shared_data):
    items, ignored, datasets = discover([str(shared_data)])
    every_file = expand_inputs([str(shared_data)])
    assert sorted([i.path for i in items] + [g.path for g in ignored]) == every_file
    assert datasets == {"data": "edf", "eegmat": "eegmat", "eegmmi": "eegmmi", "formats": "edf", "hms": "hms"}
    by_name = {i.path.rsplit("/", 1)[1]: i for i in items}
    # Upper-case extensions are recordings too.
    assert "MB0400FU.EDF" in by_name
    reasons = {g.path.rsplit("/", 1)[1]: g.reason for g in ignored}
    assert "read through its header file" in reasons["test_NO.eeg"]
    assert "spectrogram" in reasons["1000189855.parquet"]


def test_eegmat_adapter_labels_rest_and_task_and_reads_the_subject_sidecar(shared_data):
    items, _, datasets = discover([str(shared_data / "eegmat")])
    assert datasets == {"eegmat": "eegmat"} and len(items) == 64
    rest = next(i for i in items if i.path.endswith("Subject00_1.edf"))
    task = next(i for i in items if i.path.endswith("Subject00_2.edf"))
    assert (rest.recording_label, task.recording_label) == (0, 1)
    assert rest.subject_key == task.subject_key == "eegmat-00"
    assert rest.task == "eegmat_rest_task"
    # subject-info.csv: Subject00,21,F  (the EDF header claims 'M'; the sidecar wins)
    assert (rest.age, rest.sex) == (21.0, "F")
    # Largest files first, so runners that deal work out in input order end balanced.
    sizes = [os.path.getsize(i.path) for i in items]
    assert sizes == sorted(sizes, reverse=True) and sizes[0] > 2 * sizes[-1]


def test_eegmat_subjects_carry_the_benchmark_split_of_the_foundation_model_papers(shared_data, tmp_path):
    """Subjects 00-27 train, 28-31 dev (validation), 32-35 eval (test), as CBraMod and LaBraM split
    eegmat; both files of a subject in the same split."""
    items, _, _ = discover([str(shared_data / "eegmat")])
    by_split: dict[str, set[str]] = {}
    for item in items:
        by_split.setdefault(item.corpus_split, set()).add(item.subject_key)
    assert by_split == {"train": {f"eegmat-{n:02d}" for n in range(28)},
                        "dev": {f"eegmat-{n:02d}" for n in range(28, 32)}}
    assert [eegmat_split(n) for n in (0, 27, 28, 31, 32, 35, 36)] == ["train", "train", "dev", "dev", "eval",
                                                                      "eval", ""]
    # The test subjects (not in ../shared/data: sealed) would be the eval split.
    (tmp_path / "Subject33_1.edf").symlink_to(shared_data / "eegmat" / "Subject00_1.edf")
    (item,) = discover([str(tmp_path)], dataset="eegmat")[0]
    assert (item.subject_key, item.corpus_split) == ("eegmat-33", "eval")


def test_hms_adapter_attaches_votes_and_reports_rows_without_parquet(tmp_path, shared_data):
    root = tmp_path / "hms"
    (root / "train_eegs").mkdir(parents=True)
    shutil.copy(shared_data / "hms" / "train_eegs" / "1000913311.parquet", root / "train_eegs")
    rows = [
        dict(eeg_id=1000913311, eeg_sub_id=0, eeg_label_offset_seconds=0, spectrogram_id=1,
             spectrogram_sub_id=0, spectrogram_label_offset_seconds=0, label_id=11, patient_id=42,
             expert_consensus="LPD", seizure_vote=0, lpd_vote=3, gpd_vote=1, lrda_vote=0,
             grda_vote=0, other_vote=0),
        dict(eeg_id=999, eeg_sub_id=0, eeg_label_offset_seconds=0, spectrogram_id=2,
             spectrogram_sub_id=0, spectrogram_label_offset_seconds=0, label_id=12, patient_id=43,
             expert_consensus="Other", seizure_vote=0, lpd_vote=0, gpd_vote=0, lrda_vote=0,
             grda_vote=0, other_vote=1),
    ]
    pd.DataFrame(rows).to_csv(root / "train.csv", index=False)
    items, ignored, datasets = discover([str(root)])
    assert datasets == {"hms": "hms"}
    (item,) = items
    assert item.subject_key == "42" and item.site == "hms" and item.task == "hms6"
    (window,) = item.windows
    assert window.votes == (0, 3, 1, 0, 0, 0) and window.label == 1 and window.duration_s == 50.0
    assert any("eeg_id 999" in g.reason for g in ignored)
    assert list(HMS_VOTE_COLUMNS) == [c for c in rows[0] if c.endswith("_vote")]
    # A recording of another format beside the layout is an input too (it was dropped unlisted)
    shutil.copy(shared_data / "eegmat" / "Subject00_2.edf", root)
    items, _, _ = discover([str(root)], dataset="hms")
    assert sorted((i.dataset, os.path.basename(i.path)) for i in items) == [("edf", "Subject00_2.edf"),
                                                                           ("hms", "1000913311.parquet")]


def test_hms_rows_with_unusable_cells_become_windows_with_a_problem_that_names_line_and_column(tmp_path, shared_data):
    root = tmp_path / "hms"
    (root / "train_eegs").mkdir(parents=True)
    shutil.copy(shared_data / "hms" / "train_eegs" / "1000913311.parquet", root / "train_eegs")
    good = dict(eeg_id=1000913311, eeg_label_offset_seconds=0, label_id=11, patient_id=42, seizure_vote=0,
                lpd_vote=3, gpd_vote=1, lrda_vote=0, grda_vote=0, other_vote=0)
    bad = [dict(good, lpd_vote="nan"), dict(good, gpd_vote=-1), dict(good, lrda_vote=""), dict(good, other_vote="x"),
           dict(good, lpd_vote=0, gpd_vote=0), dict(good, eeg_label_offset_seconds="soon"),
           dict(good, seizure_vote="inf")]
    pd.DataFrame([good, *bad]).to_csv(root / "train.csv", index=False)
    (item,) = discover([str(root)])[0]  # one bad cell no longer stops discovery
    assert item.windows[0].votes == (0, 3, 1, 0, 0, 0) and not item.windows[0].problem
    assert [w.problem for w in item.windows[1:]] == [
        "train.csv line 3: lpd_vote: expected a number >= 0; got 'nan'",
        "train.csv line 4: gpd_vote: expected a number >= 0; got '-1'",
        "train.csv line 5: lrda_vote: expected a number >= 0; got an empty cell",
        "train.csv line 6: other_vote: expected a number >= 0; got 'x'",
        "train.csv line 7: no expert votes (seizure_vote, lpd_vote, gpd_vote, lrda_vote, grda_vote, other_vote all 0)",
        "train.csv line 8: eeg_label_offset_seconds: expected a number; got 'soon'",
        "train.csv line 9: seizure_vote: expected a number >= 0; got 'inf'",
    ]
    assert all(w.label == -1 and not w.votes for w in item.windows[1:])
    assert "42" not in " ".join(w.problem for w in item.windows)  # a line number, not the row's ids


def test_hms_ids_written_as_floats_still_name_their_parquet(tmp_path, shared_data):
    root = tmp_path / "hms"
    (root / "train_eegs").mkdir(parents=True)
    shutil.copy(shared_data / "hms" / "train_eegs" / "1000913311.parquet", root / "train_eegs")
    votes = ",".join(HMS_VOTE_COLUMNS)
    (root / "train.csv").write_text(f"eeg_id,eeg_label_offset_seconds,patient_id,{votes}\n"
                                    "1000913311.0,0.0,42.0,0,3,0,0,0,1\n")  # as pandas writes a float column
    (item,) = discover([str(root)])[0]
    assert item.subject_key == "42" and [w.votes for w in item.windows] == [(0.0, 3.0, 0.0, 0.0, 0.0, 1.0)]


def test_hms_test_layout_asks_about_each_rows_50_s_window_without_votes(tmp_path, shared_data):
    # Kaggle's test.csv: spectrogram_id, eeg_id, patient_id; each test_eegs/ parquet is 50 s.
    root = tmp_path / "hms"
    (root / "test_eegs").mkdir(parents=True)
    shutil.copy(shared_data / "hms" / "train_eegs" / "1000913311.parquet", root / "test_eegs")
    pd.DataFrame([dict(spectrogram_id=1, eeg_id=1000913311, patient_id=42),
                  dict(spectrogram_id=2, eeg_id=777, patient_id=43)]).to_csv(root / "test.csv", index=False)
    items, ignored, datasets = discover([str(root)])
    assert datasets == {"hms": "hms"}
    (item,) = items
    assert item.subject_key == "42" and item.task == "hms6"
    assert item.windows == (LabeledWindow(0.0, 50.0, -1, (), "hms6"),)
    assert [g.reason for g in ignored if g.path == "test.csv#eeg_id=777"] == [
        "test.csv rows name eeg_id 777 but test_eegs/777.parquet is not among the inputs"]


def test_train_and_test_eegs_take_their_own_csvs_rows_even_with_one_eeg_id(tmp_path, shared_data):
    """Kaggle's full download: train.csv, test.csv, train_eegs/, test_eegs/, *_spectrograms/ in
    one folder. A test_eegs/ file whose eeg_id train_eegs/ has too was taken for a spectrogram."""
    root = tmp_path / "hms"
    parquet = shared_data / "hms" / "train_eegs" / "1000913311.parquet"
    for folder in ("train_eegs", "test_eegs", "train_spectrograms"):
        (root / folder).mkdir(parents=True)
        shutil.copy(parquet, root / folder / "1000913311.parquet")
    votes = dict(zip(HMS_VOTE_COLUMNS, (0, 3, 0, 0, 0, 1)))
    pd.DataFrame([dict(eeg_id=1000913311, eeg_label_offset_seconds=0, patient_id=42, **votes),
                  dict(eeg_id=555, eeg_label_offset_seconds=0, patient_id=44, **votes)]).to_csv(
        root / "train.csv", index=False)
    pd.DataFrame([dict(spectrogram_id=1, eeg_id=1000913311, patient_id=42)]).to_csv(root / "test.csv", index=False)
    items, ignored, _ = discover([str(root)])
    by_folder = {posixpath.basename(posixpath.dirname(i.path)): i for i in items}
    assert set(by_folder) == {"train_eegs", "test_eegs"}
    assert [w.votes for w in by_folder["train_eegs"].windows] == [(0.0, 3.0, 0.0, 0.0, 0.0, 1.0)]
    assert by_folder["test_eegs"].windows == (LabeledWindow(0.0, 50.0, -1, (), "hms6"),)
    reasons = {g.path: g.reason for g in ignored}
    assert reasons[str(root / "train_spectrograms" / "1000913311.parquet")].startswith("HMS spectrogram")
    assert reasons["train.csv#eeg_id=555"].endswith("train_eegs/555.parquet is not among the inputs")


def test_site_comes_from_the_first_folder_or_the_flag(shared_data):
    root = str(shared_data)
    assert site_from_path(f"{root}/eegmmi/S001R03.edf", [root]) == "eegmmi"
    items, _, _ = discover([str(shared_data / "eegmmi")], dataset="edf", site="boston")
    assert {i.site for i in items} == {"boston"}


def test_a_globstar_matches_zero_or_more_folders_and_gives_the_sites_the_folder_would(shared_data, tmp_path):
    # raw/top.edf, raw/site-a/a.edf, raw/site-b/deep/b.edf (links to real eegmat recordings)
    raw = tmp_path / "raw"
    names = ("top.edf", "site-a/a.edf", "site-b/deep/b.edf")
    for name, source in zip(names, ("Subject00_2.edf", "Subject01_2.edf", "Subject02_2.edf")):
        (raw / name).parent.mkdir(parents=True, exist_ok=True)
        (raw / name).symlink_to(shared_data / "eegmat" / source)
    every = sorted(str(raw / n) for n in names)
    assert expand_inputs([f"{raw}/**/*.edf"]) == every  # top.edf too, as in bash and Python
    assert expand_inputs([f"{raw}/**/deep/*.edf"]) == [str(raw / "site-b/deep/b.edf")]
    assert expand_inputs([f"{raw}/*/**/*.edf"]) == every[:2]  # site-a/a.edf and site-b/deep/b.edf

    def sites(*patterns):
        return {i.path[len(str(raw)) + 1:]: i.site for i in discover(list(patterns), dataset="edf")[0]}

    by_folder = sites(str(raw))
    assert by_folder == {"top.edf": "raw", "site-a/a.edf": "site-a", "site-b/deep/b.edf": "site-b"}
    assert sites(f"{raw}/**/*.edf") == by_folder
    assert sites(str(raw), str(raw / "site-b/deep/b.edf")) == by_folder  # a file inside an input folder
    assert sites(str(raw / "site-b/deep/b.edf")) == {"site-b/deep/b.edf": "deep"}


def test_linked_site_folders_are_inputs_once_and_a_glob_names_the_links_it_cannot_follow(shared_data, tmp_path,
                                                                                          caplog):
    data = tmp_path / "data"
    (data / "site-a").mkdir(parents=True)
    os.symlink(shared_data / "eegmmi", data / "site-b")  # a site folder linked in (it was skipped unlisted)
    os.symlink(shared_data / "eegmmi", data / "site-a" / "same")  # the same folder again: once
    os.symlink(data, data / "site-a" / "up")  # a cycle
    shutil.copy(shared_data / "eegmat" / "Subject00_2.edf", data / "site-a")
    items, _, _ = discover([str(data)])
    sites = sorted((i.site, os.path.relpath(i.path, data)) for i in items)
    assert sites == [("site-a", "site-a/Subject00_2.edf"), ("site-b", "site-b/S001R03.edf"),
                     ("site-b", "site-b/S001R04.edf")]  # the shallower link first; "same" would repeat it
    assert "site-a/same ->" in caplog.text and "site-a/up ->" in caplog.text and "not followed" in caplog.text
    caplog.clear()
    assert expand_inputs([str(data / "**" / "*.edf")]) == [str(data / "site-a" / "Subject00_2.edf")]
    assert "are not followed by a glob" in caplog.text and str(data / "site-a" / "same") in caplog.text
    assert expand_inputs([str(data / "site-b")]) == [str(data / "site-b" / f) for f in ("S001R03.edf", "S001R04.edf")]


def test_excluded_files_and_folders_are_not_inputs(shared_data, tmp_path, monkeypatch):
    (tmp_path / "out" / "site-x").mkdir(parents=True)
    (tmp_path / "a.edf").symlink_to(shared_data / "eegmat" / "Subject00_2.edf")
    (tmp_path / "out" / "site-x" / "part-00000-of-00001.tfrecord").write_bytes(b"x")
    (tmp_path / "key").write_bytes(b"k" * 32)
    monkeypatch.chdir(tmp_path)  # a relative path names the same file as an absolute one
    items, ignored, _ = discover([str(tmp_path)], exclude=[str(tmp_path / "out") + "/", "key"], dataset="edf")
    assert [i.path for i in items] == [str(tmp_path / "a.edf")] and not ignored
    with pytest.raises(FileNotFoundError, match="matched no files but the job's own"):
        discover([str(tmp_path / "out")], exclude=[str(tmp_path / "out")])


def test_bad_arguments_are_named(shared_data, tmp_path):
    with pytest.raises(ValueError, match=r"--dataset: expected one of 'auto', 'edf', 'hms', 'bids', 'eegmat', "
                                         r"'eegmmi', 'tuab', 'tuep', 'tusz', 'tuev', 'tuar', 'chbmit', 'siena'; got 'tuh'"):
        discover([str(shared_data)], dataset="tuh")
    with pytest.raises(FileNotFoundError, match=r"--input .*nothing\*.edf: matched no files"):
        discover([str(tmp_path / "nothing*.edf")])


def test_bids_layout_takes_subjects_sessions_and_participants_tsv(tmp_path, shared_data):
    root = tmp_path / "ds"
    for sub, ses, src in [("01", "a", "Subject00_1.edf"), ("01", "b", "Subject00_2.edf"),
                          ("02", "a", "Subject01_1.edf")]:
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
    layout = ["sub-01/eeg/sub-01_task-rest_eeg.edf", "sourcedata/sub-01/eeg/sub-01_task-rest_eeg.edf",
              "derivatives/clean/sub-01/eeg/sub-01_task-rest_desc-clean_eeg.edf", "code/example.edf"]
    for name in layout:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).symlink_to(recording)
    (root / "dataset_description.json").write_text('{"Name": "t", "BIDSVersion": "1.8.0"}')
    (root / "derivatives" / "clean" / "dataset_description.json").write_text('{"Name": "c", "DatasetType": "derivative"}')
    items, ignored, datasets = discover([str(root)])
    assert datasets == {"ds": "bids"} and [i.path for i in items] == [str(root / layout[0])]
    why = {g.path[len(str(root)) + 1:]: g.reason for g in ignored}
    assert why[layout[1]] == (f"in the BIDS folder sourcedata/, the files the data set's recordings were converted "
                              f"from, not one of its raw recordings; give {root}/sourcedata as --input to process "
                              f"it on its own")
    assert why[layout[2]].startswith("in the BIDS folder derivatives/, processed versions of the data set's")
    assert why[layout[3]].startswith("in the BIDS folder code/")
    # Given as the input, a derivative data set is read as one.
    derived, _, _ = discover([str(root / "derivatives" / "clean")])
    assert [i.path for i in derived] == [str(root / layout[2])]


def test_labels_csv_labels_recordings_and_event_windows_by_task(tmp_path, shared_data, caplog):
    for n in range(4):
        (tmp_path / "site-a").mkdir(exist_ok=True)
        (tmp_path / "site-a" / f"rec{n}.edf").symlink_to(shared_data / "eegmat" / f"Subject0{n}_2.edf")
    (tmp_path / "labels.csv").write_text(
        "path,patient_id,task,label,start_s,duration_s\n"
        "site-a/rec0.edf,p0,abnormal,1,,\n"          # line 2: the whole recording
        "site-a/rec1.edf,p1,spike,1,10.5,2\n"        # lines 3-5: event windows
        "site-a/rec1.edf,p1,spike,0,30,2\n"
        "site-a/rec1.edf,p1,spike,x,40,2\n"
        "site-a/rec2.edf,,abnormal,1.5,,\n"          # line 6: not a class index
        "site-a/rec3.edf,,abnormal,0,,\n"            # lines 7-8: two recording labels
        "site-a/rec3.edf,,abnormal,1,,\n"
        "site-a/gone.edf,,abnormal,1,,\n")
    items, _, datasets = discover([str(tmp_path)])
    by_name = {posixpath.basename(i.path): i for i in items}
    assert set(datasets.values()) == {"edf"} and len(items) == 4
    rec0 = by_name["rec0.edf"]
    assert (rec0.task, rec0.recording_label, rec0.windows, rec0.subject_key) == ("abnormal", 1, (), "p0")
    rec1 = by_name["rec1.edf"]
    assert rec1.recording_label == -1 and [(w.offset_s, w.duration_s, w.label, w.task) for w in rec1.windows[:2]] == [
        (10.5, 2.0, 1, "spike"), (30.0, 2.0, 0, "spike")]
    assert rec1.windows[2].problem == "labels.csv line 5: label: expected a number >= 0; got 'x'"
    assert by_name["rec2.edf"].windows[0].problem == (
        "labels.csv line 6: label: expected an integer >= 0 (a class index); got '1.5'")
    rec3 = by_name["rec3.edf"]
    assert (rec3.task, rec3.recording_label) == ("abnormal", 0)
    assert rec3.windows[0].problem == ("labels.csv line 8: path: site-a/rec3.edf has a label for the whole recording "
                                       "already (labels.csv line 7); one per recording")
    assert "labels.csv: 1 labeled file(s) are not among the input recordings, e.g. " in caplog.text
    assert caplog.text.count("not among the input recordings") == 1


def test_labels_csv_paths_written_on_windows_or_with_dots_name_the_same_file(tmp_path, shared_data):
    (tmp_path / "site-a").mkdir()
    for n in range(3):
        (tmp_path / "site-a" / f"r{n}.edf").symlink_to(shared_data / "eegmat" / f"Subject0{n}_2.edf")
    (tmp_path / "labels.csv").write_text("path,task,label\nsite-a\\r0.edf,abnormal,1\n./site-a/r1.edf,abnormal,0\n"
                                         f"{tmp_path}/site-a/r2.edf,abnormal,1\n")
    items, _, _ = discover([str(tmp_path)])
    assert {posixpath.basename(i.path): i.recording_label for i in items} == {"r0.edf": 1, "r1.edf": 0, "r2.edf": 1}


def test_label_rows_name_what_is_missing():
    from eegfm.pipelines.sources import _label_row

    assert _label_row({"path": "x.edf", "label": "1"}, "l.csv line 2").problem == (
        "l.csv line 2: task: expected the label space's name (e.g. abnormal) beside a label, or HMS's vote columns "
        "(seizure_vote, lpd_vote, gpd_vote, lrda_vote, grda_vote, other_vote); got no such column")
    assert _label_row({"task": "t", "label": "2", "start_s": "5"}, "w").problem == (
        "w: duration_s: expected a number; got no such column")
    assert _label_row({"task": "t", "label": "2", "start_s": "5", "duration_s": "0"}, "w").problem == (
        "w: duration_s: expected a number of seconds > 0; got '0'")
    assert _label_row({"task": "t", "label": "3", "start_s": "-1", "duration_s": "2"}, "w").problem == (
        "w: start_s: expected a number >= 0; got '-1'")
    assert _label_row({"task": " t ", "label": "3"}, "w") == ("t", 3)


def test_one_file_spelled_several_ways_is_one_input(shared_data, tmp_path):
    (tmp_path / "site-a").mkdir()
    (tmp_path / "site-a" / "x.edf").symlink_to(shared_data / "eegmat" / "Subject00_2.edf")
    spellings = [f"{tmp_path}/site-a/x.edf", f"{tmp_path}/site-a/./x.edf", f"{tmp_path}//site-a/x.edf",
                 f"{tmp_path}/site-b/../site-a/x.edf"]
    items, _, _ = discover(spellings)
    assert [(i.path, i.site) for i in items] == [(f"{tmp_path}/site-a/x.edf", "site-a")]
    assert expand_inputs(spellings) == [f"{tmp_path}/site-a/x.edf"]


def test_sidecars_a_file_or_glob_input_leaves_out_are_named(tmp_path, shared_data, caplog):
    hms = tmp_path / "hms"
    (hms / "train_eegs").mkdir(parents=True)
    shutil.copy(shared_data / "hms" / "train_eegs" / "1000913311.parquet", hms / "train_eegs")
    (hms / "train.csv").write_text("eeg_id,patient_id\n1000913311,42\n")
    edf = tmp_path / "edf"
    (edf / "site-a").mkdir(parents=True)
    (edf / "site-a" / "r.edf").symlink_to(shared_data / "eegmat" / "Subject00_2.edf")
    (edf / "labels.csv").write_text("path,task,label\nsite-a/r.edf,abnormal,1\n")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "labels.csv").write_text("path,task,label\nelsewhere.edf,abnormal,1\n")
    (tmp_path / "other" / "x.edf").symlink_to(shared_data / "eegmat" / "Subject01_2.edf")

    def warned(*inputs):
        caplog.clear()
        discover([str(p) for p in inputs])
        return sorted(line.split(" is not among")[0] for line in caplog.messages if "is not among the inputs, so" in line)

    assert warned(hms / "train_eegs") == [str(hms / "train.csv")]
    assert warned(f"{hms}/train_eegs/*.parquet") == [str(hms / "train.csv")]
    assert warned(edf / "site-a" / "r.edf") == warned(edf / "site-a") == [str(edf / "labels.csv")]
    assert warned(hms) == warned(edf) == []  # given the folders, the sidecars are inputs
    assert warned(tmp_path / "other" / "x.edf") == []  # a labels.csv about other files: no warning


def test_the_manifest_says_which_metadata_files_are_read(tmp_path, shared_data):
    (tmp_path / "site-a").mkdir()
    (tmp_path / "site-a" / "r.edf").symlink_to(shared_data / "eegmat" / "Subject00_2.edf")
    for name in ("labels.csv", "site-a/events.csv", "site-a/notes.json"):
        (tmp_path / name).write_text("path\n")
    _, ignored, _ = discover([str(tmp_path)])
    why = {g.path[len(str(tmp_path)) + 1:]: g.reason for g in ignored}
    assert why == {"labels.csv": "metadata sidecar (.csv), read by the data set adapter",
                   "site-a/events.csv": "metadata (.csv), not a recording; no data set adapter reads events.csv",
                   "site-a/notes.json": "metadata (.json), not a recording; no data set adapter reads notes.json"}


def test_age_cells():
    from eegfm.pipelines.sources import _age_cell

    cells = {"34": 34.0, " 42.7 ": 42.0, "89+": 89.0, ">89": 89.0, "97": 90.0, "n/a": None, "": None, None: None,
             "unknown": None, "-3": None, "nan": None, "inf": None}
    assert {cell: _age_cell(cell) for cell in cells} == cells


def test_gzipped_edf_and_bdf_files_are_recordings_and_file_system_metadata_is_not(tmp_path):
    for name in ("a.edf.gz", "b.BDF.gz", "notes.txt", "._a.edf.gz", ".DS_Store"):
        (tmp_path / "site" / name).parent.mkdir(exist_ok=True)
        (tmp_path / "site" / name).write_bytes(b"x")
    items, ignored, _ = discover([str(tmp_path)])
    assert sorted(os.path.basename(i.path) for i in items) == ["a.edf.gz", "b.BDF.gz"]
    assert sorted(os.path.basename(g.path) for g in ignored) == [".DS_Store", "._a.edf.gz", "notes.txt"]
    assert "file-system metadata" in next(g.reason for g in ignored if g.path.endswith("._a.edf.gz"))


def test_an_egi_mff_folder_is_one_recording_and_its_files_are_read_through_it(tmp_path):
    for name in ("site/night.mff/info.xml", "site/night.mff/signal1.bin", "site/night.mff/coordinates.xml",
                 "site/day.MFF/signal1.bin", "site/a.edf"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x" * 10)
    items, ignored, _ = discover([str(tmp_path)])
    assert sorted(os.path.relpath(i.path, tmp_path) for i in items) == ["site/a.edf", "site/day.MFF", "site/night.mff"]
    assert {i.site for i in items} == {"site"}
    assert sorted(os.path.relpath(g.path, tmp_path) for g in ignored) == [
        "site/day.MFF/signal1.bin", "site/night.mff/coordinates.xml", "site/night.mff/info.xml",
        "site/night.mff/signal1.bin"]
    assert {g.reason for g in ignored if "night" in g.path} == {
        "part of the EGI MFF recording night.mff (a folder, read as one recording)"}
    # the largest recording first: a folder weighs all its files
    assert os.path.basename(items[0].path) == "night.mff"
    # the folder itself as --input
    items, ignored, _ = discover([str(tmp_path / "site" / "night.mff")])
    assert [i.path for i in items] == [str(tmp_path / "site" / "night.mff")] and len(ignored) == 3


def _tuab_tree(shared_data, root):
    """The TUH Abnormal corpus's layout over eegmat recordings: edf/{train,eval}/{normal,abnormal}/
    01_tcp_ar/<patient>_<session>_<token>.edf."""
    eegmat = shared_data / "eegmat"
    layout = {"train/normal/01_tcp_ar/aaaaaaaq_s001_t000.edf": "Subject00_1.edf",
              "train/normal/01_tcp_ar/aaaaaaaq_s002_t000.edf": "Subject00_2.edf",
              "train/abnormal/01_tcp_ar/aaaaabdn_s001_t001.edf": "Subject01_1.edf",
              "eval/abnormal/01_tcp_ar/aaaaacjb_s003_t000.edf": "Subject02_2.edf"}
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
        "aaaaaaaq_s001_t000.edf": 0, "aaaaaaaq_s002_t000.edf": 0, "aaaaabdn_s001_t001.edf": 1,
        "aaaaacjb_s003_t000.edf": 1}
    assert {i.task for i in items} == {"tuab_abnormal"} and {i.dataset for i in items} == {"tuab"}
    assert {n: i.corpus_split for n, i in by_name.items()} == {  # the corpus's own split: its folder
        "aaaaaaaq_s001_t000.edf": "train", "aaaaaaaq_s002_t000.edf": "train", "aaaaabdn_s001_t001.edf": "train",
        "aaaaacjb_s003_t000.edf": "eval"}
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
    from eegfm.pipelines.sources import LabeledInterval, interval_label, tusz_intervals

    text = ("# version = csv_v1.0.0\n# bname = aaaaaaac_s001_t000\n# duration = 62.00 secs\n#\n"
            "channel,start_time,stop_time,label,confidence\n"
            "TERM,0.0000,20.0000,bckg,1.0000\nTERM,20.0000,36.0000,cpsz,1.0000\nTERM,36.0000,50.0000,bckg,1.0000\n")
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
        "channel,start_time,stop_time,label,confidence\nTERM,0.0,30.0,bckg,1.0\nTERM,30.0,62.0,seiz,1.0\n")
    (root / "aaaaaaac_s001_t000.csv").write_text(
        "channel,start_time,stop_time,label,confidence\nFP1-F7,30.0,62.0,fnsz,1.0\n")
    items, ignored, datasets = discover([str(tmp_path / "tusz")])
    assert datasets == {"edf": "tusz"} and len(items) == 1
    item = items[0]
    assert (item.task, item.dataset, item.subject_key, item.session_key) == ("tusz_seizure", "tusz", "tuh-aaaaaaac",
                                                                              "s001")
    assert [iv.label for iv in item.intervals] == [0, 1] and item.label_problem == ""  # the .csv_bi, not the .csv
    assert item.corpus_split == "dev"
    assert {os.path.basename(g.path): g.reason for g in ignored} == {
        "aaaaaaac_s001_t000.csv_bi": "metadata sidecar (.csv_bi), read by the data set adapter",
        "aaaaaaac_s001_t000.csv": "metadata sidecar (.csv), read by the data set adapter"}


def test_tuar_rows_are_coded_by_artifact_kind_whichever_order_a_pair_is_written_in():
    from eegfm.pipelines.sources import TUAR_LABELS, LabeledInterval, tuar_intervals

    text = ("# version = csv_v1.0.0\n# bname = aaaaaaju_s005_t000\n# duration = 62.00 secs\n"
            "# montage_file = $NEDC_NFC/lib/nedc_eas_default_montage.txt\n#\n"
            "channel,start_time,stop_time,label,confidence\n"
            "FP1-F7,3.0000,5.5000,eyem,1.0000\nFP2-F8,3.2000,5.0000,eyem,1.0000\n"
            "T3-T5,20.0000,31.0000,musc,1.0000\nC3-CZ,40.0000,41.0000,elpp,1.0000\n"
            "F7-T3,44.0000,52.0000,MUSC_EYEM,1.0000\nCZ-C4,55.0000,56.0000,elec_musc,1.0000\n")
    events = tuar_intervals(text, "a.csv")
    code = TUAR_LABELS.index
    assert events == (LabeledInterval(3.0, 5.5, code("eyem")), LabeledInterval(3.2, 5.0, code("eyem")),
                      LabeledInterval(20.0, 31.0, code("musc")), LabeledInterval(40.0, 41.0, code("elec")),
                      LabeledInterval(44.0, 52.0, code("eyem_musc")), LabeledInterval(55.0, 56.0, code("musc_elec")))
    with pytest.raises(ValueError, match=r"^a.csv: line 9, label: expected an artifact kind \(eyem, chew, shiv, elec, "
                                         r"musc, .*\); got 'seiz'"):
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
    from eegfm.pipelines.sources import LabeledWindow, tuev_windows

    text = ("7,31.0000000,32.0000000,6\n8,31.0000000,32.0000000,6\n2,31.0000000,32.0000000,3\n"
            "0,0.5000000,1.5000000,4\n1,40.0000000,41.0000000,1\n3,40.0000000,41.0000000,2\n\n")
    events = tuev_windows(text, "a.rec")
    # one window per event, 2 s either side; two bckg rows outvote one pled; a tie goes to spsw
    assert [(w.offset_s, w.duration_s, w.label) for w in events] == [(-1.5, 5.0, 3), (29.0, 5.0, 5), (38.0, 5.0, 0)]
    assert {(w.task, w.slack_s) for w in events} == {("tuev_event", 2.0)}
    assert isinstance(events[0], LabeledWindow)
    with pytest.raises(ValueError, match=r"^a.rec: line 2, label: expected a code 1-6 \(1 spsw, 2 gped, .*6 bckg\); "
                                         r"got '7'"):
        tuev_windows(text.replace("8,31.0000000,32.0000000,6", "8,31.0000000,32.0000000,7"), "a.rec")
    with pytest.raises(ValueError, match=r"^a.rec: line 4: start, stop: expected 0 <= start < stop seconds; "
                                         r"got 1.5000000, 0.5000000"):
        tuev_windows(text.replace("0.5000000,1.5000000", "1.5000000,0.5000000"), "a.rec")
    with pytest.raises(ValueError, match=r"^a.rec: line 1: expected 4 fields \(channel,start,stop,label\); got 3"):
        tuev_windows("31.0,32.0,6\n", "a.rec")
    with pytest.raises(ValueError, match=r"^a.rec: line 1: expected numbers .*got 'FP1-F7,31.0,32.0,6'"):
        tuev_windows("FP1-F7,31.0,32.0,6\n", "a.rec")
    with pytest.raises(ValueError, match=r"^a.rec: no events"):
        tuev_windows("\n", "a.rec")


def test_tuev_adapter_finds_patients_in_both_naming_schemes_and_lists_the_event_files_as_read(shared_data,
                                                                                               tmp_path):
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
        for name in ("aaaaaaar_00000001.rec", "spsw_032_a_.rec")}
    # Without its .rec an EDF is no recording of the corpus: the folder is a plain one
    (train / "aaaaaaar_00000002.edf").symlink_to(shared_data / "eegmat" / "Subject02_2.edf")
    assert discover([str(root / "train")])[2] == {"aaaaaaar": "edf"}


def test_chb_mit_summaries_give_each_files_seizures_in_both_spellings_and_name_a_bad_entry():
    from eegfm.pipelines.sources import chbmit_seizures

    text = ("Data Sampling Rate: 256 Hz\n*****\n\nChannels in EDF Files:\nChannel 1: FP1-F7\n\n"
            "File Name: chb04_01.edf\nFile Start Time: 07:05:09\nFile End Time: 11:05:09\n"
            "Number of Seizures in File: 0\n\n"
            "File Name: chb04_08.edf\nFile Start Time: 11:05:09\nFile End Time: 15:05:09\n"
            "Number of Seizures in File: 2\nSeizure 1 Start Time: 6446 seconds\nSeizure 1 End Time: 6557 seconds\n"
            "Seizure 2 Start Time:  7804 seconds\nSeizure 2 End Time: 7853 seconds\n\n"
            "File Name: chb04_28.edf\nNumber of Seizures in File: 2\nSeizure Start Time: 1679 seconds\n"
            "Seizure End Time: 1781 seconds\n\n"
            "File Name: chb04_05.edf\nNumber of Seizures in File: 1\nSeizure Start Time: soon\n")
    found = chbmit_seizures(text, "chb04-summary.txt")
    assert found["chb04_01.edf"] == () and found["chb04_08.edf"] == ((6446.0, 6557.0), (7804.0, 7853.0))
    assert found["chb04_28.edf"] == ("chb04-summary.txt: chb04_28.edf: expected 2 seizure start and end times "
                                     "(its Number of Seizures in File); got 1 start and 1 end")
    assert found["chb04_05.edf"] == ("chb04-summary.txt: line 28, Seizure Start Time: expected seconds; "
                                     "got 'soon'")


def test_chb_mit_adapter_keys_chb21_to_chb01_and_reads_age_and_sex(shared_data, tmp_path):
    root = tmp_path / "chb-mit-scalp-eeg-database-1.0.0"
    for case, name in (("chb01", "chb01_03.edf"), ("chb21", "chb21_19.edf"), ("chb21", "chb21_20.edf")):
        (root / case).mkdir(parents=True, exist_ok=True)
        (root / case / name).symlink_to(shared_data / "eegmat" / "Subject00_2.edf")
    (root / "chb01" / "chb01_03.edf.seizures").write_bytes(b"\x00\x01")
    (root / "chb01" / "chb01-summary.txt").write_text(
        "File Name: chb01_03.edf\nNumber of Seizures in File: 1\nSeizure Start Time: 20 seconds\n"
        "Seizure End Time: 30 seconds\n")
    (root / "chb21" / "chb21-summary.txt").write_text("File Name: chb21_19.edf\nNumber of Seizures in File: 0\n")
    (root / "SUBJECT-INFO").write_text("Case\tGender\tAge (years)\nchb01\tF\t11\nchb21\tF\t13\n")
    (root / "RECORDS").write_text("chb01/chb01_03.edf\n")
    items, ignored, used = discover([str(root)])
    assert used == {"chb-mit-scalp-eeg-database-1.0.0": "chbmit"}
    by_name = {os.path.basename(i.path): i for i in items}
    first, later, unlisted = by_name["chb01_03.edf"], by_name["chb21_19.edf"], by_name["chb21_20.edf"]
    assert first.subject_key == later.subject_key == "chbmit-chb01" and later.session_key == "chb21"
    assert (first.age, first.sex, later.age) == (11.0, "F", 13.0)
    assert {i.site for i in items} == {root.name}  # one hospital: one site, whichever folder is the input
    assert {i.site for i in discover([str(tmp_path)])[0]} == {root.name}
    # one case folder as the input: still the corpus's site; its SUBJECT-INFO, not an input, goes unread
    alone = discover([str(root / "chb21")])[0]
    assert {i.site for i in alone} == {root.name} and {i.age for i in alone} == {None}
    assert [(iv.start_s, iv.stop_s, iv.label) for iv in first.intervals] == [
        (0.0, 20.0, 0), (20.0, 30.0, 1), (30.0, math.inf, 0)] and first.task == "chbmit_seizure"
    assert [iv.label for iv in later.intervals] == [0] and unlisted.task == "" and unlisted.intervals == ()
    assert {os.path.basename(g.path): g.reason.split(",")[0].split(" (")[0] for g in ignored} == {
        "chb01_03.edf.seizures": "CHB-MIT seizure annotation", "chb01-summary.txt": "CHB-MIT summary",
        "chb21-summary.txt": "CHB-MIT summary", "SUBJECT-INFO": "PhysioNet subject table",
        "RECORDS": "PhysioNet index"}


def test_eegmmi_runs_say_what_their_t1_and_t2_trials_are(shared_data, tmp_path):
    root = tmp_path / "files"
    for run in (1, 3, 4, 5, 14):
        (root / "S002").mkdir(parents=True, exist_ok=True)
        (root / "S002" / f"S002R{run:02d}.edf").symlink_to(shared_data / "eegmmi" / "S001R03.edf")
    (root / "S002" / "S002R03.edf.event").write_bytes(b"\x00")
    for name in ("64_channel_sharbrough.pdf", "64_channel_sharbrough.png", "wfdbcal", "RECORDS"):
        (root / name).write_bytes(b"%PDF-1.4")  # the database's files beside the subjects' folders
    items, ignored, used = discover([str(root)])
    assert used == {"S002": "eegmmi", "files": "edf"} and len(items) == 5
    runs = {os.path.basename(i.path)[4:7]: (i.task, i.event_labels, i.event_window_s) for i in items}
    assert runs == {
        "R01": ("", (), 0.0),  # eyes open: no trials
        "R03": ("eegmmi_movement", (("T1", 0), ("T2", 1)), 4.0), "R04": ("eegmmi_imagery", (("T1", 0), ("T2", 1)), 4.0),
        "R05": ("eegmmi_movement", (("T1", 2), ("T2", 3)), 4.0), "R14": ("eegmmi_imagery", (("T1", 2), ("T2", 3)), 4.0)}
    assert {i.subject_key for i in items} == {"eegmmi-S002"}
    assert sorted(g.reason.split(" (")[0] for g in ignored) == [
        "PhysioNet annotation file", "PhysioNet index", "PhysioNet index", "documentation", "documentation"]


def test_tuep_adapter_labels_each_patients_recordings_by_its_diagnosis_folder(shared_data, tmp_path):
    root = tmp_path / "tuh_eeg_epilepsy" / "v2.0.1"
    for folder, patient, source in (("00_epilepsy", "aaaaaanr", "Subject00_2.edf"),
                                    ("01_no_epilepsy", "aaaaaebo", "Subject01_2.edf")):
        leaf = root / folder / patient / "s001_2003" / "02_tcp_le"
        leaf.mkdir(parents=True)
        (leaf / f"{patient}_s001_t001.edf").symlink_to(shared_data / "eegmat" / source)
    items, _, used = discover([str(root)])
    assert set(used.values()) == {"tuep"}
    assert sorted((i.subject_key, i.session_key, i.task, i.recording_label) for i in items) == [
        ("tuh-aaaaaanr", "s001", "tuep_epilepsy", 1), ("tuh-aaaaaebo", "s001", "tuep_epilepsy", 0)]


def test_siena_seizure_lists_count_from_each_files_registration_start_and_catch_a_typo():
    from eegfm.pipelines.sources import siena_seizures

    text = ("Seizures list for patient PN00\n\nSeizure n 1\nFile name: PN00-1.edf\n"
            "Registration start time: 19.39.33\nRegistration end time: 20.22.58\n"
            "Seizure start time: 19.58.36\nSeizure end time: 19.59.46\n\n"
            "Seizure n 2\nFile name: PN00-2.edf\nRegistration start time: 23.50.00\nRegistration end time: 01.00.00\n"
            "Start time: 00.10.00\nEnd time: 00.11.30\n\n"
            "Seizure n 3\nFile name: PN00-1.edf\nRegistration start time: 19.39.33\n"
            "Seizure start time: 20.10.00\nSeizure end time: 20.11.00\n\n"
            "Seizure n 4\nFile name: PN00-3.edf\nRegistration start time: 18.15.44\n"
            "Seizure start time: 18.28.29\nSeizure end time: 19.29.38\n\n"
            "Seizure n 5\nFile name: PN00-4.edf\nRegistration start time: 18.15.44\n"
            "Seizure start time: 18 h 28\nSeizure end time: 18.29.38\n")
    found = siena_seizures(text, "Seizures-list-PN00.txt")
    assert found["PN00-1.edf"] == ((1143.0, 1213.0), (1827.0, 1887.0))
    assert found["PN00-2.edf"] == ((1200.0, 1290.0),)  # past midnight
    assert found["PN00-3.edf"] == ("Seizures-list-PN00.txt: line 27: a seizure ending at 19.29.38 lasts 61 min "
                                   "after its start; expected up to 30 min (a typo in its clock times?)")
    assert found["PN00-4.edf"] == ("Seizures-list-PN00.txt: line 32, Seizure start time: expected a clock time "
                                   "hh.mm.ss; got '18 h 28'")


def test_siena_adapter_matches_misspelt_file_names_and_labels_the_seizures(shared_data, tmp_path, caplog):
    root = tmp_path / "siena-scalp-eeg-database-1.0.0"
    (root / "PN06").mkdir(parents=True)
    for name in ("PN06-1.edf", "PN06-2.edf"):
        (root / "PN06" / name).symlink_to(shared_data / "eegmat" / "Subject00_2.edf")
    (root / "PN06" / "Seizures-list-PN06.txt").write_text(
        "Seizure n 1\nFile name: PNO6-1.edf\nRegistration start time: 04.21.22\n"
        "Start time: 04.21.42\nEnd time: 04.22.02\n\nSeizure n 2\nFile name: PN06-7.edf\n"
        "Registration start time: 04.21.22\nStart time: 04.21.42\nEnd time: 04.22.02\n")
    items, ignored, used = discover([str(root)])
    assert used == {"PN06": "siena"}
    first, second = sorted(items, key=lambda i: i.path)
    assert [(iv.start_s, iv.stop_s, iv.label) for iv in first.intervals] == [
        (0.0, 20.0, 0), (20.0, 40.0, 1), (40.0, math.inf, 0)]  # 'PNO6-1.edf' (a letter O) is PN06-1.edf
    assert (first.task, first.subject_key, first.site) == ("siena_seizure", "siena-PN06", root.name)
    assert second.task == "" and second.intervals == ()
    assert "names PN06-7.edf, which is not among its folder's recordings" in caplog.text
    assert [g.reason.split(" (")[0] for g in ignored] == ["Siena seizure list"]


def test_a_summary_that_is_not_text_quarantines_its_cases_files_and_is_listed_once(shared_data, tmp_path):
    case = tmp_path / "chbmit" / "chb01"
    case.mkdir(parents=True)
    (case / "chb01_01.edf").symlink_to(shared_data / "eegmat" / "Subject00_2.edf")
    (case / "chb01-summary.txt").write_bytes(b"File Name: chb01_01.edf\nNumber of Seizures in File: 0 \xe9\n")
    items, ignored, _ = discover([str(tmp_path / "chbmit")])
    assert [os.path.basename(g.path) for g in ignored] == ["chb01-summary.txt"]  # every input once
    assert items[0].task == "chbmit_seizure" and items[0].label_problem.startswith(
        "chb01-summary.txt: not UTF-8 text ('utf-8' codec can't decode byte 0xe9")
