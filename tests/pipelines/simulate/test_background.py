"""Background EEG: 1/f slope, spatial correlation, posterior alpha, sleep, chunk invariance."""

import numpy as np
from scipy import signal

from eegfm.pipelines.channels import CANONICAL_CHANNELS
from eegfm.pipelines.simulate.background import (
    N_NOISE,
    BackgroundGenerator,
    BackgroundParams,
    pink_sos,
    smooth_intervals,
    spatial_mixing,
)

SFREQ = 250


def _run(params, seconds=120, chunk=None, seed=0):
    gen = BackgroundGenerator(params, SFREQ)
    noise = np.random.default_rng(seed).standard_normal((N_NOISE, seconds * SFREQ))
    t = np.arange(seconds * SFREQ) / SFREQ
    chunk = chunk or len(t)
    return np.concatenate(
        [gen.step(noise[:, i : i + chunk], t[i : i + chunk]) for i in range(0, len(t), chunk)], axis=1
    )


def _index(*names):
    return [CANONICAL_CHANNELS.index(n) for n in names]


def test_pink_filter_has_the_requested_slope_and_unit_rms():
    for exponent in (1.0, 1.6, 2.0):
        sos = pink_sos(SFREQ, exponent)
        freqs, response = signal.sosfreqz(sos, worN=2**14, fs=SFREQ)
        band = (freqs > 2) & (freqs < 60)
        slope = np.polyfit(np.log10(freqs[band]), np.log10(np.abs(response[band]) ** 2), 1)[0]
        assert abs(slope + exponent) < 0.15, (exponent, slope)
        x = signal.sosfilt(sos, np.random.default_rng(1).standard_normal(200_000))
        assert abs(x[10_000:].std() - 1.0) < 0.1


def test_neighbours_correlate_more_than_distant_electrodes():
    mixing = spatial_mixing()
    corr = mixing @ mixing.T
    fp1, f3, o2 = _index("Fp1", "F3", "O2")
    assert corr[fp1, f3] > 0.3 > corr[fp1, o2]
    np.testing.assert_allclose(np.diag(corr), 1.0)


def test_alpha_is_posterior_and_amplitudes_are_realistic():
    x = _run(BackgroundParams(alpha_freq=10.0, alpha_uv=20.0))
    freqs, psd = signal.welch(x, fs=SFREQ, nperseg=4 * SFREQ)
    alpha = psd[:, (freqs >= 8) & (freqs <= 12)].sum(axis=1)
    o1, o2, fp1, fp2 = _index("O1", "O2", "Fp1", "Fp2")
    assert min(alpha[o1], alpha[o2]) > 3 * max(alpha[fp1], alpha[fp2])
    peak = freqs[(freqs > 5) & (freqs < 15)][np.argmax(psd[o1][(freqs > 5) & (freqs < 15)])]
    assert abs(peak - 10.0) <= 0.75
    assert 10 < np.median(x.std(axis=1)) < 80  # tens of microvolts


def test_sleep_like_periods_have_more_delta_and_less_alpha():
    x = _run(BackgroundParams(sleep_intervals=((60.0, 120.0),), sleep_delta_uv=40.0))
    awake, asleep = x[:, 5 * SFREQ : 45 * SFREQ], x[:, 80 * SFREQ : 120 * SFREQ]

    def power(seg, lo, hi):
        freqs, psd = signal.welch(seg, fs=SFREQ, nperseg=4 * SFREQ)
        return psd[:, (freqs >= lo) & (freqs <= hi)].sum()

    assert power(asleep, 0.5, 3) > 2 * power(awake, 0.5, 3)
    assert power(asleep, 8, 12) < power(awake, 8, 12)


def test_chunking_does_not_change_the_background():
    params = BackgroundParams(sleep_intervals=((10.0, 30.0),))
    np.testing.assert_allclose(_run(params, 40), _run(params, 40, chunk=997), rtol=0, atol=1e-9)


def test_smooth_intervals_ramp_inside_the_interval():
    t = np.array([0.0, 10.0, 15.0, 20.0, 40.0, 50.0])
    w = smooth_intervals(t, np.array([[10.0, 50.0]]), ramp_s=10.0)
    np.testing.assert_allclose(w, [0.0, 0.0, 0.5, 1.0, 0.0 + 1.0, 0.0], atol=1e-12)
