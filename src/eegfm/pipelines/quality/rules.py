"""Thresholds and decisions: the quality configuration, the window rules, the severities they share
and the keep/drop rule (see :mod:`pipelines.quality` for the scoring convention)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import numpy as np

from eegfm.contract.schema import SFREQ
from eegfm.core.config import Config, ConfigError, check_range


@dataclasses.dataclass(frozen=True)
class Rule:
    """One window rule, a row of :data:`WINDOW_RULES`: everything that decides, scores and explains it.

    ``metric`` (a window metric, :data:`~pipelines.quality.report.QUALITY_NAMES`) is compared with
    the :class:`QualityConfig` field ``threshold``: ``direction`` "max", the metric must stay below
    it, "min", above it; ``kind`` "ratio", severity value / threshold, "db", ``10**(excess / 10)``.
    ``channel`` names the per-channel metric (``QualityReport.channel_<channel>``) that scores each
    channel (:func:`channel_scores`), against ``channel_limit`` where it is not ``threshold`` (a
    pop's channel: one pop). ``local``: the penalty weighs by the share of measured channels that
    cross (:func:`local_extents`). ``spare``: a per-channel flag under which a channel neither
    scores nor crosses. ``repairable``: the channels that cross may be interpolated instead
    (``pipelines.signal.windowing.repair_window``)."""

    name: str
    metric: str
    threshold: str
    direction: str = "max"
    kind: str = "ratio"
    channel: str = ""
    channel_limit: float | None = None
    local: bool = False
    spare: str = ""
    repairable: bool = False


# The window rules, in the order flags are listed. Local rules are those a few channels can fire on
# their own: their penalty grows with the share of measured channels that cross the threshold, in
# full from ``full_extent_fraction`` on (one noisy electrode among 19 is read past, or interpolated,
# not a window lost). Rhythmic activity with a field is brain, not an excursion: it spares a channel
# from high_amplitude.
WINDOW_RULES: tuple[Rule, ...] = (
    Rule("non_finite", "nonfinite_fraction", "max_nonfinite_fraction"),
    Rule("low_snr", "snr_db", "min_snr_db", "min", "db", channel="snr_db"),
    Rule("flat", "flat_fraction", "max_flat_fraction", channel="flat_fraction", repairable=True),
    Rule("clipping", "clip_fraction", "max_clip_fraction", channel="clip_fraction", repairable=True),
    Rule(
        "high_amplitude",
        "artifact_ptp_uv",
        "max_ptp_uv",
        channel="ptp_uv",
        local=True,
        spare="rhythmic_field",
        repairable=True,
    ),
    Rule("low_amplitude", "ptp_uv_median", "min_ptp_uv", "min", channel="ptp_uv"),
    Rule("muscle", "muscle_ratio", "max_muscle_ratio", channel="muscle_ratio", local=True),
    Rule("line_noise", "line_noise_db", "max_line_noise_db", kind="db", channel="line_noise_db", local=True),
    Rule("electrode_pop", "pop_channels", "max_pop_channels", channel="pops", channel_limit=1.0, local=True),
    Rule("bad_channels", "bad_channel_fraction", "max_bad_channel_fraction"),
    Rule("artifact_ratio", "artifact_ratio", "max_artifact_ratio"),
)
RULE_BY_NAME: dict[str, Rule] = {rule.name: rule for rule in WINDOW_RULES}
# Views of the table: flag name -> (metric, threshold field, direction, kind), and the local rules.
RULES: dict[str, tuple[str, str, str, str]] = {
    r.name: (r.metric, r.threshold, r.direction, r.kind) for r in WINDOW_RULES
}
LOCAL_RULES: tuple[str, ...] = tuple(rule.name for rule in WINDOW_RULES if rule.local)
# Physiological signs: flagged where the metric reaches the threshold, never a penalty or a reason
# to drop (``rhythmic_high_amplitude``: rhythmic or periodic activity with a field, pipelines.quality.physiology).
SIGNS: dict[str, tuple[str, str]] = {"rhythmic_high_amplitude": ("rhythmic_ptp_uv", "rhythmic_min_ptp_uv")}
# Only what leaves a window unusable: no data, dead or saturated amplifier channels. Amplitude alone
# never drops a window: seizures, periodic discharges and rhythmic delta reach 500 uV and more.
DEFAULT_REJECT_ON: tuple[str, ...] = ("non_finite", "flat", "clipping", "low_amplitude")


def _check_band(name: str, band: Any) -> None:
    if not isinstance(band, (tuple, list)) or len(band) != 2:
        raise ConfigError(f"{name}: expected a (low, high) pair in Hz; got {band!r}")
    low, high = band
    check_range(f"{name}[0]", low, 0.0, None)
    check_range(f"{name}[1]", high, 0.0, None, low_inclusive=False)
    if low >= high:
        raise ConfigError(f"{name}: expected low < high; got {band!r}")


@dataclasses.dataclass
class QualityConfig(Config):
    """Thresholds and bands for :func:`compute_quality` / :func:`validate_window`; docs/preprocessing.md
    gives each threshold's reason and source, and what the defaults flag on each real corpus."""

    signal_band: tuple[float, float] = (1.0, 30.0)
    noise_band: tuple[float, float] = (30.0, 70.0)
    muscle_band: tuple[float, float] = (20.0, 100.0)
    total_band: tuple[float, float] = (0.5, SFREQ / 2)
    # sample-level detectors
    flat_tol_uv: float = 0.1
    flat_min_duration_s: float = 0.1
    clip_tol_rel: float = 1e-3
    clip_min_duration_s: float = 0.05
    max_abs_uv: float = 250.0
    pop_step_s: float = 0.012
    pop_z: float = 10.0
    pop_min_uv: float = 50.0
    pop_persist: float = 0.3
    # rhythmic activity with a field (pipelines.quality.physiology)
    field_min_correlation: float = 0.5
    rhythm_min_autocorrelation: float = 0.5
    rhythm_lags_s: tuple[float, float] = (0.1, 2.5)
    rhythmic_min_ptp_uv: float = 200.0
    full_extent_fraction: float = 0.25
    # window rules (see RULES)
    max_nonfinite_fraction: float = 1e-9
    min_snr_db: float = 3.0
    max_flat_fraction: float = 0.2
    max_clip_fraction: float = 0.01
    # Above what any eye blink reaches (500-800 uV peak-to-peak on Fp1/Fp2), on channels without
    # rhythmic activity with a field: a flag, not a reason to drop.
    max_ptp_uv: float = 1000.0
    min_ptp_uv: float = 2.0
    max_muscle_ratio: float = 0.5
    max_line_noise_db: float = 10.0
    max_pop_channels: float = 1.0
    max_bad_channel_fraction: float = 0.25
    max_artifact_ratio: float = 0.2
    # keep/drop
    reject_on: tuple[str, ...] = DEFAULT_REJECT_ON
    max_artifact_score: float = 1.0

    @property
    def rhythm_test_min_ptp_uv(self) -> float:
        """The smallest peak-to-peak (µV) at which a channel's amplitude counts in a rule (an
        excursion, ``high_amplitude``) or a sign (``rhythmic_high_amplitude``): below it, whether a
        channel carries rhythmic activity with a field changes no decision, so it is not tested."""
        return min(self.max_abs_uv, self.rhythmic_min_ptp_uv, self.max_ptp_uv)

    def validate(self) -> None:
        for name in ("signal_band", "noise_band", "muscle_band", "total_band"):
            _check_band(name, getattr(self, name))
        for name, high, open_low in (
            ("flat_tol_uv", None, False),
            ("flat_min_duration_s", 10.0, True),
            ("clip_tol_rel", 0.1, False),
            ("clip_min_duration_s", 10.0, True),
            ("max_abs_uv", None, True),
            ("pop_step_s", 0.2, True),
            ("pop_z", None, True),
            ("pop_min_uv", None, False),
            ("pop_persist", 1.0, False),
            ("field_min_correlation", 1.0, False),
            ("rhythm_min_autocorrelation", 1.0, False),
            ("rhythmic_min_ptp_uv", None, True),
            ("full_extent_fraction", 1.0, True),
        ):
            check_range(name, getattr(self, name), 0.0, high, low_inclusive=not open_low)
        _check_band("rhythm_lags_s", self.rhythm_lags_s)
        self.rhythm_lags_s = tuple(self.rhythm_lags_s)
        for rule in WINDOW_RULES:
            if rule.kind == "db":
                check_range(rule.threshold, getattr(self, rule.threshold), -100.0, 100.0)
            else:
                check_range(rule.threshold, getattr(self, rule.threshold), 0.0, None, low_inclusive=False)
        if not isinstance(self.reject_on, (tuple, list)):
            raise ConfigError(f"reject_on: expected a list of rule names; got {self.reject_on!r}")
        unknown = [r for r in self.reject_on if r not in RULES]
        if unknown:
            raise ConfigError(
                f"reject_on: expected names from {', '.join(RULES)}; got unknown {', '.join(map(repr, unknown))}"
            )
        self.reject_on = tuple(self.reject_on)
        check_range("max_artifact_score", self.max_artifact_score, 0.0, 1.0)


@lru_cache(maxsize=1)
def default_config() -> QualityConfig:
    return QualityConfig()


def severity(value: float, threshold: float, direction: str, kind: str) -> float:
    """Severity of one metric against its threshold: 1 at the threshold, NaN counts as 0."""
    if math.isnan(value):
        return 0.0
    if kind == "db":
        excess = value - threshold if direction == "max" else threshold - value
        return 10.0 ** (min(max(excess, -300.0), 300.0) / 10.0)
    if direction == "max":
        return value / threshold
    return threshold / value if value > 0 else math.inf


def window_rules(
    metrics: dict[str, float], config: QualityConfig, extents: dict[str, float] | None = None
) -> tuple[float, tuple[str, ...]]:
    """The window's ``rule_score`` (largest rule penalty) and the rules and signs that fired.
    ``extents``: for :data:`LOCAL_RULES`, the share of measured channels that cross the threshold
    (absent: the whole window)."""
    extents = extents or {}
    severities = {
        rule.name: severity(metrics[rule.metric], getattr(config, rule.threshold), rule.direction, rule.kind)
        for rule in WINDOW_RULES
    }
    penalties = [
        min(1.0, value / 2.0) * min(1.0, extents.get(rule, 1.0) / config.full_extent_fraction)
        for rule, value in severities.items()
    ]
    fired = [rule for rule, value in severities.items() if value >= 1.0]
    fired += [sign for sign, (m, f) in SIGNS.items() if metrics.get(m, 0.0) >= getattr(config, f)]
    return max(0.0, *penalties), tuple(fired)


def _channel_limit(rule: Rule, config: QualityConfig) -> float:
    return getattr(config, rule.threshold) if rule.channel_limit is None else rule.channel_limit


def channel_severity(rule: Rule, channel: Mapping[str, np.ndarray], config: QualityConfig) -> np.ndarray:
    """:func:`severity` of each channel's ``rule.channel`` metric (a NaN dB metric counts as 0), 0
    on channels its ``spare`` flag marks."""
    values = np.asarray(channel[rule.channel], dtype=np.float64)
    limit = _channel_limit(rule, config)
    if rule.kind == "db":
        excess = values - limit if rule.direction == "max" else limit - values
        out = 10.0 ** (np.clip(excess, -300.0, 300.0) / 10.0)
        out = np.where(np.isnan(out), 0.0, out)
    elif rule.direction == "max":
        out = values / limit
    else:
        out = np.where(values > 0, limit / values, np.inf)
    return np.where(channel[rule.spare], 0.0, out) if rule.spare in channel else out


def channel_crossing(rule: Rule, channel: Mapping[str, np.ndarray], config: QualityConfig) -> np.ndarray:
    """Channels whose ``rule.channel`` metric reaches the rule's channel threshold (NaN never does),
    less those its ``spare`` flag marks."""
    values, limit = np.asarray(channel[rule.channel]), _channel_limit(rule, config)
    crossing = values >= limit if rule.direction == "max" else values <= limit
    return crossing & ~np.asarray(channel[rule.spare], dtype=bool) if rule.spare in channel else crossing


def channel_scores(config: QualityConfig, channel: Mapping[str, np.ndarray]) -> np.ndarray:
    """``1 - max(penalty)`` over the channel metrics of :data:`WINDOW_RULES` (``channel``: arrays
    (..., n_chans) by ``QualityReport.channel_`` name without the prefix); callers silence
    floating-point warnings."""
    severities = np.stack([channel_severity(rule, channel, config) for rule in WINDOW_RULES if rule.channel], axis=-1)
    return 1.0 - np.minimum(1.0, severities / 2.0).max(axis=-1)


def local_extents(channel: Mapping[str, np.ndarray], config: QualityConfig) -> dict[str, np.ndarray]:
    """Per local rule (:data:`LOCAL_RULES`), (n_windows,) the share of measured channels
    (``channel["measured"]``, (n_windows, n_chans)) that cross its threshold."""
    measured = channel["measured"]
    n_measured = measured.sum(axis=1)
    return {
        rule.name: (channel_crossing(rule, channel, config) & measured).sum(axis=1) / n_measured
        for rule in WINDOW_RULES
        if rule.local
    }


def validate_window(report: Any, config: QualityConfig | None = None) -> tuple[bool, list[str]]:
    """Whether to keep a window (a :class:`QualityReport`), and human-readable reasons when not.

    A reason names the rule, the metric, its value and the threshold, e.g.
    ``"flat: flat_fraction=0.62 >= max_flat_fraction=0.2"``."""
    config = default_config() if config is None else config
    reasons = []
    for rule in config.reject_on:
        row = RULE_BY_NAME[rule]
        value, threshold = float(getattr(report, row.metric)), getattr(config, row.threshold)
        if severity(value, threshold, row.direction, row.kind) >= 1.0:
            op = ">=" if row.direction == "max" else "<="
            reasons.append(f"{rule}: {row.metric}={value:.4g} {op} {row.threshold}={threshold:.4g}")
    if report.artifact_score > config.max_artifact_score:
        reasons.append(
            f"artifact_score: artifact_score={report.artifact_score:.4g} > "
            f"max_artifact_score={config.max_artifact_score:.4g}"
        )
    return not reasons, reasons
