"""Each HMS pattern's ACNS-defining property (Hirsch et al. 2021), measured on rendered signals."""

import numpy as np
import pytest
from scipy import signal, stats

from eegfm.contract.channels import CANONICAL_CHANNELS, canonical_positions
from eegfm.simulate.patterns import (
    PD_AMPLITUDE_UV,
    RDA_AMPLITUDE_UV,
    SEIZURE_AMPLITUDE_UV,
    Episode,
    discharge_waves,
    draw_episode,
    render_episodes,
    render_seizure,
    seizure_frequency,
    wavelets,
)
from tests.simulate.measures import (
    HEMISPHERE,
    dominant_frequency,
    envelope_periodicity,
    lateralization,
    onset_times,
)

SFREQ = 200.0
T = np.arange(0, 80 * SFREQ) / SFREQ
FRONT = [CANONICAL_CHANNELS.index(c) for c in ("Fp1", "Fp2", "F3", "F4", "Fz")]
BACK = [CANONICAL_CHANNELS.index(c) for c in ("O1", "O2", "P3", "P4", "Pz")]


def _episode(cls, seed=0, strength=0.8, start=0.0, end=80.0):
    return draw_episode(np.random.default_rng(seed), cls, start, end, strength)


def _render(episode, t=T):
    return render_episodes([episode], t)


def _interior(x, start_s=5.0, end_s=75.0):
    return x[:, int(start_s * SFREQ) : int(end_s * SFREQ)]


def _hemisphere_rms_ratio(x, side):
    """RMS over ``side``'s hemisphere divided by the other's (an amplitude ratio)."""
    other = "right" if side == "left" else "left"
    return float(np.sqrt(np.mean(x[HEMISPHERE[side]] ** 2) / np.mean(x[HEMISPHERE[other]] ** 2)))


def _peak_channel(x):
    return int(np.argmax(np.abs(x).max(axis=1)))


# ---------------------------------------------------------------------------------------------
# Rhythmic delta activity
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(6))
def test_rda_is_rhythmic_delta_at_1_to_4_hz_with_no_interval_between_waves(seed):
    for cls in ("LRDA", "GRDA"):
        episode = _episode(cls, seed)
        x = _interior(_render(episode))
        v = x[_peak_channel(x)]
        f = dominant_frequency(v, SFREQ, 0.4, 8.0)
        assert 1.0 <= f <= 4.0 and abs(f - episode.params["freq_hz"]) <= 0.5, (cls, f)
        # >= 6 cycles in a row, each rising zero crossing one period after the last.
        rising = np.flatnonzero((v[:-1] < 0) & (v[1:] >= 0)) / SFREQ
        periods = np.diff(rising)
        assert len(periods) >= 6
        assert np.all(np.abs(periods * episode.params["freq_hz"] - 1.0) < 0.3)
        # No interval: every period holds a wave of at least half the median size.
        sizes = [np.ptp(v[int(a * SFREQ) : int(b * SFREQ)]) for a, b in zip(rising[:-1], rising[1:])]
        assert min(sizes) > 0.5 * np.median(sizes)


@pytest.mark.parametrize("seed", range(4))
def test_lrda_is_lateralized_and_grda_generalized_and_frontally_predominant(seed):
    lrda, grda = _episode("LRDA", seed), _episode("GRDA", seed)
    x = _interior(_render(lrda))
    assert _hemisphere_rms_ratio(x, lrda.side) >= 2.0
    assert lateralization(x, SFREQ, 0.5, 4.0, lrda.side) > 4.0
    y = _interior(_render(grda))
    assert 0.95 < _hemisphere_rms_ratio(y, "left") < 1.05
    assert y[FRONT].std() > y[BACK].std()


# ---------------------------------------------------------------------------------------------
# Periodic discharges
# ---------------------------------------------------------------------------------------------


def _discharge_peaks(v, polarity):
    peaks, _ = signal.find_peaks(polarity * v, height=0.4 * np.max(polarity * v), distance=int(0.25 * SFREQ))
    return peaks


