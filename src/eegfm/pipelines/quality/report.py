"""The quality of one window as the pipeline records it: :class:`QualityReport`, whose window
metrics :data:`QUALITY_NAMES` are the manifest's quality names and, in that order, the TFRecord
``quality`` vector."""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from eegfm.pipelines.signal.features import WindowSpectrum

QUALITY_NAMES: tuple[str, ...] = tuple(
    "nonfinite_fraction snr_db flat_fraction clip_fraction ptp_uv ptp_uv_median muscle_ratio line_noise_db "
    "pop_channels bad_channel_fraction channel_quality artifact_ratio rule_score artifact_ptp_uv "
    "rhythmic_ptp_uv".split()
)


@dataclasses.dataclass(frozen=True, eq=False)
class QualityReport:
    """Quality of one window: the metrics of :data:`QUALITY_NAMES`, per-channel arrays (``channel_``;
    ``channel_measured`` is the mask the window metrics used), the rules that fired (``flags``) and
    the window's Welch PSD (``spectrum``)."""

    nonfinite_fraction: float
    snr_db: float
    flat_fraction: float
    clip_fraction: float
    ptp_uv: float
    ptp_uv_median: float
    muscle_ratio: float
    line_noise_db: float
    pop_channels: float
    bad_channel_fraction: float
    channel_quality: float
    artifact_ratio: float
    artifact_ptp_uv: float
    rhythmic_ptp_uv: float
    rule_score: float
    artifact_score: float
    flags: tuple[str, ...]
    channel_measured: np.ndarray
    channel_snr_db: np.ndarray
    channel_flat_fraction: np.ndarray
    channel_clip_fraction: np.ndarray
    channel_ptp_uv: np.ndarray
    channel_muscle_ratio: np.ndarray
    channel_line_noise_db: np.ndarray
    channel_pops: np.ndarray
    channel_rhythmic_field: np.ndarray
    channel_score: np.ndarray
    ae_score: float | None = None
    spectrum: WindowSpectrum | None = dataclasses.field(default=None, repr=False, compare=False)

    def vector(self) -> np.ndarray:
        """The window metrics as float32 in :data:`QUALITY_NAMES` order (the TFRecord ``quality``)."""
        return np.array([getattr(self, name) for name in QUALITY_NAMES], dtype=np.float32)

    def channels(self) -> dict[str, np.ndarray]:
        """The per-channel arrays by field name without ``channel_`` (what the rules' ``channel`` names)."""
        return {
            f.name.removeprefix("channel_"): getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name.startswith("channel_")
        }

    def as_dict(self) -> dict[str, float]:
        return {name: float(getattr(self, name)) for name in QUALITY_NAMES}

    def with_ae_score(self, ae_score: float) -> QualityReport:
        """A copy whose ``artifact_score`` is ``max(rule_score, ae_score)`` (not a mean: an artifact one
        detector sees should not be diluted by the other's silence)."""
        if not 0.0 <= float(ae_score) <= 1.0 or math.isnan(float(ae_score)):
            raise ValueError(f"ae_score: expected a value in [0, 1]; got {ae_score!r}")
        return dataclasses.replace(self, ae_score=float(ae_score), artifact_score=max(self.rule_score, float(ae_score)))
