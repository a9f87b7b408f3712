import math
import os

from eegfm.pipelines.datasets import discover
from eegfm.pipelines.datasets.physionet import eegmat_split


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
    assert by_split == {
        "train": {f"eegmat-{n:02d}" for n in range(28)},
        "dev": {f"eegmat-{n:02d}" for n in range(28, 32)},
    }
    assert [eegmat_split(n) for n in (0, 27, 28, 31, 32, 35, 36)] == [
        "train",
        "train",
        "dev",
        "dev",
        "eval",
        "eval",
        "",
    ]
    # The test subjects (not in ../shared/data: sealed) would be the eval split.
    (tmp_path / "Subject33_1.edf").symlink_to(shared_data / "eegmat" / "Subject00_1.edf")
    (item,) = discover([str(tmp_path)], dataset="eegmat")[0]
    assert (item.subject_key, item.corpus_split) == ("eegmat-33", "eval")


def test_chb_mit_summaries_give_each_files_seizures_in_both_spellings_and_name_a_bad_entry():
    from eegfm.pipelines.datasets.physionet import chbmit_seizures

    text = (
        "Data Sampling Rate: 256 Hz\n*****\n\nChannels in EDF Files:\nChannel 1: FP1-F7\n\n"
        "File Name: chb04_01.edf\nFile Start Time: 07:05:09\nFile End Time: 11:05:09\n"
        "Number of Seizures in File: 0\n\n"
        "File Name: chb04_08.edf\nFile Start Time: 11:05:09\nFile End Time: 15:05:09\n"
        "Number of Seizures in File: 2\nSeizure 1 Start Time: 6446 seconds\nSeizure 1 End Time: 6557 seconds\n"
        "Seizure 2 Start Time:  7804 seconds\nSeizure 2 End Time: 7853 seconds\n\n"
        "File Name: chb04_28.edf\nNumber of Seizures in File: 2\nSeizure Start Time: 1679 seconds\n"
        "Seizure End Time: 1781 seconds\n\n"
        "File Name: chb04_05.edf\nNumber of Seizures in File: 1\nSeizure Start Time: soon\n"
    )
    found = chbmit_seizures(text, "chb04-summary.txt")
    assert found["chb04_01.edf"] == () and found["chb04_08.edf"] == ((6446.0, 6557.0), (7804.0, 7853.0))
    assert found["chb04_28.edf"] == (
        "chb04-summary.txt: chb04_28.edf: expected 2 seizure start and end times "
        "(its Number of Seizures in File); got 1 start and 1 end"
    )
    assert found["chb04_05.edf"] == ("chb04-summary.txt: line 28, Seizure Start Time: expected seconds; got 'soon'")


def test_chb_mit_adapter_keys_chb21_to_chb01_and_reads_age_and_sex(shared_data, tmp_path):
    root = tmp_path / "chb-mit-scalp-eeg-database-1.0.0"
    for case, name in (("chb01", "chb01_03.edf"), ("chb21", "chb21_19.edf"), ("chb21", "chb21_20.edf")):
        (root / case).mkdir(parents=True, exist_ok=True)
        (root / case / name).symlink_to(shared_data / "eegmat" / "Subject00_2.edf")
    (root / "chb01" / "chb01_03.edf.seizures").write_bytes(b"\x00\x01")
    (root / "chb01" / "chb01-summary.txt").write_text(
        "File Name: chb01_03.edf\nNumber of Seizures in File: 1\nSeizure Start Time: 20 seconds\n"
        "Seizure End Time: 30 seconds\n"
    )
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
        (0.0, 20.0, 0),
        (20.0, 30.0, 1),
        (30.0, math.inf, 0),
    ] and first.task == "chbmit_seizure"
    assert [iv.label for iv in later.intervals] == [0] and unlisted.task == "" and unlisted.intervals == ()
    assert {os.path.basename(g.path): g.reason.split(",")[0].split(" (")[0] for g in ignored} == {
        "chb01_03.edf.seizures": "CHB-MIT seizure annotation",
        "chb01-summary.txt": "CHB-MIT summary",
        "chb21-summary.txt": "CHB-MIT summary",
        "SUBJECT-INFO": "PhysioNet subject table",
        "RECORDS": "PhysioNet index",
    }


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
        "R03": ("eegmmi_movement", (("T1", 0), ("T2", 1)), 4.0),
        "R04": ("eegmmi_imagery", (("T1", 0), ("T2", 1)), 4.0),
        "R05": ("eegmmi_movement", (("T1", 2), ("T2", 3)), 4.0),
        "R14": ("eegmmi_imagery", (("T1", 2), ("T2", 3)), 4.0),
    }
    assert {i.subject_key for i in items} == {"eegmmi-S002"}
    assert sorted(g.reason.split(" (")[0] for g in ignored) == [
        "PhysioNet annotation file",
        "PhysioNet index",
        "PhysioNet index",
        "documentation",
        "documentation",
    ]


