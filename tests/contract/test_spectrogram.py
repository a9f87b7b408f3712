"""The Kaggle HMS spectrogram representation: Kaggle's grid, window spectrograms at 256 Hz, and
agreement with a real Kaggle spectrogram's values."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from eegfm.contract.channels import CANONICAL_CHANNELS
from eegfm.contract.spectrogram import (
    CHAINS,
    FRAME_STEP_S,
    FREQUENCIES_HZ,
    HMS_SFREQ,
    N_SPECTROGRAM_ROWS,
    PowerStream,
    kaggle_window,
    log_power,
    row_names,
    window_spectrogram,
)
from eegfm.core.dsp.resample import resample
from eegfm.pipelines.datasets import LabeledWindow, SourceItem
from eegfm.pipelines.job.process import process_recording
from eegfm.pipelines.job.process_io import PreprocessConfig, Window

KEY = b"a-test-key-of-32-bytes-for-hmac!"
# Log-power tolerance between two different recordings' distributions: one log1p unit is a factor
# of e in (power + 1), far below the tens of units between EEG and a wrong scale (V vs µV).
LOG_TOLERANCE = 1.0


@pytest.fixture(scope="module")
def kaggle(shared_data):
    """The real Kaggle spectrogram 1000189855: (time, power (n, 400))."""
    table = pq.read_table(shared_data / "hms" / "train_spectrograms" / "1000189855.parquet")
    power = np.column_stack([table.column(name).to_numpy() for name in row_names()])
    return table.column("time").to_numpy(), power, table.column_names


@pytest.fixture(scope="module")
def ours(shared_data):
    """The pipeline's spectrogram of the real HMS EEG 1000913311 (a different recording): its one
    50 s window, harmonized, resampled to 256 Hz and filtered, as the records store it."""
    item = SourceItem(
        path=str(shared_data / "hms" / "train_eegs" / "1000913311.parquet"),
        dataset="hms",
        site="hms",
        subject_key="42",
        task="hms6",
        windows=(LabeledWindow(0.0, 50.0, 1, (0.0, 3.0, 1.0, 0.0, 0.0, 0.0), "hms6"),),
    )
    config = PreprocessConfig()
    (window,) = [e.record for e in process_recording(item, KEY, config, config.config_hash()) if isinstance(e, Window)]
    return window


def test_the_grid_is_kaggles(kaggle):
    times, _, columns = kaggle
    assert row_names() == columns[1:] and len(row_names()) == N_SPECTROGRAM_ROWS == 400
    assert row_names()[0] == "LL_0.59" and row_names()[-1] == "RP_19.92" and list(CHAINS) == ["LL", "RL", "LP", "RP"]
    np.testing.assert_allclose(FREQUENCIES_HZ, np.arange(3, 103) * 200 / 1024)
    labels = [float(name.split("_")[1]) for name in row_names()[:100]]
    np.testing.assert_allclose(labels, FREQUENCIES_HZ, atol=0.005)  # Kaggle's labels round to 0.01 Hz
    assert np.all(np.diff(times) == FRAME_STEP_S) and times[0] == 1


def test_the_pipeline_stores_kaggles_grid_and_value_distribution(ours, kaggle):
    """Different recordings, so values differ: their distributions of log1p power must overlap."""
    _, power, _ = kaggle
    theirs = log_power(power.T).reshape(4, 100, -1)
    mine = ours.spectrogram.astype(np.float32).reshape(4, 100, -1)
    assert ours.spectrogram.shape == (400, 25) and not np.isnan(mine).any()  # 50 s, every chain recorded
    for chain in range(4):
        ours_median, kaggle_median = np.median(mine[chain]), np.nanmedian(theirs[chain])
        assert abs(ours_median - kaggle_median) < LOG_TOLERANCE, (chain, ours_median, kaggle_median)
        ours_range = np.percentile(mine[chain], [5, 95])
        kaggle_range = np.nanpercentile(theirs[chain], [5, 95])
        np.testing.assert_allclose(ours_range, kaggle_range, atol=LOG_TOLERANCE, err_msg=f"chain {chain}")
    # Power falls with frequency in both: the lowest 20 bins (0.6-4.3 Hz) above the highest 20 (16-20 Hz).
    for values in (mine, theirs):
        low, high = np.nanmedian(values[:, :20]), np.nanmedian(values[:, -20:])
        assert low > high + 0.5, (low, high)


def test_a_window_at_256_hz_matches_the_same_signal_at_200_hz(shared_data):
    """Resampling to 256 Hz and back changes nothing below 20 Hz: the window's spectrogram equals
    the 200 Hz method applied to the recording as Kaggle has it."""
    table = pq.read_table(shared_data / "hms" / "train_eegs" / "1000913311.parquet")
    eeg_200 = np.stack([table.column(c).to_numpy() for c in CANONICAL_CHANNELS]).astype(np.float64)
    stream = PowerStream(eeg_200.shape[1])
    _, power = stream.feed(eeg_200)
    direct = log_power(np.concatenate([power, stream.finish()[1]]).T)
    at_256 = resample(eeg_200, HMS_SFREQ, 256.0)
    ours = window_spectrogram(at_256, np.ones(19))
    assert ours.shape == direct.shape == (400, 25) and ours.dtype == np.float32
    assert np.median(np.abs(ours - direct)) < 0.01 and np.abs(ours - direct).max() < 0.1


def test_interpolated_channels_count_as_not_recorded(shared_data):
    table = pq.read_table(shared_data / "hms" / "train_eegs" / "1000913311.parquet")
    eeg = resample(np.stack([table.column(c).to_numpy() for c in CANONICAL_CHANNELS])[:, :2560], 200, 256.0)
    mask = np.ones(19)
    for name in ("Fp2", "F8", "T4", "T6", "O2", "P4"):  # every RL pair, and the RP pairs with P4
        mask[CANONICAL_CHANNELS.index(name)] = 0
    spectrogram = window_spectrogram(eeg, mask)
    full = window_spectrogram(eeg, np.ones(19))
    assert spectrogram.shape == (400, int(12.8 // 2)) and spectrogram.dtype == np.float32
    assert np.isnan(spectrogram[100:200]).all()  # RL: no recorded pair
    np.testing.assert_array_equal(spectrogram[:100], full[:100])  # LL, LP untouched
    np.testing.assert_array_equal(spectrogram[200:300], full[200:300])
    rp = spectrogram[300:]  # RP keeps F4-C4 only: that pair's power, not the four pairs' mean
    assert not np.isnan(rp).any() and not np.array_equal(rp, full[300:])


def test_a_sine_shows_at_its_frequency_in_the_chains_with_its_channel():
    t = np.arange(10 * 256) / 256
    eeg = np.zeros((19, len(t)))
    eeg[CANONICAL_CHANNELS.index("C3")] = 30 * np.sin(2 * np.pi * 6.25 * t)  # bin 32: Kaggle's 6.25 Hz
    spectrogram = window_spectrogram(eeg, np.ones(19))
    assert spectrogram.shape == (400, 5)
    peak = np.argmax(spectrogram.mean(axis=1))
    assert row_names()[peak] == "LP_6.25"
    assert np.nanmax(spectrogram[:100]) < 1e-3  # LL holds no C3 pair: nothing there


def test_kaggle_window_takes_ten_minutes_from_the_offset_as_log_power(kaggle):
    times, power, _ = kaggle
    window = kaggle_window(times, power, 20.0)
    assert window.shape == (400, 300) and window.dtype == np.float32
    first = int(np.flatnonzero(times == 21)[0])
    np.testing.assert_allclose(window[:, 0], np.log1p(power[first]), rtol=1e-6)
    np.testing.assert_allclose(window[:, -1], np.log1p(power[first + 299]), rtol=1e-6)
    assert kaggle_window(times, power, 5000.0).shape == (400, 0)
    holes = power.copy()
    holes[first, :3] = np.nan
    assert np.isnan(kaggle_window(times, holes, 20.0)[:3, 0]).all()  # NaN stays NaN


def test_window_spectrogram_names_bad_shapes():
    with pytest.raises(ValueError, match=r"eeg_uv: expected shape \(19, n_times\)"):
        window_spectrogram(np.zeros((18, 512)), np.ones(19))
    with pytest.raises(ValueError, match="channel_mask: expected 19 flags"):
        window_spectrogram(np.zeros((19, 512)), np.ones(18))
    assert window_spectrogram(np.zeros((19, 256)), np.ones(19)).shape == (400, 0)  # under 2 s: no frame
