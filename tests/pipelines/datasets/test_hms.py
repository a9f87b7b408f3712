import os
import posixpath
import shutil

import pandas as pd

from eegfm.core.tasks import HMS_VOTE_COLUMNS
from eegfm.pipelines.datasets import LabeledWindow, discover


def test_hms_adapter_attaches_votes_and_reports_rows_without_parquet(tmp_path, shared_data):
    root = tmp_path / "hms"
    (root / "train_eegs").mkdir(parents=True)
    shutil.copy(shared_data / "hms" / "train_eegs" / "1000913311.parquet", root / "train_eegs")
    rows = [
        dict(
            eeg_id=1000913311,
            eeg_sub_id=0,
            eeg_label_offset_seconds=0,
            spectrogram_id=1,
            spectrogram_sub_id=0,
            spectrogram_label_offset_seconds=0,
            label_id=11,
            patient_id=42,
            expert_consensus="LPD",
            seizure_vote=0,
            lpd_vote=3,
            gpd_vote=1,
            lrda_vote=0,
            grda_vote=0,
            other_vote=0,
        ),
        dict(
            eeg_id=999,
            eeg_sub_id=0,
            eeg_label_offset_seconds=0,
            spectrogram_id=2,
            spectrogram_sub_id=0,
            spectrogram_label_offset_seconds=0,
            label_id=12,
            patient_id=43,
            expert_consensus="Other",
            seizure_vote=0,
            lpd_vote=0,
            gpd_vote=0,
            lrda_vote=0,
            grda_vote=0,
            other_vote=1,
        ),
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
    assert sorted((i.dataset, os.path.basename(i.path)) for i in items) == [
        ("edf", "Subject00_2.edf"),
        ("hms", "1000913311.parquet"),
    ]


def test_hms_rows_with_unusable_cells_become_windows_with_a_problem_that_names_line_and_column(tmp_path, shared_data):
    root = tmp_path / "hms"
    (root / "train_eegs").mkdir(parents=True)
    shutil.copy(shared_data / "hms" / "train_eegs" / "1000913311.parquet", root / "train_eegs")
    good = dict(
        eeg_id=1000913311,
        eeg_label_offset_seconds=0,
        label_id=11,
        patient_id=42,
        seizure_vote=0,
        lpd_vote=3,
        gpd_vote=1,
        lrda_vote=0,
        grda_vote=0,
        other_vote=0,
    )
    bad = [
        dict(good, lpd_vote="nan"),
        dict(good, gpd_vote=-1),
        dict(good, lrda_vote=""),
        dict(good, other_vote="x"),
        dict(good, lpd_vote=0, gpd_vote=0),
        dict(good, eeg_label_offset_seconds="soon"),
        dict(good, seizure_vote="inf"),
    ]
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
    (root / "train.csv").write_text(
        f"eeg_id,eeg_label_offset_seconds,patient_id,{votes}\n1000913311.0,0.0,42.0,0,3,0,0,0,1\n"
    )  # as pandas writes a float column
    (item,) = discover([str(root)])[0]
    assert item.subject_key == "42" and [w.votes for w in item.windows] == [(0.0, 3.0, 0.0, 0.0, 0.0, 1.0)]


def test_hms_test_layout_asks_about_each_rows_50_s_window_without_votes(tmp_path, shared_data):
    # Kaggle's test.csv: spectrogram_id, eeg_id, patient_id; each test_eegs/ parquet is 50 s.
    root = tmp_path / "hms"
    (root / "test_eegs").mkdir(parents=True)
    shutil.copy(shared_data / "hms" / "train_eegs" / "1000913311.parquet", root / "test_eegs")
    pd.DataFrame(
        [dict(spectrogram_id=1, eeg_id=1000913311, patient_id=42), dict(spectrogram_id=2, eeg_id=777, patient_id=43)]
    ).to_csv(root / "test.csv", index=False)
    items, ignored, datasets = discover([str(root)])
    assert datasets == {"hms": "hms"}
    (item,) = items
    assert item.subject_key == "42" and item.task == "hms6"
    assert item.windows == (LabeledWindow(0.0, 50.0, -1, (), "hms6"),)
    assert [g.reason for g in ignored if g.path == "test.csv#eeg_id=777"] == [
        "test.csv rows name eeg_id 777 but test_eegs/777.parquet is not among the inputs"
    ]


def test_train_and_test_eegs_take_their_own_csvs_rows_even_with_one_eeg_id(tmp_path, shared_data):
    """Kaggle's full download: train.csv, test.csv, train_eegs/, test_eegs/, *_spectrograms/ in
    one folder. A test_eegs/ file whose eeg_id train_eegs/ has too was taken for a spectrogram."""
    root = tmp_path / "hms"
    parquet = shared_data / "hms" / "train_eegs" / "1000913311.parquet"
    for folder in ("train_eegs", "test_eegs", "train_spectrograms"):
        (root / folder).mkdir(parents=True)
        shutil.copy(parquet, root / folder / "1000913311.parquet")
    votes = dict(zip(HMS_VOTE_COLUMNS, (0, 3, 0, 0, 0, 1)))
    pd.DataFrame(
        [
            dict(eeg_id=1000913311, eeg_label_offset_seconds=0, patient_id=42, **votes),
            dict(eeg_id=555, eeg_label_offset_seconds=0, patient_id=44, **votes),
        ]
    ).to_csv(root / "train.csv", index=False)
    pd.DataFrame([dict(spectrogram_id=1, eeg_id=1000913311, patient_id=42)]).to_csv(root / "test.csv", index=False)
    items, ignored, _ = discover([str(root)])
    by_folder = {posixpath.basename(posixpath.dirname(i.path)): i for i in items}
    assert set(by_folder) == {"train_eegs", "test_eegs"}
    assert [w.votes for w in by_folder["train_eegs"].windows] == [(0.0, 3.0, 0.0, 0.0, 0.0, 1.0)]
    assert by_folder["test_eegs"].windows == (LabeledWindow(0.0, 50.0, -1, (), "hms6"),)
    reasons = {g.path: g.reason for g in ignored}
    assert reasons[str(root / "train_spectrograms" / "1000913311.parquet")].startswith("HMS spectrogram")
    assert reasons["train.csv#eeg_id=555"].endswith("train_eegs/555.parquet is not among the inputs")