def test_siena_seizure_lists_count_from_each_files_registration_start_and_catch_a_typo():
    from eegfm.pipelines.datasets.physionet import siena_seizures

    text = (
        "Seizures list for patient PN00\n\nSeizure n 1\nFile name: PN00-1.edf\n"
        "Registration start time: 19.39.33\nRegistration end time: 20.22.58\n"
        "Seizure start time: 19.58.36\nSeizure end time: 19.59.46\n\n"
        "Seizure n 2\nFile name: PN00-2.edf\nRegistration start time: 23.50.00\nRegistration end time: 01.00.00\n"
        "Start time: 00.10.00\nEnd time: 00.11.30\n\n"
        "Seizure n 3\nFile name: PN00-1.edf\nRegistration start time: 19.39.33\n"
        "Seizure start time: 20.10.00\nSeizure end time: 20.11.00\n\n"
        "Seizure n 4\nFile name: PN00-3.edf\nRegistration start time: 18.15.44\n"
        "Seizure start time: 18.28.29\nSeizure end time: 19.29.38\n\n"
        "Seizure n 5\nFile name: PN00-4.edf\nRegistration start time: 18.15.44\n"
        "Seizure start time: 18 h 28\nSeizure end time: 18.29.38\n"
    )
    found = siena_seizures(text, "Seizures-list-PN00.txt")
    assert found["PN00-1.edf"] == ((1143.0, 1213.0), (1827.0, 1887.0))
    assert found["PN00-2.edf"] == ((1200.0, 1290.0),)  # past midnight
    assert found["PN00-3.edf"] == (
        "Seizures-list-PN00.txt: line 27: a seizure ending at 19.29.38 lasts 61 min "
        "after its start; expected up to 30 min (a typo in its clock times?)"
    )
    assert found["PN00-4.edf"] == (
        "Seizures-list-PN00.txt: line 32, Seizure start time: expected a clock time hh.mm.ss; got '18 h 28'"
    )


def test_siena_adapter_matches_misspelt_file_names_and_labels_the_seizures(shared_data, tmp_path, caplog):
    root = tmp_path / "siena-scalp-eeg-database-1.0.0"
    (root / "PN06").mkdir(parents=True)
    for name in ("PN06-1.edf", "PN06-2.edf"):
        (root / "PN06" / name).symlink_to(shared_data / "eegmat" / "Subject00_2.edf")
    (root / "PN06" / "Seizures-list-PN06.txt").write_text(
        "Seizure n 1\nFile name: PNO6-1.edf\nRegistration start time: 04.21.22\n"
        "Start time: 04.21.42\nEnd time: 04.22.02\n\nSeizure n 2\nFile name: PN06-7.edf\n"
        "Registration start time: 04.21.22\nStart time: 04.21.42\nEnd time: 04.22.02\n"
    )
    items, ignored, used = discover([str(root)])
    assert used == {"PN06": "siena"}
    first, second = sorted(items, key=lambda i: i.path)
    assert [(iv.start_s, iv.stop_s, iv.label) for iv in first.intervals] == [
        (0.0, 20.0, 0),
        (20.0, 40.0, 1),
        (40.0, math.inf, 0),
    ]  # 'PNO6-1.edf' (a letter O) is PN06-1.edf
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
        "chb01-summary.txt: not UTF-8 text ('utf-8' codec can't decode byte 0xe9"
    )