@pytest.mark.parametrize("seed", range(6))
def test_periodic_discharges_recur_at_0_5_to_3_hz_with_a_discernible_interval(seed):
    for cls in ("LPD", "GPD"):
        episode = _episode(cls, seed)
        x = _interior(_render(episode))
        v = x[_peak_channel(x)]
        main = max(episode.params["waves"][:2], key=lambda w: abs(w[2]))
        peaks = _discharge_peaks(v, np.sign(main[2]))
        intervals = np.diff(peaks) / SFREQ
        rate = 1.0 / np.median(intervals)
        assert 0.5 <= rate <= 3.0 and rate == pytest.approx(episode.params["rate_hz"], rel=0.1), (cls, rate)
        # Nearly regular: the period changes by <50 % between consecutive cycles in most pairs.
        change = np.abs(np.diff(intervals)) / intervals[:-1]
        assert np.mean(change < 0.5) > 0.9
        # A discernible interval: just before each discharge the signal is near baseline.
        before = [
            np.abs(v[p - int(0.3 * intervals.min() * SFREQ) : p - int(0.2 * intervals.min() * SFREQ)]).max()
            for p in peaks[1:]
        ]
        assert np.median(before) < 0.2 * np.abs(v[peaks]).mean(), cls
        at_period, at_half = envelope_periodicity(x, SFREQ, 1.0 / episode.params["rate_hz"])
        assert at_period > 0.5 and at_period > at_half + 0.3, (cls, at_period, at_half)


def _main_phase_duration(waves):
    """Width at 10 % of the largest phase: the discharge's duration at its base."""
    tau = np.arange(-0.5, 1.0, 0.0002)
    centre, width, amplitude, _ = max(waves[:3], key=lambda w: abs(w[2]) if not w[3] else 0)
    phase = amplitude * np.exp(-0.5 * ((tau - centre) / width) ** 2)
    above = tau[np.abs(phase) > 0.1 * abs(amplitude)]
    return above[-1] - above[0]


def test_discharges_are_spikes_or_sharp_waves_biphasic_or_triphasic():
    rng = np.random.default_rng(0)
    for _ in range(50):
        waves, morphology, _ = discharge_waves(rng, triphasic_p=0.5, plus_fast_p=0.3, max_extent_s=0.6)
        assert 0.05 <= _main_phase_duration(waves) <= 0.2  # ACNS: spike <70 ms, sharp 70-200 ms
        tau = np.arange(-0.6, 1.2, 0.0005)
        shape = wavelets(tau, waves)
        assert np.ptp(shape) == pytest.approx(1.0, abs=1e-3)
        if morphology == "triphasic":  # each phase longer than the previous, the positive highest
            (c1, w1, a1, _), (c2, w2, a2, _), (c3, w3, a3, _) = waves[:3]
            assert c1 < c2 < c3 and w1 < w2 < w3
            assert a1 < 0 < a2 and a3 < 0 and a2 > max(-a1, -a3)
        else:  # surface-negative main phase
            assert waves[0][2] < 0 and abs(waves[0][2]) > abs(waves[1][2])


@pytest.mark.parametrize("seed", range(4))
def test_lpd_is_lateralized_and_gpd_bilateral_synchronous_and_frontal(seed):
    lpd, gpd = _episode("LPD", seed), _episode("GPD", seed)
    x = _interior(_render(lpd))
    assert _hemisphere_rms_ratio(x, lpd.side) >= 2.0
    y = _interior(_render(gpd))
    assert 0.95 < _hemisphere_rms_ratio(y, "left") < 1.05
    left, right = CANONICAL_CHANNELS.index("F3"), CANONICAL_CHANNELS.index("F4")
    assert np.corrcoef(y[left], y[right])[0, 1] > 0.99  # same discharges, same time
    assert y[FRONT].std() > y[BACK].std()


def test_fields_fall_off_smoothly_over_neighbouring_electrodes():
    pos = canonical_positions()
    for seed in range(6):
        episode = _episode("LPD", seed)
        topography = np.asarray(episode.params["topography"])
        dist = np.linalg.norm(pos - pos[CANONICAL_CHANNELS.index(episode.focus)], axis=1)
        neighbours = (dist > 0) & (dist < 0.8)
        assert topography.max() == 1.0 and topography[CANONICAL_CHANNELS.index(episode.focus)] > 0.95
        assert np.all((topography[neighbours] > 0.15) & (topography[neighbours] < 0.95))
        assert np.all(topography[dist > 1.6] < 0.35)  # the far side: at most bilateral asymmetric


