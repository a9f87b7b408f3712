"""Rhythmic activity with a field told from artifacts on real resting EEG with ACNS-style patterns
added (tests/pipelines/quality/discharges.py), and the quality report's use of it."""

from __future__ import annotations

import numpy as np
import pytest

from eegfm.contract.channels import CANONICAL_CHANNELS
from eegfm.pipelines.quality import QualityConfig, compute_quality, validate_window
from eegfm.pipelines.quality.physiology import autocorrelation_peak, field_support, neighbours, rhythmic_field
from tests.pipelines.quality import discharges
from tests.pipelines.quality.conftest import N_TIMES, SFREQ

T = np.arange(N_TIMES) / SFREQ
CONFIG = QualityConfig()


def _rhythmic(window: np.ndarray) -> np.ndarray:
    measured = np.ones((1, len(CANONICAL_CHANNELS)), dtype=bool)
    return rhythmic_field(
        window[None],
        SFREQ,
        measured,
        CONFIG.field_min_correlation,
        CONFIG.rhythm_min_autocorrelation,
        CONFIG.rhythm_lags_s,
    )[0]


def test_neighbours_are_the_adjacent_electrodes():
    near = neighbours()
    names = np.array(CANONICAL_CHANNELS)
    assert set(names[near[CANONICAL_CHANNELS.index("T3")]]) == {"F7", "T5", "C3"}
    assert set(names[near[CANONICAL_CHANNELS.index("Cz")]]) == {"C3", "C4", "Fz", "Pz"}
    assert (near == near.T).all() and not near.diagonal().any()


def test_autocorrelation_peak_reads_a_rhythm_and_not_a_drift():
    rng = np.random.default_rng(0)
    sine = np.sin(2 * np.pi * 2.0 * T)
    assert autocorrelation_peak(sine[None], SFREQ, (0.1, 2.5))[0] > 0.9
    walk = np.cumsum(rng.standard_normal(N_TIMES))
    assert autocorrelation_peak(walk[None], SFREQ, (0.1, 2.5))[0] < 0.3
    assert autocorrelation_peak(np.zeros((1, N_TIMES)), SFREQ, (0.1, 2.5))[0] == 0.0


@pytest.mark.parametrize(
    "pattern, involved",
    [
        (lambda t: discharges.seizure(t, "T3"), ["T3", "F7", "T5"]),
        (lambda t: discharges.periodic_discharges(t, 1.2, "F7"), ["F7", "Fp1", "F3"]),
        (lambda t: discharges.periodic_discharges(t, 1.5, None), ["Fz", "F3", "F4", "Cz"]),
        (lambda t: discharges.rhythmic_delta(t, 2.0, "T4"), ["T4", "F8", "T6"]),
        (lambda t: discharges.rhythmic_delta(t, 1.5, None), ["Fp1", "Fp2", "Fz"]),
    ],
    ids=["seizure", "LPD", "GPD", "LRDA", "GRDA"],
)
def test_acns_patterns_on_real_eeg_are_rhythmic_with_a_field_and_kept_unflagged(clean_windows, pattern, involved):
    window = clean_windows[2].astype(np.float64) + pattern(T)
    rhythmic = _rhythmic(window)
    assert all(rhythmic[CANONICAL_CHANNELS.index(c)] for c in involved)
    report = compute_quality(window)
    assert report.ptp_uv >= CONFIG.rhythmic_min_ptp_uv
    assert "rhythmic_high_amplitude" in report.flags and "high_amplitude" not in report.flags
    assert report.rule_score < 0.5, report.flags
    assert validate_window(report)[0]


@pytest.mark.parametrize(
    "artifact, rule", [(discharges.electrode_pop, "high_amplitude"), (discharges.movement, "high_amplitude")]
)
def test_a_pop_and_movement_are_not_rhythmic_fields(clean_windows, artifact, rule):
    window = clean_windows[2].astype(np.float64) + artifact(T)
    report = compute_quality(window)
    assert rule in report.flags and report.artifact_ptp_uv >= CONFIG.max_ptp_uv
    big = report.channel_ptp_uv >= CONFIG.max_ptp_uv
    assert not (report.channel_rhythmic_field & big).any()
    assert validate_window(report)[0]  # flagged and scored, not dropped


def test_a_pop_has_no_field_and_movement_no_rhythm(clean_windows):
    pop = clean_windows[2].astype(np.float64) + discharges.electrode_pop(T, "T4")
    support = field_support(pop[None], np.ones((1, 19), bool))[0]
    assert support[CANONICAL_CHANNELS.index("T4")] < CONFIG.field_min_correlation
    moved = clean_windows[2].astype(np.float64) + discharges.movement(T)
    assert field_support(moved[None], np.ones((1, 19), bool))[0].min() > 0.9


def test_a_window_both_ictal_and_artifactual_is_kept_with_both_flags(clean_windows):
    window = clean_windows[2].astype(np.float64) + discharges.seizure(T, "T3") + discharges.electrode_pop(T, "O2")
    report = compute_quality(window)
    assert {"rhythmic_high_amplitude", "high_amplitude"} <= set(report.flags)
    assert validate_window(report)[0]


def test_only_the_canonical_montage_has_neighbours():
    x = np.random.default_rng(0).standard_normal((1, 4, N_TIMES))
    assert not rhythmic_field(x, SFREQ, np.ones((1, 4), bool), 0.5, 0.5, (0.1, 2.5)).any()
