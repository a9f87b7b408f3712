"""Window rules, their scores and reasons, and the configuration that sets them."""

from __future__ import annotations

import numpy as np
import pytest

from eegfm.core.config import ConfigError
from eegfm.pipelines.quality import RULES, QualityConfig, compute_quality, validate_window
from eegfm.pipelines.quality.rules import LOCAL_RULES
from tests.pipelines.quality.conftest import N_TIMES


def test_rule_score_reaches_half_when_an_artifact_covers_the_window(clean_windows):
    rng = np.random.default_rng(3)
    reports = [compute_quality(w) for w in clean_windows[:12]]
    reports.append(compute_quality(clean_windows[0] * 8))  # high amplitude, but rhythmic with a field
    reports.append(compute_quality(20 * rng.standard_normal((19, N_TIMES))))
    reports.append(compute_quality(np.zeros((19, N_TIMES))))
    assert any(r.flags for r in reports) and any(not r.flags for r in reports)
    for r in reports:
        artifacts = [f for f in r.flags if f in RULES]
        assert (r.rule_score >= 0.5) <= bool(artifacts)  # a score of half names its rule
        if any(f not in LOCAL_RULES for f in artifacts):  # a whole-window rule always reaches half
            assert r.rule_score >= 0.5
        assert 0.0 <= r.rule_score <= 1.0
        measured_bad = r.channel_score[r.channel_measured] <= 0.5
        assert r.bad_channel_fraction == pytest.approx(measured_bad.mean())
    assert "rhythmic_high_amplitude" in reports[12].flags and "high_amplitude" not in reports[12].flags


@pytest.mark.parametrize("n_channels, flagged", [(1, False), (2, False), (5, True), (19, True)])
def test_a_local_rule_weighs_by_the_channels_it_covers(window, n_channels, flagged):
    """Broadband muscle (white noise, 50 uV RMS) on a few electrodes fires the muscle rule; the
    window counts as an artifact only once a quarter of its channels carry it."""
    noisy = window.astype(np.float64).copy()
    noisy[:n_channels] += 50.0 * np.random.default_rng(0).standard_normal((n_channels, N_TIMES))
    report = compute_quality(noisy)
    assert "muscle" in report.flags
    extent = min(1.0, n_channels / 19 / QualityConfig().full_extent_fraction)
    assert (report.rule_score >= 0.5) == flagged
    assert report.rule_score <= extent + 1e-9


def test_high_amplitude_on_one_electrode_is_flagged_and_named_when_rejected(window):
    """An excursion of one electrode (no field) is a high-amplitude artifact: flagged, kept by
    default, and named with its metric, value and threshold when ``reject_on`` asks to drop it."""
    bad = window.astype(np.float64).copy()
    bad[5] += np.where(np.arange(N_TIMES) > 900, 1500.0, 0.0) * np.exp(-np.arange(N_TIMES) / 4000)
    report = compute_quality(bad)
    assert "high_amplitude" in report.flags and report.artifact_ptp_uv >= 1000
    assert validate_window(report)[0]  # amplitude alone never drops a window by default
    keep, reasons = validate_window(report, QualityConfig(reject_on=("high_amplitude",)))
    assert not keep
    reason = next(r for r in reasons if r.startswith("high_amplitude"))
    assert f"artifact_ptp_uv={report.artifact_ptp_uv:.4g}" in reason and "max_ptp_uv=1000" in reason


def test_config_validation_and_round_trip():
    config = QualityConfig(reject_on=["flat", "muscle"])
    assert config.reject_on == ("flat", "muscle")
    assert QualityConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ConfigError, match=r"reject_on: expected names from non_finite, .*got unknown 'blink'"):
        QualityConfig(reject_on=("blink",))
    with pytest.raises(ConfigError, match=r"noise_band: expected low < high; got \(70.0, 30.0\)"):
        QualityConfig(noise_band=(70.0, 30.0))
    with pytest.raises(ConfigError, match=r"max_ptp_uv: expected a value in \(0.0, inf\]; got -1"):
        QualityConfig(max_ptp_uv=-1)
    assert set(QualityConfig().reject_on) <= set(RULES)


def test_every_rule_row_names_a_metric_a_threshold_and_a_channel_metric_that_exist():
    """The rule table (``WINDOW_RULES``) is the one place a rule is written: its names must resolve."""
    import dataclasses

    from eegfm.pipelines.quality import QUALITY_NAMES, QualityReport
    from eegfm.pipelines.quality.rules import WINDOW_RULES

    report_fields = {f.name for f in dataclasses.fields(QualityReport)}
    config = QualityConfig()
    for rule in WINDOW_RULES:
        assert rule.metric in QUALITY_NAMES and hasattr(config, rule.threshold), rule
        assert rule.direction in ("max", "min") and rule.kind in ("ratio", "db"), rule
        assert not rule.channel or f"channel_{rule.channel}" in report_fields, rule
        assert not rule.spare or f"channel_{rule.spare}" in report_fields, rule
        assert rule.channel or not (rule.local or rule.repairable), rule
