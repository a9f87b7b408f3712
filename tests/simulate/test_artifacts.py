"""Artifacts and auxiliary signals: each has the morphology a reviewer (or a detector) keys on,
with sizes checked against real recordings (../shared/data, used by path)."""

import dataclasses

import mne
import numpy as np
import pytest
from scipy import signal, stats

from eegfm.contract.channels import CANONICAL_CHANNELS
from eegfm.simulate.artifacts import (
    BLINK_FIELD,
    EyeMovement,
    MuscleBurst,
    Pop,
    blink_kernel,
    blink_signal,
    eye_movement_signal,
    plan_artifacts,
    render_blinks,
    render_ecg,
    render_line_noise,
    render_muscle,
    render_photic,
    render_pops,
)
from eegfm.simulate.sites import SiteProfile

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


def _index(*names):
    return [CANONICAL_CHANNELS.index(n) for n in names]


def _width(tau, v, level):
    above = tau[v > level * v.max()]
    return above[-1] - above[0]


def test_blinks_are_frontal_positive_and_brief():
    plan = _plan()
    assert len(plan.blink_times) > 5
    x = render_blinks(T, dataclasses.replace(plan, eye_movements=()))
    fp1, fp2, f3, f4, f7, f8, c3, o1 = _index("Fp1", "Fp2", "F3", "F4", "F7", "F8", "C3", "O1")
    peak = np.abs(x).max(axis=1)
    assert x[fp1].max() == peak[fp1] and x[fp1].max() > 0  # positive at Fp1
    assert peak[fp1] == pytest.approx(peak[fp2])
    for c in (f3, f4, f7, f8):  # smaller, but present, at F3/F4/F7/F8
        assert 0.25 * peak[fp1] < peak[c] < 0.6 * peak[fp1]
    assert peak[fp1] > 5 * peak[c3] and peak[fp1] > 20 * peak[o1]
    tau = np.arange(0, 1.5, 1 / SFREQ)
    for scale in (0.7, 1.1):  # a blink lasts a few hundred milliseconds
        kernel = blink_kernel(tau / scale)
        assert 0.12 <= _width(tau, kernel, 0.5) <= 0.25 and 0.25 <= _width(tau, kernel, 0.1) <= 0.45
    assert np.all((plan.blink_scales >= 0.7) & (plan.blink_scales <= 1.1))
    assert np.all(np.diff(plan.blink_times) >= 0.8)
    assert np.all((plan.blink_amplitudes >= 40.0) & (plan.blink_amplitudes <= 450.0))
    assert blink_signal(T, plan).max() > 60.0


def test_eye_events_follow_the_eyes_open_blocks():
    site = SiteProfile(blink_rate_per_min=20.0)
    always = plan_artifacts(np.random.default_rng(4), 600.0, site)
    blocks = ((0.0, 100.0), (300.0, 400.0))
    plan = plan_artifacts(np.random.default_rng(4), 600.0, site, open_intervals=blocks)
    opened = (plan.blink_times < 100.0) | ((plan.blink_times >= 300.0) & (plan.blink_times < 400.0))
    assert opened.sum() > 2 * (~opened).sum() > 0  # a third of the time open, most blinks
    assert len(plan.blink_times) < len(always.blink_times)


def test_lateral_eye_movements_have_opposite_polarity_at_f7_and_f8():
    move = EyeMovement(time_s=10.0, hold_s=1.0, amplitude_uv=50.0)
    plan = dataclasses.replace(
        _plan(),
        blink_times=np.array([]),
        blink_amplitudes=np.array([]),
        blink_scales=np.array([]),
        eye_movements=(move,),
    )
    x = render_blinks(T, plan)
    f7, f8, o1 = _index("F7", "F8", "O1")
    held = x[:, int(10.2 * SFREQ) : int(10.9 * SFREQ)]
    assert np.allclose(held[f7], 50.0) and np.allclose(held[f8], -50.0) and not x[o1].any()
    assert not eye_movement_signal(T[T > 11.1], plan).any()  # gaze back after the fixation
    assert len(_plan().eye_movements) > 0


def test_muscle_bursts_are_broadband_spiky_and_local():
    burst = MuscleBurst(start_s=10.0, duration_s=2.0, side="left", amplitude_uv=30.0, seed=7)
    plan = dataclasses.replace(_plan(), muscle=(burst,))
    eeg = np.zeros((len(CANONICAL_CHANNELS), len(T)))
    emg = render_muscle(T, plan, SFREQ, out=eeg)
    t3, t4 = _index("T3", "T4")
    inside = eeg[:, int(10.3 * SFREQ) : int(11.7 * SFREQ)]
    freqs, psd = signal.welch(inside[t3], fs=SFREQ, nperseg=256)
    assert psd[freqs > 20].sum() > 20 * psd[freqs < 15].sum()
    assert psd[(freqs > 60) & (freqs < 150)].sum() > 0.2 * psd[(freqs > 20) & (freqs < 150)].sum()  # broadband
    peak = int(np.argmax(inside.std(axis=1)))
    assert stats.kurtosis(inside[peak]) > 1.0  # motor-unit spikes, not Gaussian noise
    assert inside[peak].std() == pytest.approx(30.0, rel=0.25)
    assert eeg[t3].std() > 5 * eeg[t4].std()  # left-sided
    assert emg.std() > 0 and not eeg[:, : int(9 * SFREQ)].any()
    # A burst cut by a chunk boundary renders identically, at every site rate.
    halves = np.zeros_like(eeg)
    render_muscle(T[:5500], plan, SFREQ, out=halves[:, :5500])
    render_muscle(T[5500:], plan, SFREQ, out=halves[:, 5500:])
    np.testing.assert_array_equal(halves, eeg)
    for sfreq in (128, 200, 256, 1024):
        t = np.arange(0, 15 * sfreq) / sfreq
        x = np.zeros((len(CANONICAL_CHANNELS), len(t)))
        render_muscle(t, plan, sfreq, out=x)
        assert 20.0 < x[:, int(10.3 * sfreq) : int(11.7 * sfreq)].std(axis=1).max() < 40.0


