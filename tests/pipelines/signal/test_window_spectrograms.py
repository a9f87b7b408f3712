"""Which spectrogram each window carries: Kaggle's file for HMS labeled windows, computed otherwise,
none when switched off; an unusable Kaggle file costs only the spectrogram."""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pandas as pd
import pytest

from eegfm.contract.spectrogram import log_power, row_names
from eegfm.pipelines.datasets import discover
from eegfm.pipelines.job.process import process_recording
from eegfm.pipelines.job.process_io import PreprocessConfig, Window
from eegfm.pipelines.signal.window_spectrograms import SpectrogramFileError, read_kaggle_spectrogram

KEY = b"a-test-key-of-32-bytes-for-hmac!"


def _windows(item, config=None):
    config = config or PreprocessConfig()
    events = list(process_recording(item, KEY, config, config.config_hash()))
    assert events[-1].status == "processed", events[-1].reason
    return [e.record for e in events if isinstance(e, Window)]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """The simulator's HMS layout and EDF export of one 11 min recording (a full 10 min spectrogram
    window for every label)."""
    from eegfm.simulate.cli import main as simulate

    root = tmp_path_factory.mktemp("sim") / "corpus"
    args = ["--output", str(root), "--sites", "1", "--subjects-per-site", "1", "--recordings-per-subject", "1"]
    assert simulate([*args, "--minutes", "11", "--seed", "5", "--quiet"]) == 0
    return root


@pytest.fixture(scope="module")
def hms_item(corpus):
    items, ignored, _ = discover([str(corpus / "hms")])
    (item,) = items
    assert item.spectrogram_path.endswith(".parquet") and "/train_spectrograms/" in item.spectrogram_path
    assert not [g for g in ignored if "spectrogram" in g.path]  # the file is used, not ignored
    return item


def test_hms_labeled_windows_carry_their_ten_minutes_of_the_kaggle_file(corpus, hms_item):
    windows = _windows(hms_item)
    labels = pd.read_csv(corpus / "hms" / "train.csv")
    assert len(windows) == len(labels) > 3
    times, power = read_kaggle_spectrogram(hms_item.spectrogram_path)
    by_offset = {float(w.window_start_s): w for w in windows}
    for row in labels.itertuples():
        record = by_offset[float(row.eeg_label_offset_seconds)]
        assert record.spectrogram_frames == 300
        first = int(np.flatnonzero(times == row.spectrogram_label_offset_seconds + 1)[0])
        expected = log_power(power[first : first + 300].T).astype(np.float16)
        np.testing.assert_array_equal(record.spectrogram, expected)


def test_an_edf_recording_gets_spectrograms_computed_from_its_windows(corpus):
    items, _, _ = discover([str(corpus / "edf")])
    (item,) = items
    windows = _windows(item)
    assert windows and all(w.spectrogram_frames == w.n_times // 512 for w in windows)  # one frame per 2 s
    assert all(not np.isnan(w.spectrogram).all() for w in windows)


def test_without_the_kaggle_file_hms_windows_are_computed_and_switched_off_carry_none(hms_item):
    computed = _windows(dataclasses.replace(hms_item, spectrogram_path=""))
    assert {w.spectrogram_frames for w in computed} == {25}  # 50 s windows
    off = _windows(hms_item, PreprocessConfig(spectrogram=False))
    assert all(w.spectrogram is None for w in off) and len(off) == len(computed)


def test_an_unusable_kaggle_file_costs_only_the_spectrogram(hms_item, tmp_path, caplog):
    broken = tmp_path / "train_spectrograms" / "1234.parquet"
    broken.parent.mkdir()
    broken.write_bytes(b"PAR1 not really")
    with caplog.at_level(logging.WARNING, logger="eegfm.spectrogram"):
        windows = _windows(dataclasses.replace(hms_item, spectrogram_path=str(broken)))
    assert windows and all(w.spectrogram is None for w in windows)
    (warning,) = [r.getMessage() for r in caplog.records if r.name == "eegfm.spectrogram"]
    assert windows[0].recording_id.decode() in warning and "not a readable parquet file" in warning
    assert "1234" not in warning and str(tmp_path) not in warning  # its pseudonym, not its path


def test_a_kaggle_file_without_kaggles_columns_is_named_so(tmp_path):
    path = tmp_path / "x.parquet"
    pd.DataFrame({"time": [1, 3], **{name: [0.5, 0.5] for name in row_names()[:-1]}}).to_parquet(path)
    with pytest.raises(SpectrogramFileError, match="1 missing, such as 'RP_19.92'"):
        read_kaggle_spectrogram(str(path))


def test_hms_listing_pairs_each_eeg_with_the_spectrogram_its_rows_name(corpus, tmp_path):
    """A row naming a spectrogram that is not among the inputs: the windows get computed ones."""
    labels = pd.read_csv(corpus / "hms" / "train.csv")
    folder = tmp_path / "hms"
    (folder / "train_eegs").mkdir(parents=True)
    for eeg in (corpus / "hms" / "train_eegs").iterdir():
        (folder / "train_eegs" / eeg.name).symlink_to(eeg)
    labels.to_csv(folder / "train.csv", index=False)
    (item,) = discover([str(folder)])[0]
    assert item.spectrogram_path == ""
    assert all(w.spectrogram_offset_s is None for w in item.windows)
