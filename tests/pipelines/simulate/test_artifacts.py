"""Artifacts and auxiliary signals: each has the signature a reviewer (or a detector) keys on."""

import dataclasses

import numpy as np
from scipy import signal

from eegfm.pipelines.channels import CANONICAL_CHANNELS
from eegfm.pipelines.simulate.artifacts import (
    MuscleBurst,
    Pop,
    blink_kernel,
    blink_signal,
    plan_artifacts,
    render_blinks,
    render_ecg,
    render_line_noise,
    render_muscle,
    render_photic,
    render_pops,
)
from eegfm.pipelines.simulate.sites import SiteProfile

SFREQ = 500.0
T = np.arange(0, 60 * SFREQ) / SFREQ


def _plan(seed=0, **overrides):
    site = SiteProfile(
        blink_rate_per_min=15.0,
        muscle_rate_per_min=4.0,
        pop_rate_per_min=3.0,
        drift_uv=20.0,
        line_freq=50.0,
        line_noise_uv=5.0,
        aux_channels=("ecg", "photic"),
    )
    return plan_artifacts(np.random.default_rng(seed), 60.0, site.replace(**overrides))


def test_blinks_are_frontal_and_brief():
    plan = _plan()
    assert len(plan.blink_times) > 5
    x = render_blinks(T, plan)
    fp1, o1 = CANONICAL_CHANNELS.index("Fp1"), CANONICAL_CHANNELS.index("O1")
    assert np.abs(x[fp1]).max() > 20 * np.abs(x[o1]).max()
    tau = np.arange(0, 1.0, 1 / SFREQ)
    above = tau[blink_kernel(tau) > 0.1]
    assert 0.15 < above[-1] - above[0] < 0.6  # a blink lasts a few hundred milliseconds
    assert np.all(np.diff(plan.blink_times) >= 0.8)
    assert blink_signal(T, plan).max() > 60.0


def test_muscle_bursts_are_broadband_above_20_hz():
    burst = MuscleBurst(start_s=10.0, duration_s=2.0, side="left", amplitude_uv=30.0, seed=7)
    plan = dataclasses.replace(_plan(), muscle=(burst,))
    eeg = np.zeros((len(CANONICAL_CHANNELS), len(T)))
    emg = render_muscle(T, plan, SFREQ, out=eeg)
    t3, t4 = CANONICAL_CHANNELS.index("T3"), CANONICAL_CHANNELS.index("T4")
    freqs, psd = signal.welch(eeg[t3, int(10 * SFREQ) : int(12 * SFREQ)], fs=SFREQ, nperseg=256)
    assert psd[freqs > 20].sum() > 20 * psd[freqs < 15].sum()
    assert eeg[t3].std() > 5 * eeg[t4].std()  # left-sided
    assert emg.std() > 0 and not eeg[:, : int(9 * SFREQ)].any()
    # A burst cut by a chunk boundary renders identically.
    halves = np.zeros_like(eeg)
    render_muscle(T[:5500], plan, SFREQ, out=halves[:, :5500])
    render_muscle(T[5500:], plan, SFREQ, out=halves[:, 5500:])
    np.testing.assert_array_equal(halves, eeg)


def test_electrode_pop_is_a_single_channel_step_with_exponential_decay():
    pop = Pop(time_s=20.0, channel=3, amplitude_uv=150.0, decay_s=0.3)
    x = render_pops(T, dataclasses.replace(_plan(), pops=(pop,)))
    assert np.count_nonzero(np.abs(x).max(axis=1)) == 1
    i = int(20 * SFREQ)
    assert x[3, i] == 150.0 and x[3, i - 1] == 0.0
    assert np.isclose(x[3, i + int(0.3 * SFREQ)], 150.0 * np.exp(-1.0))


def test_line_noise_has_the_mains_frequency_and_differs_per_channel():
    for line in (50.0, 60.0):
        plan = _plan(line_freq=line)
        x = render_line_noise(T, plan, SFREQ)
        freqs, psd = signal.welch(x, fs=SFREQ, nperseg=int(4 * SFREQ))
        assert abs(freqs[np.argmax(psd.mean(axis=0))] - line) < 0.5
        harmonic = np.argmin(np.abs(freqs - 2 * line))
        assert psd[:, harmonic].mean() > 100 * np.median(psd)
        assert x.std(axis=1).max() > 2 * x.std(axis=1).min()
    low_rate = render_line_noise(np.arange(0, 10 * 160) / 160, _plan(line_freq=60.0), 160)
    freqs, psd = signal.welch(low_rate, fs=160, nperseg=640)
    assert psd[:, freqs > 70].max() < 1e-6  # harmonics beyond the anti-aliasing band left out


def test_ecg_has_qrs_complexes_at_a_heart_rate():
    plan = _plan()
    ecg = render_ecg(T, plan)
    peaks, _ = signal.find_peaks(ecg, height=0.5 * ecg.max(), distance=int(0.3 * SFREQ))
    rate = 60.0 / np.median(np.diff(T[peaks]))
    assert 50 <= rate <= 105
    assert 500 < ecg.max() < 2000  # about a millivolt


def test_photic_marker_flashes_at_the_train_frequency():
    plan = _plan()
    driving = np.zeros((len(CANONICAL_CHANNELS), len(T)))
    marker = render_photic(T, plan, out=driving)
    start, end, freq = plan.photic_trains[0]
    inside = (T >= start) & (T < end)
    flashes = np.flatnonzero(np.diff(marker[inside]) > 0.5)
    assert abs(len(flashes) + 1 - freq * (end - start)) <= 1
    assert not marker[~inside & (T < start)].any()