def test_electrode_pop_is_a_single_channel_step_with_exponential_decay():
    pop = Pop(time_s=20.0, channel=3, amplitude_uv=150.0, decay_s=0.3)
    x = render_pops(T, dataclasses.replace(_plan(), pops=(pop,)))
    assert np.count_nonzero(np.abs(x).max(axis=1)) == 1  # no field
    i = int(20 * SFREQ)
    assert x[3, i] == 150.0 and x[3, i - 1] == 0.0
    assert np.isclose(x[3, i + int(0.3 * SFREQ)], 150.0 * np.exp(-1.0))
    pops = [p for seed in range(20) for p in _plan(seed, pop_rate_per_min=10.0).pops]
    assert all(50.0 <= abs(p.amplitude_uv) <= 500.0 and 0.1 <= p.decay_s <= 1.0 for p in pops)
    plan = _plan(3, pop_rate_per_min=20.0)
    channels = [p.channel for p in plan.pops]
    assert max(channels.count(c) for c in channels) > 0.5 * len(channels)  # a loose electrode


def test_line_noise_has_the_mains_frequency_and_differs_per_channel():
    for line in (50.0, 60.0):
        plan = _plan(line_freq=line)
        x = render_line_noise(T, plan, SFREQ)
        freqs, psd = signal.welch(x, fs=SFREQ, nperseg=int(4 * SFREQ))
        assert abs(freqs[np.argmax(psd.mean(axis=0))] - line) < 0.5
        for multiple in (2, 3):
            harmonic = np.argmin(np.abs(freqs - multiple * line))
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


# ---------------------------------------------------------------------------------------------
# Against real recordings
# ---------------------------------------------------------------------------------------------


def _real_eeg(path):
    raw = mne.io.read_raw(path, preload=True, verbose="error")
    return raw.get_data() * 1e6, raw.info["sfreq"], raw.ch_names


def test_artifact_sizes_match_real_recordings(shared_data):
    # Real blinks: YASA's eyes-open resting recording, F4-A1 (F4 sees ~0.4 of Fp2).
    x, sfreq, _ = _real_eeg(shared_data / "formats" / "fif" / "data_resting_EO_200Hz_raw.fif")
    band = signal.butter(2, [0.3, 15.0], btype="bandpass", fs=sfreq, output="sos")
    f4 = signal.sosfiltfilt(band, x[0])
    peaks, _ = signal.find_peaks(f4, height=6 * np.median(np.abs(f4)), distance=int(0.6 * sfreq))
    assert len(peaks) > 10
    real_blink = np.median(f4[peaks])
    simulated = np.concatenate([_plan(seed).blink_amplitudes for seed in range(10)])
    simulated_f4 = np.median(simulated) * BLINK_FIELD[CANONICAL_CHANNELS.index("F4")]
    assert 0.5 * real_blink < simulated_f4 < 2.0 * real_blink, (real_blink, simulated_f4)
    # Real muscle: a temporal burst of an eegmat rest recording recorded up to 250 Hz (20-150 Hz).
    x, sfreq, names = _real_eeg(shared_data / "eegmat" / "Subject01_1.edf")
    t3 = x[names.index("EEG T3")]
    for f0 in (50.0, 100.0, 150.0):
        t3 = signal.filtfilt(*signal.iirnotch(f0, 30.0, sfreq), t3)
    high = signal.sosfiltfilt(signal.butter(4, [20.0, 150.0], btype="bandpass", fs=sfreq, output="sos"), t3)
    rms = np.sqrt(np.convolve(high**2, np.ones(int(0.25 * sfreq)) / int(0.25 * sfreq), mode="same"))
    assert 8.0 <= np.percentile(rms, 99.5) <= 50.0  # within the simulated bursts' 8-35 µV RMS (x1.4)
    # Real background (eegmat Subject00 rest): blinks and pops stand well above it, muscle above its
    # high-frequency floor.
    x, _, _ = _real_eeg(shared_data / "eegmat" / "Subject00_1.edf")
    background = np.median(np.abs(x[:19] - np.median(x[:19], axis=1, keepdims=True)))
    assert 3.0 < background < 15.0
    assert np.percentile(simulated, 5) > 5 * background and 50.0 > 5 * background
    assert np.median(rms) < 8.0
