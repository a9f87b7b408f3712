"""Per-window and per-channel signal-quality metrics, rule-based artifact flags and a keep/drop rule.

Input: a window (n_chans, n_times) in microvolts after resampling and filtering. Output: a
:class:`QualityReport` whose window metrics :data:`QUALITY_NAMES` are, in order, the TFRecord
``quality`` vector:

- ``nonfinite_fraction``: NaN/inf samples of measured channels (zeroed before everything else).
- ``snr_db``: median over channels of mean PSD in ``signal_band`` over ``noise_band`` (1-30 vs
  30-70 Hz, mains bins excluded), in dB: white noise 0 dB, clean EEG 13-24 dB.
- ``flat_fraction``: worst channel's samples in runs of ``flat_min_duration_s`` whose
  sample-to-sample change is at most ``flat_tol_uv``.
- ``clip_fraction``: worst channel's samples within ``clip_tol_rel`` of the declared physical
  range, else in runs of ``clip_min_duration_s`` at the window's own extreme (a plateau).
- ``ptp_uv``, ``ptp_uv_median``: largest and median channel peak-to-peak (uV).
- ``muscle_ratio``: worst channel's power in ``muscle_band`` (20-100 Hz, capped at Nyquist) over
  ``total_band``.
- ``line_noise_db``: worst channel's 50/60 Hz :func:`pipelines.signal.line_noise.line_ratio_db`.
- ``pop_channels``: channels with an electrode pop: a step of ``pop_min_uv`` and ``pop_z`` robust
  SDs over ``pop_step_s`` on that channel alone, then a displacement that persists
  (``pop_persist`` of the step over 0.2 s) and relaxes rather than grows.
- ``bad_channel_fraction``, ``channel_quality``: measured channels scoring at most 0.5; mean score.
- ``artifact_ratio``: channel-samples that are flat, clipped, in a pop span (0.5 s) or beyond
  ``max_abs_uv`` from the channel mean.
- ``rule_score``: the largest rule penalty.

A metric's *severity* is its value over its threshold (threshold over value for "lower is worse",
in power units for dB); a rule fires at severity 1 and its penalty is ``min(1, severity / 2)``. A
channel's score is ``1 - max(penalty)`` over its metrics. The rules are the rows of one table,
:data:`WINDOW_RULES` (``rules.Rule``), which drives all of this. :func:`validate_window` drops a window
when a rule of ``QualityConfig.reject_on`` fires (by default those that make it unusable) or
``artifact_score`` exceeds ``max_artifact_score``; other artifacts are scored but kept. Pass the
window before notch/band-pass as ``unfiltered`` for the flat and clipping detectors (a high-pass
bends plateaus). The spectral metrics share one Welch PSD (``report.spectrum``).
"""

from __future__ import annotations

from eegfm.core.lazy_exports import lazy_exports

# Public names, imported lazily (PEP 562): a module of this package (the survey's command line, the
# autoencoder's fit size) loads without the metrics' scipy, so --help answers at once.
_EXPORTS = {
    "compute_quality": "eegfm.pipelines.quality.compute",
    "compute_quality_batch": "eegfm.pipelines.quality.compute",
    "clip_mask": "eegfm.pipelines.quality.detectors",
    "detect_pops": "eegfm.pipelines.quality.detectors",
    "flat_mask": "eegfm.pipelines.quality.detectors",
    "QUALITY_NAMES": "eegfm.pipelines.quality.report",
    "QualityReport": "eegfm.pipelines.quality.report",
    "DEFAULT_REJECT_ON": "eegfm.pipelines.quality.rules",
    "RULES": "eegfm.pipelines.quality.rules",
    "WINDOW_RULES": "eegfm.pipelines.quality.rules",
    "QualityConfig": "eegfm.pipelines.quality.rules",
    "Rule": "eegfm.pipelines.quality.rules",
    "validate_window": "eegfm.pipelines.quality.rules",
}
__all__ = sorted(_EXPORTS)


__getattr__ = lazy_exports(__name__, _EXPORTS)
