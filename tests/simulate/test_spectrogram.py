"""HMS-style spectrograms: Kaggle's columns, frequency placement, streaming, missing channels."""

import numpy as np
import pyarrow.parquet as pq
import pytest

from eegfm.contract.channels import CANONICAL_CHANNELS
from eegfm.simulate.spectrogram import (
    CHAINS,
    FREQ_BINS,
    HMS_SFREQ,
    NFFT,
    SpectrogramStream,
    n_rows,
    spectrogram_columns,
)
from tests.simulate.measures import REAL_SPECTROGRAM


def test_columns_are_exactly_kaggles():
    assert spectrogram_columns() == pq.read_schema(REAL_SPECTROGRAM).names
    assert spectrogram_columns()[1] == "LL_0.59" and spectrogram_columns()[-1] == "RP_19.92"


def _sine_eeg(seconds, freq, channel="T3"):
    t = np.arange(seconds * HMS_SFREQ) / HMS_SFREQ
    x = np.zeros((len(CANONICAL_CHANNELS), len(t)))
    x[CANONICAL_CHANNELS.index(channel)] = 50.0 * np.sin(2 * np.pi * freq * t)
    return x


def _run(x, chunk):
    stream = SpectrogramStream(x.shape[1])
    rows = [stream.feed(x[:, start : start + chunk]) for start in range(0, x.shape[1], chunk)]
    return np.concatenate([*rows, stream.finish()], axis=0)


def test_a_sine_shows_in_the_chains_containing_its_channel_at_its_frequency():
    rows = _run(_sine_eeg(60, 6.25), 60 * HMS_SFREQ)
    assert rows.shape == (30, 401)
    np.testing.assert_array_equal(rows[:, 0], np.arange(1, 60, 2))
    spectra = rows[:, 1:].reshape(len(rows), 4, len(FREQ_BINS))
    freqs = FREQ_BINS * HMS_SFREQ / NFFT
    chains = list(CHAINS)
    assert freqs[np.argmax(spectra[10, chains.index("LL")])] == pytest.approx(6.25)
    assert spectra[:, chains.index("RL")].max() == 0.0  # T3 is only in the left lateral chain
    assert spectra[:, chains.index("LP")].max() == 0.0


def test_streaming_does_not_change_rows():
    x = _sine_eeg(47, 3.0) + np.random.default_rng(0).standard_normal((19, 47 * HMS_SFREQ))
    np.testing.assert_array_equal(_run(x, 47 * HMS_SFREQ), _run(x, 333))
    assert n_rows(47 * HMS_SFREQ) == 23


def test_pairs_with_missing_channels_are_left_out_of_the_chain_average():
    x = np.random.default_rng(1).standard_normal((19, 20 * HMS_SFREQ))
    x[CANONICAL_CHANNELS.index("T5")] = np.nan
    for c in ("Fp2", "F8", "T4", "T6"):
        x[CANONICAL_CHANNELS.index(c)] = np.nan
    spectra = _run(x, 20 * HMS_SFREQ)[:, 1:].reshape(10, 4, len(FREQ_BINS))
    assert np.isfinite(spectra[:, 0]).all()  # LL keeps Fp1-F7 and F7-T3
    assert np.isnan(spectra[:, 1]).all()  # RL has no pair left
