"""Window rules, their scores and reasons, and the configuration that sets them."""

from __future__ import annotations

import numpy as np
import pytest

from eegfm.core.config import ConfigError
from eegfm.pipelines.quality import RULES, QualityConfig, compute_quality, validate_window
from tests.pipelines.quality.conftest import N_TIMES


def test_rule_score_reaches_half_exactly_when_a_rule_fires(clean_windows):
    rng = np.random.default_rng(3)
    reports = [compute_quality(w) for w in clean_windows[:12]]
    reports.append(compute_quality(clean_windows[0] * 8))  # high amplitude
    reports.append(compute_quality(20 * rng.standard_normal((19, N_TIMES))))
    reports.append(compute_quality(np.zeros((19, N_TIMES))))
    assert any(r.flags for r in reports) and any(not r.flags for r in reports)
    for r in reports:
        assert (r.rule_score >= 0.5) == bool(r.flags)
        assert 0.0 <= r.rule_score <= 1.0
        measured_bad = r.channel_score[r.channel_measured] <= 0.5
        assert r.bad_channel_fraction == pytest.approx(measured_bad.mean())


def test_high_amplitude_reason_names_metric_threshold_and_value(window):
    report = compute_quality(window * 20)
    keep, reasons = validate_window(report)
    assert not keep
    reason = next(r for r in reasons if r.startswith("high_amplitude"))
    assert f"ptp_uv={report.ptp_uv:.4g}" in reason and "max_ptp_uv=1000" in reason


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