# ---------------------------------------------------------------------------------------------
# Amplitudes against the clinical ranges, and strength
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(4))
def test_amplitudes_are_clinical_and_grow_with_strength(seed):
    for cls, (low, high) in (("LPD", PD_AMPLITUDE_UV), ("GPD", PD_AMPLITUDE_UV), ("LRDA", RDA_AMPLITUDE_UV)):
        sizes = []
        for strength in (0.0, 0.5, 1.0):
            x = _interior(_render(_episode(cls, seed, strength=strength)), 10.0, 70.0)
            sizes.append(np.ptp(x[_peak_channel(x)][: int(4 * SFREQ)]))  # one discharge or wave
        assert 0.75 * low <= min(sizes) and max(sizes) <= 1.3 * high, (cls, sizes)
        assert sizes[0] < sizes[2]
    weak, strong = (_episode("Seizure", seed, strength=s, end=90.0) for s in (0.0, 1.0))
    for episode in (weak, strong):
        late = render_seizure(episode, np.arange(70 * SFREQ, 85 * SFREQ) / SFREQ)
        assert SEIZURE_AMPLITUDE_UV[0] * 0.75 <= np.ptp(late, axis=1).max() <= SEIZURE_AMPLITUDE_UV[1] * 1.3
    assert weak.params["amplitude_uv"] < strong.params["amplitude_uv"]


# ---------------------------------------------------------------------------------------------
# Seizures
# ---------------------------------------------------------------------------------------------


def _seizure(seed, start=0.0, end=90.0):
    episode = _episode("Seizure", seed, start=start, end=end)
    t = np.arange(0, end * SFREQ) / SFREQ
    return episode, render_seizure(episode, t)


@pytest.mark.parametrize("seed", range(6))
def test_seizure_evolves_in_frequency_staying_above_2_5_hz_and_grows(seed):
    episode, x = _seizure(seed)
    focus = x[CANONICAL_CHANNELS.index(episode.focus)]
    start = episode.params["rhythm_start_s"]
    early = focus[int((start + 2) * SFREQ) : int((start + 12) * SFREQ)]
    late = focus[int(65 * SFREQ) : int(75 * SFREQ)]
    f_early, f_late = dominant_frequency(early, SFREQ), dominant_frequency(late, SFREQ)
    assert abs(f_early - f_late) >= 1.5, (f_early, f_late)
    expected = seizure_frequency(
        np.array([70.0 - start]),
        episode.params["f_start_hz"],
        episode.params["f_end_hz"],
        episode.params["freq_time_constant_s"],
    )
    assert f_late == pytest.approx(expected[0], abs=1.0)
    ictal_end = episode.duration_s - episode.params["postictal_s"]
    for a in np.arange(start + 1.0, ictal_end - 10.0, 10.0):  # ACNS: >2.5 Hz in every 10 s
        assert dominant_frequency(focus[int(a * SFREQ) : int((a + 10) * SFREQ)], SFREQ, 1.0, 30.0) > 2.5
    assert late.std() > 1.5 * early.std()


@pytest.mark.parametrize("seed", range(6))
def test_seizure_morphology_sharpens_into_spike_and_wave(seed):
    episode, x = _seizure(seed)
    focus = x[CANONICAL_CHANNELS.index(episode.focus)]
    start = episode.params["rhythm_start_s"]
    early = focus[int((start + 2) * SFREQ) : int((start + 12) * SFREQ)]
    late = focus[int(65 * SFREQ) : int(75 * SFREQ)]

    # Steepest slope relative to a sinusoid of the same RMS and dominant frequency (sqrt(2)):
    # the spikes of spike-and-wave are far steeper than the rhythm they grow out of.
    def steepness(v):
        slope = np.percentile(np.abs(np.diff(v)), 99.5) * SFREQ
        return slope / (v.std() * 2 * np.pi * dominant_frequency(v, SFREQ))

    assert steepness(early) < 2.0 and steepness(late) > 1.5 * steepness(early), (steepness(early), steepness(late))
    assert stats.kurtosis(late) > stats.kurtosis(early)


