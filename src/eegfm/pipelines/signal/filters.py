"""Mains-notch and Butterworth band-pass designs, applied with zero phase (:mod:`pipelines.signal.zero_phase`).

Filtering runs after resampling to 256 Hz (cheaper per second of EEG). The output equals
``sosfiltfilt``: magnitude ``|H|^2`` of the single-pass design, no phase shift. ``l_freq`` and
``h_freq`` are *passband* edges as in MNE's ``filter``: each cutoff (zero-phase -6 dB) sits in the
middle of MNE's "auto" transition band outside the edge, so 0.5-70 Hz has cutoffs at 0.25 and
78.75 Hz and matches MNE-based preprocessing (r > 0.9999 on eegmat). ``h_freq`` must stay well
below the 128 Hz Nyquist frequency, where the resampler's anti-aliasing is neither flat nor
alias-free; at 70 Hz the low-pass also removes the 100/120 Hz harmonics, so only mains needs a notch.
"""

from __future__ import annotations

import dataclasses
from functools import lru_cache
from typing import Any

import numpy as np

from eegfm.contract.schema import SFREQ
from eegfm.core.config import Config, ConfigError, check_int, check_option, check_range
from eegfm.core.dsp.filter_design import butter_sos, notch_sos, sos_impulse_response, sos_response
from eegfm.core.dsp.signal_checks import check_sfreq, check_signal
from eegfm.pipelines.signal.line_noise import (  # noqa: F401 (line_noise_db, line_ratio_db: re-exported)
    LINE_FREQUENCIES,
    detect_line_frequency,
    line_noise_db,
    line_ratio_db,
)
from eegfm.pipelines.signal.zero_phase import StreamingFilter, apply_filters  # noqa: F401 (StreamingFilter: re-exported)

OUTPUT_NYQUIST = SFREQ / 2  # Nyquist frequency of the data contract (128 Hz)
# A harmonic is notched only where the band-pass leaves it above this level (zero-phase dB).
_HARMONIC_SKIP_DB = -40.0
# Edge padding and streaming look-ahead: where the impulse response keeps less than this of its mass.
_PAD_TOL = 1e-3
_MARGIN_TOL = 1e-7


@dataclasses.dataclass
class FilterConfig(Config):
    """Notch and band-pass settings.

    line_freq: ``'auto'`` (:func:`detect_line_frequency`), ``50``, ``60`` or ``None`` (no notch).
    notch_harmonics: also notch mains multiples the low-pass does not already attenuate by 40 dB.
    notch_width_hz: -3 dB bandwidth of each notch (single pass); 2 Hz tolerates +-0.2 Hz drift.
    l_freq, h_freq: passband edges in Hz, ``None`` disables a side; ``h_freq`` < 128 Hz.
    order: Butterworth order per edge and pass (the zero-phase response doubles it)."""

    line_freq: Any = "auto"
    notch_harmonics: bool = True
    notch_width_hz: float = 2.0
    l_freq: float | None = 0.5
    h_freq: float | None = 70.0
    order: int = 4
    line_threshold_db: float = 3.0
    line_margin_db: float = 3.0

    def validate(self) -> None:
        check_option("line_freq", self.line_freq, ("auto", *LINE_FREQUENCIES, None))
        if isinstance(self.line_freq, bool):
            raise ConfigError(f"line_freq: expected one of 'auto', 50, 60, None; got {self.line_freq!r}")
        check_option("notch_harmonics", self.notch_harmonics, (True, False))
        check_range("notch_width_hz", self.notch_width_hz, 0.0, 10.0, low_inclusive=False)
        if self.l_freq is not None:
            check_range("l_freq", self.l_freq, 0.0, OUTPUT_NYQUIST, low_inclusive=False, high_inclusive=False)
        if self.h_freq is not None:
            if isinstance(self.h_freq, bool) or not isinstance(self.h_freq, (int, float)):
                raise ConfigError(f"h_freq: expected a number or None; got {self.h_freq!r}")
            if not 0.0 < self.h_freq < OUTPUT_NYQUIST:
                raise ConfigError(
                    f"h_freq: expected a value in (0, {OUTPUT_NYQUIST:g}) Hz, below the Nyquist "
                    f"frequency of the 256 Hz output, or None; got {self.h_freq!r}"
                )
        if self.l_freq is not None and self.h_freq is not None and self.l_freq >= self.h_freq:
            raise ConfigError(f"l_freq: expected a value below h_freq={self.h_freq!r}; got {self.l_freq!r}")
        check_int("order", self.order, 1, 8)
        check_range("line_threshold_db", self.line_threshold_db, 0.0, 60.0)
        check_range("line_margin_db", self.line_margin_db, 0.0, 60.0)


