"""Each HMS pattern's defining property, measured on the pure pattern functions."""

import numpy as np
import pytest

from eegfm.pipelines.channels import CANONICAL_CHANNELS, canonical_positions
from eegfm.pipelines.simulate.patterns import (
    Episode,
    draw_episode,
    render_episodes,
    render_seizure,
    seizure_frequency,
    sharp_wave,
)
from tests.pipelines.simulate.measures import (
    dominant_frequency,
    envelope_periodicity,
    lateralization,
    onset_times,
)

SFREQ = 200.0
T = np.arange(0, 80 * SFREQ) / SFREQ


def _episode(cls, seed=0, strength=0.8, start=0.0, end=80.0):
    return draw_episode(np.random.default_rng(seed), cls, start, end, strength)


def _render(episode, t=T):
    return render_episodes([episode], t)


@pytest.mark.parametrize("seed", range(4))
def test_lrda_is_lateralized_rhythmic_delta_and_grda_is_not(seed):
    lrda, grda = _episode("LRDA", seed), _episode("GRDA", seed)
    x = _render(lrda)[:, int(5 * SFREQ) : int(75 * SFREQ)]
    assert lateralization(x, SFREQ, 0.5, 3.0, lrda.side) > 5.0
    assert (
        abs(dominant_frequency(x[CANONICAL_CHANNELS.index(lrda.focus)], SFREQ, 0.4, 4.0) - lrda.params["freq_hz"])
        <= 0.5
    )
    y = _render(grda)[:, int(5 * SFREQ) : int(75 * SFREQ)]
    assert 0.9 < lateralization(y, SFREQ, 0.5, 3.0, "left") < 1.1
    front = [CANONICAL_CHANNELS.index(c) for c in ("Fp1", "Fp2", "F3", "F4", "Fz")]
    back = [CANONICAL_CHANNELS.index(c) for c in ("O1", "O2", "P3", "P4", "Pz")]
    assert y[front].std() > y[back].std()  # frontally predominant


@pytest.mark.parametrize("seed", range(4))
def test_periodic_discharges_repeat_at_their_period(seed):
    for cls in ("LPD", "GPD"):
        episode = _episode(cls, seed)
        x = _render(episode)[:, int(5 * SFREQ) : int(75 * SFREQ)]
        at_period, at_half = envelope_periodicity(x, SFREQ, 1.0 / episode.params["rate_hz"])
        assert at_period > 0.5 and at_period > at_half + 0.3, (cls, at_period, at_half)


@pytest.mark.parametrize("seed", range(4))
def test_lpd_is_lateralized_and_gpd_bilateral_and_synchronous(seed):
    lpd, gpd = _episode("LPD", seed), _episode("GPD", seed)
    x = _render(lpd)[:, int(5 * SFREQ) : int(75 * SFREQ)]
    assert lateralization(x, SFREQ, 1.0, 20.0, lpd.side) > 3.0
    y = _render(gpd)[:, int(5 * SFREQ) : int(75 * SFREQ)]
    assert 0.9 < lateralization(y, SFREQ, 1.0, 20.0, "left") < 1.1
    left, right = CANONICAL_CHANNELS.index("F3"), CANONICAL_CHANNELS.index("F4")
    assert np.corrcoef(y[left], y[right])[0, 1] > 0.99  # same discharges, same time


def test_discharges_are_sharp_waves_with_jittered_intervals():
    episode = _episode("LPD", seed=1)
    width = episode.params["discharge_width_s"]
    tau = np.arange(-0.3, 0.6, 1 / 2000)
    sharp = tau[sharp_wave(tau, width) < -0.1]
    assert 0.06 <= sharp[-1] - sharp[0] <= 0.2  # a sharp transient, 70-200 ms
    intervals = np.diff(episode.params["discharge_times"])
    period = 1.0 / episode.params["rate_hz"]
    assert abs(np.mean(intervals) - period) < 0.05 * period
    assert 0 < np.std(intervals) < 0.15 * period


@pytest.mark.parametrize("seed", range(6))
def test_seizure_evolves_in_frequency_and_amplitude(seed):
    episode = _episode("Seizure", seed, start=0.0, end=90.0)
    t90 = np.arange(0, 90 * SFREQ) / SFREQ
    focus = render_seizure(episode, t90)[CANONICAL_CHANNELS.index(episode.focus)]
    early, late = focus[int(3 * SFREQ) : int(20 * SFREQ)], focus[int(65 * SFREQ) : int(88 * SFREQ)]
    f_early, f_late = dominant_frequency(early, SFREQ), dominant_frequency(late, SFREQ)
    assert abs(f_early - f_late) >= 1.5, (f_early, f_late, episode.params["evolution"])
    expected = seizure_frequency(
        np.array([11.5, 76.5]),
        episode.params["f_start_hz"],
        episode.params["f_end_hz"],
        episode.params["freq_time_constant_s"],
    )
    assert f_late == pytest.approx(expected[1], abs=1.0)
    assert late.std() > 1.5 * early.std()


@pytest.mark.parametrize("seed", range(6))
def test_seizure_starts_at_the_focus_and_spreads(seed):
    episode = _episode("Seizure", seed, start=10.0, end=90.0)
    t = np.arange(0, 90 * SFREQ) / SFREQ
    rng = np.random.default_rng(seed)
    x = render_seizure(episode, t) + 5.0 * rng.standard_normal((len(CANONICAL_CHANNELS), len(t)))
    onsets = onset_times(x, SFREQ, baseline=slice(int(1 * SFREQ), int(9 * SFREQ)), after=int(10 * SFREQ))
    pos = canonical_positions()
    dist = np.linalg.norm(pos - pos[CANONICAL_CHANNELS.index(episode.focus)], axis=1)
    focus_onset = onsets[dist == 0][0]
    far = onsets[dist > 1.0]
    assert focus_onset < 1.5
    assert np.nanmedian(far) > focus_onset + 2.0
    # Onset order follows distance from the focus.
    valid = ~np.isnan(onsets)
    assert np.corrcoef(dist[valid], onsets[valid])[0, 1] > 0.6


def test_other_renders_nothing_and_chunks_do_not_matter():
    episodes = [
        _episode(c, seed=2, start=10.0 * i, end=10.0 * i + 60.0)
        for i, c in enumerate(("Seizure", "LPD", "LRDA", "Other"))
    ]
    whole = render_episodes(episodes, T)
    pieces = np.concatenate([render_episodes(episodes, T[i : i + 777]) for i in range(0, len(T), 777)], axis=1)
    np.testing.assert_array_equal(whole, pieces)
    other = Episode("Other", 0.0, 80.0, 0.5)
    assert not render_episodes([other], T).any()


def test_unknown_class_is_rejected_with_the_allowed_names():
    with pytest.raises(ValueError, match="cls: expected one of Seizure, LPD"):
        draw_episode(np.random.default_rng(0), "Spindle", 0.0, 60.0, 0.5)