@pytest.mark.parametrize("seed", range(6))
def test_seizure_starts_at_the_focus_and_spreads_over_10_s_or_more(seed):
    episode = _episode("Seizure", seed, start=10.0, end=90.0)
    t = np.arange(0, 90 * SFREQ) / SFREQ
    rng = np.random.default_rng(seed)
    x = render_seizure(episode, t) + 5.0 * rng.standard_normal((len(CANONICAL_CHANNELS), len(t)))
    onsets = onset_times(x, SFREQ, baseline=slice(int(1 * SFREQ), int(9 * SFREQ)), after=int(10 * SFREQ))
    pos = canonical_positions()
    dist = np.linalg.norm(pos - pos[CANONICAL_CHANNELS.index(episode.focus)], axis=1)
    focus_onset = onsets[dist == 0][0]
    far = onsets[dist > 1.0]
    assert focus_onset < 4.0
    assert np.nanmedian(far) > focus_onset + 2.0
    valid = ~np.isnan(onsets)
    assert np.corrcoef(dist[valid], onsets[valid])[0, 1] > 0.6  # onset order follows distance
    # Spatial extent: channels above half the focus's RMS, early versus >= 10 s later.
    clean = render_seizure(episode, t)

    def extent(a, b):
        rms = clean[:, int(a * SFREQ) : int(b * SFREQ)].std(axis=1)
        return int(np.sum(rms > 0.5 * rms.max()))

    assert extent(10.5, 12.5) <= 5 and extent(40.0, 60.0) >= extent(10.5, 12.5) + 3


def test_low_voltage_fast_onset_precedes_the_rhythm():
    episodes = [_episode("Seizure", seed, end=90.0) for seed in range(40)]
    lvfa = [e for e in episodes if e.params["onset"] == "lvfa"]
    assert 5 <= len(lvfa) <= 25
    for episode in lvfa[:4]:
        focus = render_seizure(episode, np.arange(0, 90 * SFREQ) / SFREQ)[CANONICAL_CHANNELS.index(episode.focus)]
        onset = focus[int(0.5 * SFREQ) : int(episode.params["rhythm_start_s"] * SFREQ)]
        assert dominant_frequency(onset, SFREQ, 1.0, 40.0) >= 13.0
        assert np.ptp(onset) <= 45.0  # low voltage


def test_postictal_slowing_follows_long_seizures_only():
    episodes = [_episode("Seizure", seed, end=120.0) for seed in range(30)]
    with_post = [e for e in episodes if e.params["postictal_s"] > 0]
    assert with_post and all(6.0 <= e.params["postictal_s"] <= 15.0 for e in with_post)
    assert all(_episode("Seizure", seed, end=60.0).params["postictal_s"] == 0 for seed in range(10))
    episode = with_post[0]
    focus = render_seizure(episode, np.arange(0, 120 * SFREQ) / SFREQ)[CANONICAL_CHANNELS.index(episode.focus)]
    after = focus[int((120 - episode.params["postictal_s"] + 1.5) * SFREQ) :]
    assert dominant_frequency(after, SFREQ, 0.3, 30.0) <= 2.5


# ---------------------------------------------------------------------------------------------
# Chunking, determinism, names
# ---------------------------------------------------------------------------------------------


def test_other_renders_nothing_and_chunks_do_not_matter():
    episodes = [
        _episode(c, seed=2, start=10.0 * i, end=10.0 * i + 60.0)
        for i, c in enumerate(("Seizure", "LPD", "GPD", "LRDA", "GRDA", "Other"))
    ]
    whole = render_episodes(episodes, T)
    pieces = np.concatenate([render_episodes(episodes, T[i : i + 777]) for i in range(0, len(T), 777)], axis=1)
    np.testing.assert_array_equal(whole, pieces)
    other = Episode("Other", 0.0, 80.0, 0.5)
    assert not render_episodes([other], T).any()


def test_episodes_are_a_function_of_the_rng_only():
    for cls in ("Seizure", "LPD", "GPD", "LRDA", "GRDA"):
        a, b = _episode(cls, seed=5), _episode(cls, seed=5)
        assert a == b and a.summary() == b.summary()
        assert "discharge_gains" not in a.summary()["params"]


def test_unknown_class_is_rejected_with_the_allowed_names():
    with pytest.raises(ValueError, match="cls: expected one of Seizure, LPD"):
        draw_episode(np.random.default_rng(0), "Spindle", 0.0, 60.0, 0.5)
