"""Per-window and per-channel signal-quality metrics, rule-based artifact flags and a keep/drop rule.

Input: one window ``data`` (n_chans, n_times) in microvolts after resampling and filtering (19
canonical channels at 256 Hz in the pipeline, but any shape and rate works). Output: a
:class:`QualityReport` with per-channel arrays and the window-level metrics :data:`QUALITY_NAMES`,
whose order is the order of the TFRecord ``quality`` vector (the manifest records the names).

Window-level metrics, in order:

``nonfinite_fraction``
    Fraction of samples (measured channels) that are NaN or infinite; they are zeroed before the
    other metrics are computed.
``snr_db``
    Median over channels of ``10 log10(mean PSD in signal_band / mean PSD in noise_band)``
    (defaults 1-30 Hz vs 30-70 Hz, mains bins excluded). A density ratio: white noise (a loose
    electrode, amplifier noise) reads 0 dB, EMG pushes it down, clean EEG's 1/f spectrum reads
    13-24 dB (1st-99th percentile of eegmat windows). ``noise_band`` must lie inside the
    band-pass, or filtering inflates the ratio.
``flat_fraction``
    Worst channel's fraction of samples inside runs of at least ``flat_min_duration_s`` where the
    sample-to-sample change is at most ``flat_tol_uv`` (disconnected or saturated amplifier).
``clip_fraction``
    Worst channel's fraction of clipped samples: samples within ``clip_tol_rel`` of the declared
    physical range if one is given, else samples in runs of at least ``clip_min_duration_s`` at
    the channel's own extreme value in the window (a plateau at the maximum or minimum). Smooth
    waves never dwell there that long: within 0.1 % of the range a sine at f Hz stays about
    0.02 / f s, so a 50 ms run needs a wave below 0.4 Hz, which the 0.5 Hz high-pass removed.
``ptp_uv``, ``ptp_uv_median``
    Largest and median channel peak-to-peak amplitude (uV).
``muscle_ratio``
    Worst channel's power in ``muscle_band`` (20-100 Hz, capped at Nyquist; mains bins excluded)
    over its power in ``total_band`` (0.5 Hz to Nyquist). EMG is broadband above 20 Hz.
``line_noise_db``
    Worst channel's residual mains ratio: the larger of the 50 and 60 Hz ratios of
    :func:`pipelines.filters.line_ratio_db` (peak vs same-width neighbouring windows; about 0 dB
    when absent, negative after a notch).
``pop_channels``
    Number of channels with an electrode pop: a sudden step (over ``pop_step_s``, at least
    ``pop_min_uv`` and ``pop_z`` robust SDs of that channel's steps) on that channel alone (no other
    channel steps at half that z at the same moment), after which the signal stays displaced (mean
    over the next 0.2 s at least ``pop_persist`` of the step) and relaxes rather than grows (the
    following 0.3 s is no further from baseline). A spike returns within tens of ms; an eye blink
    rises over ~100 ms on both frontal channels; a movement steps on many channels at once.
``bad_channel_fraction``
    Fraction of measured channels whose channel score is at most 0.5 (see below).
``channel_quality``
    Mean channel score over measured channels.
``artifact_ratio``
    Fraction of channel-samples covered by a sample-level detector: flat runs, clipped samples,
    pop spans (step to 0.5 s after) and excursions beyond ``max_abs_uv`` from the channel mean.
``rule_score``
    The largest rule penalty (below), in [0, 1]; 0.5 or more means at least one rule fired.

Scores share one convention. Each metric with a threshold has a *severity*: its value over the
threshold for "higher is worse" metrics, the threshold over the value for "lower is worse" ones, and
for dB metrics the same ratio in power units (``10 ** (excess_dB / 10)``). A rule fires when severity
reaches 1. Its penalty is ``min(1, severity / 2)``: 0 for a perfect value, 0.5 at the threshold, 1 at
twice it. A channel's score is ``1 - max(penalty)`` over its channel metrics (SNR, flat, clip,
high and low amplitude, muscle, mains, pops), so a channel is bad exactly when one of its metrics
reaches its threshold. The window's ``rule_score`` is the largest penalty over the window rules.

:func:`validate_window` keeps a window unless a rule named in ``QualityConfig.reject_on`` fires
(by default the ones that make a window unusable rather than merely noisy: non-finite samples,
a flat or clipped channel, extreme or vanishing amplitude) or the artifact score exceeds
``max_artifact_score``. Muscle, pops, mains, low SNR and many bad channels are scored but kept:
models should see realistic artifacts, and ``artifact_score`` and the ``quality`` vector let
training weight or filter windows later without re-running the pipeline.

Flat and clipping look for plateaus, which a high-pass filter bends into decays, so pass the same
window before notch/band-pass as ``unfiltered`` when plateaus at amplifier rails matter; those two
metrics (and the physical-range check) then use it.

Cost: about 1 ms per 10 s window of 19 channels on one core (``benchmarks/quality.py``); the
spectral metrics share one Welch PSD (:func:`pipelines.features.window_spectrum`, float32 for
float32 windows), returned as ``report.spectrum``. Every metric equals the float64 computation of
its definition up to float32 rounding of the PSD (tests/pipelines/quality/ keeps that reference).

Modules: :mod:`.detectors` (the measurements), :mod:`.rules` (thresholds and decisions),
:mod:`.report` (:class:`QualityReport`), :mod:`.compute` (the entry points).
"""

from eegfm.pipelines.quality.compute import compute_quality, compute_quality_batch
from eegfm.pipelines.quality.detectors import clip_mask, detect_pops, flat_mask
from eegfm.pipelines.quality.report import QUALITY_NAMES, QualityReport
from eegfm.pipelines.quality.rules import DEFAULT_REJECT_ON, RULES, QualityConfig, validate_window

__all__ = [
    "DEFAULT_REJECT_ON",
    "QUALITY_NAMES",
    "RULES",
    "QualityConfig",
    "QualityReport",
    "clip_mask",
    "compute_quality",
    "compute_quality_batch",
    "detect_pops",
    "flat_mask",
    "validate_window",
]