def resolve_line_freq(data: np.ndarray, sfreq: float, config: FilterConfig) -> int | None:
    """``config.line_freq`` with ``'auto'`` replaced by :func:`detect_line_frequency` on ``data``."""
    if config.line_freq != "auto":
        return None if config.line_freq is None else int(config.line_freq)
    return detect_line_frequency(data, sfreq, threshold_db=config.line_threshold_db, margin_db=config.line_margin_db)


@dataclasses.dataclass(frozen=True, eq=False)
class FilterDesign:
    """A filter cascade for one sampling rate: ``sos`` (float64) holds the notches, then the
    high-pass and low-pass; ``l_cutoff``/``h_cutoff`` are the Butterworth cutoffs. ``padlen`` (odd
    reflection at recording edges) and ``margin`` (:class:`StreamingFilter` look-ahead) are samples."""

    sfreq: float
    line_freq: int | None
    notch_freqs: tuple[float, ...]
    l_freq: float | None
    h_freq: float | None
    l_cutoff: float | None
    h_cutoff: float | None
    sos: np.ndarray
    padlen: int
    margin: int

    @property
    def dc_gain(self) -> float:
        """Zero-phase gain at 0 Hz: 0.0 with a high-pass, else 1.0 (notches and low-pass pass DC)."""
        return 0.0 if self.l_freq is not None else 1.0

    def response_db(self, freqs: np.ndarray) -> np.ndarray:
        """Zero-phase magnitude response in dB at ``freqs`` (Hz): twice the single-pass response."""
        return _response_db(self.sos, freqs, self.sfreq)


def _settle_samples(tail: np.ndarray, tol: float) -> int:
    """Samples after which the impulse response keeps less than ``tol`` of its mass."""
    beyond = np.nonzero(tail <= tol * tail[0])[0]
    if beyond.size == 0:
        raise ValueError(
            f"filter impulse response does not settle to {tol:g} within {tail.size} samples; "
            "l_freq or notch_width_hz is too small for this sampling rate"
        )
    return int(beyond[0])


def design_filters(sfreq: float, config: FilterConfig | None = None, line_freq: int | None = None) -> FilterDesign:
    """The notch + band-pass cascade for ``sfreq`` and a resolved ``line_freq`` (50, 60 or None:
    see :func:`resolve_line_freq`). Raises ValueError when an edge is not below Nyquist."""
    config = FilterConfig() if config is None else config
    sfreq = check_sfreq(sfreq)
    check_option("line_freq", line_freq, (*LINE_FREQUENCIES, None))
    return _design_filters(sfreq, dataclasses.astuple(config), line_freq)


