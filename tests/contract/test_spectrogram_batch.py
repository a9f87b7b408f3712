"""A batch of windows through ``window_spectrogram`` gives, bit for bit, what each window gives
alone by the streaming method (:class:`PowerStream` over the window resampled to 200 Hz), on real
EEG with per-window channel masks."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from eegfm.contract import spectrogram
from eegfm.contract.channels import CANONICAL_CHANNELS
from eegfm.contract.spectrogram import HMS_SFREQ, PowerStream, log_power, window_spectrogram
from eegfm.core.dsp.resample import resample
from eegfm.pipelines.readers import open_recording


def _one_window(eeg: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The per-window definition: resample to 200 Hz, unrecorded channels NaN, stream the frames."""
    at_200 = resample(eeg, 256.0, HMS_SFREQ).astype(np.float64)
    at_200[mask == 0] = np.nan
    stream = PowerStream(at_200.shape[1])
    _, power = stream.feed(at_200)
    _, rest = stream.finish()
    return log_power(np.concatenate([power, rest]).T)


@pytest.fixture(scope="module")
def eegmat_256(shared_data) -> np.ndarray:
    """Subject00_1 of eegmat (500 Hz), its 19 canonical channels at 256 Hz."""
    with open_recording(shared_data / "eegmat" / "Subject00_1.edf") as reader:
        names = list(reader.info.ch_names)
        data = reader.read(0, reader.info.n_times)
    rows = [names.index(f"EEG {name}") for name in CANONICAL_CHANNELS]
    return resample(np.asarray(data, dtype=np.float32)[rows], 500.0, 256.0)


@pytest.fixture(scope="module")
def hms_256(shared_data) -> np.ndarray:
    """The HMS EEG 1000913311 (200 Hz), its 19 canonical channels at 256 Hz."""
    table = pq.read_table(shared_data / "hms" / "train_eegs" / "1000913311.parquet")
    return resample(np.stack([table.column(c).to_numpy() for c in CANONICAL_CHANNELS]), HMS_SFREQ, 256.0)


def _masks(n_windows: int, seed: int) -> np.ndarray:
    """All channels for most windows; a third with 1-5 channels interpolated, and the second
    without F8 and T6, so without a recorded pair in the RL chain."""
    masks = np.ones((n_windows, len(CANONICAL_CHANNELS)), dtype=np.int64)
    rng = np.random.default_rng(seed)
    for w in rng.choice(n_windows, size=n_windows // 3, replace=False):
        masks[w, rng.choice(len(CANONICAL_CHANNELS), size=rng.integers(1, 6), replace=False)] = 0
    masks[1, [CANONICAL_CHANNELS.index("F8"), CANONICAL_CHANNELS.index("T6")]] = 0
    return masks


@pytest.mark.parametrize("seconds", [10.0, 40.0, 7.3])
@pytest.mark.parametrize("source", ["eegmat_256", "hms_256"])
def test_a_batch_equals_each_window_alone(request, source, seconds):
    eeg = request.getfixturevalue(source)
    size = int(round(seconds * 256))
    starts = range(0, eeg.shape[1] - size + 1, size // 4)  # overlapping windows, as a stride cuts them
    windows = np.stack([eeg[:, s : s + size] for s in starts])
    masks = _masks(len(windows), seed=size)
    batch = window_spectrogram(windows, masks)
    expected = np.stack([_one_window(w, m) for w, m in zip(windows, masks)])
    assert batch.shape == expected.shape == (len(windows), 400, int(seconds // 2)) and batch.dtype == np.float32
    np.testing.assert_array_equal(batch, expected)  # NaN (chains not recorded) in the same places
    assert np.isnan(batch[1, 100:200]).all() and not np.isnan(batch[masks.all(axis=1)]).any()
    for w in (0, len(windows) - 1):  # one window alone: the same again
        np.testing.assert_array_equal(window_spectrogram(windows[w], masks[w]), expected[w])


def test_windows_in_several_groups_equal_one_group(eegmat_256, monkeypatch):
    windows = np.stack([eegmat_256[:, s : s + 2560] for s in range(0, 15 * 2560, 2560)])
    masks = _masks(len(windows), seed=3)
    whole = window_spectrogram(windows, masks)
    monkeypatch.setattr(spectrogram, "_MAX_FRAME_SAMPLES", 1)  # one window a group
    np.testing.assert_array_equal(window_spectrogram(windows, masks), whole)


def test_a_batch_names_bad_shapes_and_handles_empty_ones():
    with pytest.raises(ValueError, match=r"channel_mask: expected 19 flags in canonical order per window"):
        window_spectrogram(np.zeros((3, 19, 2560)), np.ones(19))
    with pytest.raises(ValueError, match=r"eeg_uv: expected shape \(19, n_times\)"):
        window_spectrogram(np.zeros((2, 3, 19, 2560)), np.ones((2, 3, 19)))
    assert window_spectrogram(np.zeros((4, 19, 256)), np.ones((4, 19))).shape == (4, 400, 0)
    assert window_spectrogram(np.zeros((0, 19, 2560)), np.ones((0, 19))).shape == (0, 400, 5)


def test_the_chain_mean_without_nan_is_the_nan_aware_mean():
    """All pairs recorded takes a shortcut past the NaN handling: the same values, bit for bit."""
    psd = np.random.default_rng(4).gamma(1.0, 50.0, size=(3, 16, 5, 100))
    chains = psd.reshape(3, 4, 4, 5, 100)
    count = (~np.isnan(chains)).sum(axis=2)
    nan_aware = np.where(count > 0, np.nansum(chains, axis=2) / np.maximum(count, 1), np.nan)
    np.testing.assert_array_equal(spectrogram._chain_mean(psd, axis=1), nan_aware)
    psd[0, 4:8] = np.nan  # the RL chain of the first window not recorded
    np.testing.assert_array_equal(spectrogram._chain_mean(psd, axis=1)[1:], nan_aware[1:])
    assert np.isnan(spectrogram._chain_mean(psd, axis=1)[0, 1]).all()
