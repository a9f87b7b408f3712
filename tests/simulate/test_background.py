"""Background EEG: 1/f slope, spatial correlation, posterior alpha, sleep, chunk invariance."""

import numpy as np
import pytest
from scipy import signal

from eegfm.contract.channels import CANONICAL_CHANNELS
from eegfm.simulate.background import (
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
    assert 5 < np.median(x.std(axis=1)) < 40  # about 10 µV RMS, as real scalp EEG


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


def test_eyes_opening_blocks_the_posterior_alpha():
    x = _run(BackgroundParams(alpha_uv=15.0, open_alpha=0.25, open_intervals=((60.0, 120.0),)))
    o1 = _index("O1")[0]
    closed, opened = x[o1 : o1 + 1, 5 * SFREQ : 55 * SFREQ], x[o1 : o1 + 1, 65 * SFREQ : 115 * SFREQ]

    def alpha(seg):
        freqs, psd = signal.welch(seg, fs=SFREQ, nperseg=4 * SFREQ)
        return psd[:, (freqs >= 8) & (freqs <= 12)].sum()

    assert alpha(opened) < 0.3 * alpha(closed)


def test_drowsiness_drops_alpha_and_raises_theta():
    x = _run(BackgroundParams(alpha_uv=15.0, drowsy_intervals=((60.0, 120.0),), drowsy_theta_uv=8.0))
    x = x[_index("O1", "O2")]
    awake, drowsy = x[:, 5 * SFREQ : 55 * SFREQ], x[:, 70 * SFREQ : 120 * SFREQ]

    def power(seg, lo, hi):
        freqs, psd = signal.welch(seg, fs=SFREQ, nperseg=4 * SFREQ)
        return psd[:, (freqs >= lo) & (freqs <= hi)].sum()

    assert power(drowsy, 4.5, 7.5) > 2 * power(awake, 4.5, 7.5)
    assert power(drowsy, 8, 12) < 0.5 * power(awake, 8, 12)


def test_states_cover_the_recording_with_sleep_over_drowsy_over_open():
    params = BackgroundParams(
        open_intervals=((0.0, 30.0), (50.0, 90.0)), drowsy_intervals=((80.0, 100.0),), sleep_intervals=((95.0, 150.0),)
    )
    states = params.states(160)
    assert [s["state"] for s in states] == ["open", "closed", "open", "drowsy", "sleep", "closed"]
    assert states[0]["start_s"] == 0.0 and states[-1]["end_s"] == 160.0
    assert all(a["end_s"] == b["start_s"] for a, b in zip(states, states[1:]))


def test_chunking_does_not_change_states_spindles_and_reference_activity():
    params = BackgroundParams(
        open_intervals=((5.0, 12.0),),
        drowsy_intervals=((12.0, 20.0),),
        sleep_intervals=((20.0, 40.0),),
        spindle_times=(25.0, 31.5),
    )
    np.testing.assert_allclose(_run(params, 40), _run(params, 40, chunk=997), rtol=0, atol=1e-9)


def test_broadband_correlation_falls_with_distance():
    corr = np.corrcoef(_run(BackgroundParams(alpha_uv=0.0, theta_uv=0.0), 60))
    from eegfm.simulate.realism_stats import electrode_distances

    dist = electrode_distances()
    upper = np.triu(np.ones_like(dist, dtype=bool), 1)
    near, far = corr[upper & (dist < 0.8)].mean(), corr[upper & (dist >= 1.4)].mean()
    assert near > 0.6 and far < near - 0.2


def test_invalid_background_params_are_refused():
    with pytest.raises(ValueError, match="exponent"):
        BackgroundParams(exponent=5.0)
    with pytest.raises(ValueError, match="channel_scale"):
        BackgroundParams(channel_scale=(1.0,))


def test_polymorphic_slowing_adds_irregular_delta_on_its_side():
    """Slowing is delta power without a rhythm (no narrow spectral peak, unlike LRDA/GRDA), larger
    over the hemisphere it is given."""
    plain = _run(BackgroundParams(), seconds=120)
    slowed = _run(BackgroundParams(slowing_uv=20.0, slowing_sides=(1.0, 0.3)), seconds=120)
    freqs, psd_plain = signal.welch(plain, fs=SFREQ, nperseg=8 * SFREQ)
    _, psd_slowed = signal.welch(slowed, fs=SFREQ, nperseg=8 * SFREQ)
    delta = (freqs >= 1) & (freqs <= 4)
    left, right = _index("F3", "C3", "P3"), _index("F4", "C4", "P4")
    added = psd_slowed[:, delta] - psd_plain[:, delta]
    assert added[left].sum() > 3 * added[right].sum() > 0
    spectrum = added[left].mean(axis=0)
    assert spectrum.max() < 3 * np.median(spectrum)  # broadband within delta: no rhythm's peak


def test_slowing_params_are_checked():
    with pytest.raises(ValueError, match="slowing_sides"):
        BackgroundParams(slowing_uv=10.0, slowing_sides=(1.0, 1.5))
    with pytest.raises(ValueError, match="slowing_uv"):
        BackgroundParams(slowing_uv=-1.0)