# Measuring the settling time costs ~30 ms; a corpus has a handful of distinct designs.
@lru_cache(maxsize=64)
def _design_filters(sfreq: float, config_values: tuple, line_freq: int | None) -> FilterDesign:
    config = FilterConfig(*config_values)
    nyquist = sfreq / 2.0
    for name in ("l_freq", "h_freq"):
        value = getattr(config, name)
        if value is not None and value >= nyquist:
            raise ValueError(
                f"{name}: expected a value below the Nyquist frequency {nyquist:g} Hz of sfreq={sfreq:g}; got {value!r}"
            )
    l_cutoff = None if config.l_freq is None else highpass_cutoff(config.l_freq)
    h_cutoff = None if config.h_freq is None else lowpass_cutoff(config.h_freq, sfreq)
    cutoffs = ((l_cutoff, "highpass"), (h_cutoff, "lowpass"))
    band = [butter_sos(config.order, cutoff, btype, sfreq) for cutoff, btype in cutoffs if cutoff is not None]
    band_sos = np.concatenate(band) if band else np.zeros((0, 6))
    notch_freqs: list[float] = []
    if line_freq is not None:
        n_harmonics = int(nyquist // line_freq) if config.notch_harmonics else 1
        for harmonic in (float(line_freq * k) for k in range(1, n_harmonics + 1)):
            if harmonic + config.notch_width_hz / 2.0 >= nyquist:
                break
            if harmonic == line_freq or _response_db(band_sos, [harmonic], sfreq)[0] > _HARMONIC_SKIP_DB:
                notch_freqs.append(harmonic)
    sections = [notch_sos(f, f / config.notch_width_hz, sfreq) for f in notch_freqs]
    sos = np.concatenate([*sections, band_sos])
    if sos.shape[0] == 0:
        sos = np.array([[1.0, 0.0, 0.0, 1.0, 0.0, 0.0]])  # identity section
    limit = int(min(sfreq * 600, max(sfreq * 120, 2**16)))
    tail = np.cumsum(np.abs(sos_impulse_response(sos, limit))[::-1])[::-1]  # sum_{k >= n} |h[k]|
    padlen = _settle_samples(tail, _PAD_TOL)
    margin = max(_settle_samples(tail, _MARGIN_TOL), padlen + 1)
    return FilterDesign(
        sfreq=sfreq,
        line_freq=line_freq,
        notch_freqs=tuple(notch_freqs),
        l_freq=config.l_freq,
        h_freq=config.h_freq,
        l_cutoff=l_cutoff,
        h_cutoff=h_cutoff,
        sos=sos,
        padlen=padlen,
        margin=margin,
    )


def highpass_cutoff(l_freq: float) -> float:
    """Butterworth cutoff for passband edge ``l_freq``: the middle of MNE's auto transition band."""
    transition = min(max(0.25 * l_freq, 2.0), l_freq)
    return l_freq - transition / 2.0


def lowpass_cutoff(h_freq: float, sfreq: float) -> float:
    """Butterworth cutoff for passband edge ``h_freq`` at ``sfreq`` (always below Nyquist)."""
    transition = min(max(0.25 * h_freq, 2.0), sfreq / 2.0 - h_freq)
    return h_freq + transition / 2.0


def _response_db(sos: np.ndarray, freqs: np.ndarray, sfreq: float) -> np.ndarray:
    h = sos_response(sos, freqs, sfreq)
    return 20.0 * np.log10(np.maximum(np.abs(h) ** 2, 1e-300))


def filter_data(data: np.ndarray, sfreq: float, config: FilterConfig | None = None) -> tuple[np.ndarray, FilterDesign]:
    """Resolve the line frequency on ``data``, design and filter: (float32 data, design)."""
    config = FilterConfig() if config is None else config
    data = check_signal(data)
    sfreq = check_sfreq(sfreq)
    design = design_filters(sfreq, config, resolve_line_freq(data, sfreq, config))
    return apply_filters(data, design), design


def notch_filter(
    data: np.ndarray, sfreq: float, line_freq: int, *, width_hz: float = 2.0, harmonics: bool = True
) -> np.ndarray:
    """Zero-phase IIR notch at ``line_freq`` (and harmonics below Nyquist) only; float32 out."""
    config = FilterConfig(
        line_freq=line_freq, l_freq=None, h_freq=None, notch_width_hz=width_hz, notch_harmonics=harmonics
    )
    return apply_filters(data, design_filters(sfreq, config, line_freq))


def bandpass_filter(
    data: np.ndarray, sfreq: float, l_freq: float | None, h_freq: float | None, *, order: int = 4
) -> np.ndarray:
    """Zero-phase Butterworth band-pass (either edge may be None) only; float32 out."""
    config = FilterConfig(line_freq=None, l_freq=l_freq, h_freq=h_freq, order=order)
    return apply_filters(data, design_filters(sfreq, config, None))
