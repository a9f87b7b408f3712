"""Thresholds and decisions: the quality configuration, the window rules, the severities they share
and the keep/drop rule (see :mod:`pipelines.quality` for the scoring convention)."""

from __future__ import annotations

import dataclasses
import math
from functools import lru_cache
from typing import Any

import numpy as np

from eegfm.core.config import Config, ConfigError, check_range

# Window rules: flag name -> (metric, config threshold field, direction, kind).
# direction "max": the metric must stay below the threshold; "min": above it.
# kind "ratio": severity value/threshold; "db": severity 10**(excess/10).
RULES: dict[str, tuple[str, str, str, str]] = {
    "non_finite": ("nonfinite_fraction", "max_nonfinite_fraction", "max", "ratio"),
    "low_snr": ("snr_db", "min_snr_db", "min", "db"),
    "flat": ("flat_fraction", "max_flat_fraction", "max", "ratio"),
    "clipping": ("clip_fraction", "max_clip_fraction", "max", "ratio"),
    "high_amplitude": ("artifact_ptp_uv", "max_ptp_uv", "max", "ratio"),
    "low_amplitude": ("ptp_uv_median", "min_ptp_uv", "min", "ratio"),
    "muscle": ("muscle_ratio", "max_muscle_ratio", "max", "ratio"),
    "line_noise": ("line_noise_db", "max_line_noise_db", "max", "db"),
    "electrode_pop": ("pop_channels", "max_pop_channels", "max", "ratio"),
    "bad_channels": ("bad_channel_fraction", "max_bad_channel_fraction", "max", "ratio"),
    "artifact_ratio": ("artifact_ratio", "max_artifact_ratio", "max", "ratio"),
}
# Rules a few channels can fire on their own: their penalty grows with the share of measured
# channels that cross the threshold, in full from ``full_extent_fraction`` on (one noisy electrode
# among 19 is read past, or interpolated, not a window lost), and the per-channel metric that says which.
LOCAL_RULES: dict[str, tuple[str, str]] = {
    "muscle": ("channel_muscle_ratio", "max_muscle_ratio"),
    "line_noise": ("channel_line_noise_db", "max_line_noise_db"),
    "electrode_pop": ("channel_pops", ""),
    "high_amplitude": ("channel_ptp_uv", "max_ptp_uv"),
}
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
    total_band: tuple[float, float] = (0.5, 128.0)
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
        for _, field, _, kind in RULES.values():
            if kind == "db":
                check_range(field, getattr(self, field), -100.0, 100.0)
            else:
                check_range(field, getattr(self, field), 0.0, None, low_inclusive=False)
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
    severities = {rule: severity(metrics[m], getattr(config, f), d, k) for rule, (m, f, d, k) in RULES.items()}
    penalties = [
        min(1.0, value / 2.0) * min(1.0, extents.get(rule, 1.0) / config.full_extent_fraction)
        for rule, value in severities.items()
    ]
    fired = [rule for rule, value in severities.items() if value >= 1.0]
    fired += [sign for sign, (m, f) in SIGNS.items() if metrics.get(m, 0.0) >= getattr(config, f)]
    return max(0.0, *penalties), tuple(fired)


def channel_scores(
    config: QualityConfig,
    snr: np.ndarray,
    flat_frac: np.ndarray,
    clip_frac: np.ndarray,
    ptp: np.ndarray,
    muscle: np.ndarray,
    line_db: np.ndarray,
    pops: np.ndarray,
    rhythmic: np.ndarray | None = None,
) -> np.ndarray:
    """``1 - max(penalty)`` over the channel metrics (SNR, flat, clip, high and low amplitude,
    muscle, mains, pop count), shape (..., n_chans); callers silence floating-point warnings. A
    ``rhythmic`` channel (rhythmic activity with a field) is not penalized for high amplitude."""
    severities = np.empty(ptp.shape + (8,))
    db = np.stack([config.min_snr_db - snr, line_db - config.max_line_noise_db], axis=-1)
    db = 10.0 ** (np.clip(db, -300.0, 300.0) / 10.0)
    db[np.isnan(db)] = 0.0  # a NaN metric (no SNR or mains ratio) counts as 0
    severities[..., ::6] = db
    ratios = np.stack([flat_frac, clip_frac, ptp, muscle], axis=-1)
    ratios /= (config.max_flat_fraction, config.max_clip_fraction, config.max_ptp_uv, config.max_muscle_ratio)
    if rhythmic is not None:
        ratios[..., 2] = np.where(rhythmic, 0.0, ratios[..., 2])
    severities[..., 1:4] = ratios[..., :3]
    severities[..., 4] = np.where(ptp > 0, config.min_ptp_uv / ptp, np.inf)
    severities[..., 5] = ratios[..., 3]
    severities[..., 7] = pops  # one pop reaches the threshold
    return 1.0 - np.minimum(1.0, severities / 2.0).max(axis=-1)


def validate_window(report: Any, config: QualityConfig | None = None) -> tuple[bool, list[str]]:
    """Whether to keep a window (a :class:`QualityReport`), and human-readable reasons when not.

    A reason names the rule, the metric, its value and the threshold, e.g.
    ``"flat: flat_fraction=0.62 >= max_flat_fraction=0.2"``."""
    config = default_config() if config is None else config
    reasons = []
    for rule in config.reject_on:
        metric, field, direction, kind = RULES[rule]
        value, threshold = float(getattr(report, metric)), getattr(config, field)
        if severity(value, threshold, direction, kind) >= 1.0:
            op = ">=" if direction == "max" else "<="
            reasons.append(f"{rule}: {metric}={value:.4g} {op} {field}={threshold:.4g}")
    if report.artifact_score > config.max_artifact_score:
        reasons.append(
            f"artifact_score: artifact_score={report.artifact_score:.4g} > "
            f"max_artifact_score={config.max_artifact_score:.4g}"
        )
    return not reasons, reasons
