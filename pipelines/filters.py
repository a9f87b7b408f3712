"""Mains-notch and band-pass filtering, zero-phase, float32, one-shot or chunk by chunk.

Pipeline order: resample to 256 Hz first (:mod:`pipelines.resample`), then filter. Why:

- Cost. Filtering costs a fixed amount per sample, so filtering 500 Hz data after resampling to
  256 Hz touches 256/500 of the samples: about half the work (measured on the 64 eegmat files:
  see ``benchmarks/signal_stages.py``). At 5 kHz it is 1/20.
- The resampler's anti-aliasing filter already removes everything above 128 Hz, so nothing is lost.

The cascade is designed as IIR second-order sections (``sos``) and applied with zero phase: the
output is what ``sosfiltfilt`` (forward, then backward) computes, with a magnitude response equal
to the square of the single-pass design (a 4th-order Butterworth edge becomes -6 dB at its cutoff
and falls at 48 dB/octave) and no phase shift, so EEG waveforms (spikes, sharp waves) keep their
timing and shape.

``l_freq`` and ``h_freq`` are *passband* edges, as in MNE's ``filter``: content inside them passes
essentially unattenuated (0.04 dB down at 0.5 Hz, within 0.01 dB from 1 to 45 Hz, 1.4 dB down at
70 Hz, where a Butterworth's knee is softer than a long FIR's), and each Butterworth cutoff (the
zero-phase -6 dB point) sits in the middle of a transition band outside the edge, sized by MNE's
documented "auto" rule: ``min(max(0.25 * l_freq, 2), l_freq)`` below the high-pass edge and
``min(max(0.25 * h_freq, 2), nyquist - h_freq)`` above the low-pass edge. So 0.5-70 Hz has cutoffs
at 0.25 and 78.75 Hz. With MNE's convention "0.5-70 Hz" means the same here as in the MNE-based
preprocessing scripts common in the EEG foundation-model literature; on eegmat the outputs
correlate with MNE's at r > 0.9999 per channel (``tests/pipelines/test_filters.py``).

Application in the frequency domain: the zero-phase response ``|H(f)|^2`` is evaluated in float64
(once per design and FFT size) and multiplied into the signal's real FFT, in float32. Why not run
the recursion forward and backward with ``sosfilt``:

- Cost. The recursion costs 2 passes x 6 sections of multiply-adds per sample, about 21 ns per
  sample here; a float32 real FFT and its inverse cost 4 to 6 ns per sample. On the 64 eegmat
  files the stage takes 0.42 s instead of 0.73 s (``benchmarks/signal_stages.py``).
- Precision. The 0.25 Hz high-pass puts its poles 2.3e-3 inside the unit circle at 256 Hz, where a
  float32 recursion loses digits (7e-4 of the signal's spread on eegmat); the FFT's rounding is
  about 2e-6 of it. ``|H|^2`` in float64 is well conditioned for any design.

Each channel's first sample is subtracted first (see :func:`apply_filters`): a DC offset of tens
of millivolts would otherwise set the scale of the rounding. The result equals float64
``sosfiltfilt`` with the same odd-reflection padding to within 1e-4 of the signal's spread, except
in the last few seconds of a recording: there the two extrapolate the unknown signal beyond the
end differently (``sosfiltfilt`` starts its backward pass as if the forward output stayed at its
last value, here the padded signal stays at its last value) and differ by up to about 1% of the
spread. Both are edge conventions; the odd reflection keeps either small. The FFT is circular: the
padded signal is continued by constants up to the FFT size, at least ``padlen`` samples in all, so
what wraps around reaches the data only through the impulse response's tail beyond
``1.5 * padlen``.

The defaults are a 0.5-70 Hz band-pass plus a notch at the detected mains frequency:

- ``l_freq = 0.5`` removes electrode drift and sweat artifacts while keeping delta (slow waves of
  sleep and encephalopathy start around 0.5 Hz); it matches the high-pass of most clinical
  systems and of the public EEG foundation-model corpora.
- ``h_freq = 70`` keeps beta and low gamma (and with them the EMG signature that quality scoring and
  the model must be able to see) while staying clear of the band near the 128 Hz Nyquist frequency of
  the 256 Hz output. The upper edge must stay below 128 Hz: a digital low-pass needs its cutoff
  strictly below Nyquist (at or above it the design is undefined, the band simply does not exist
  at 256 Hz), and the resampler's anti-aliasing filter is flat only to about 110 Hz, -6 dB at
  128 Hz, and folds 128-148 Hz back into 108-128 Hz, so an edge near Nyquist would keep a band
  that is neither flat nor alias-free. 70 Hz also makes the low-pass, not a notch, remove the
  100 / 120 Hz mains harmonics (46 / 135 dB down), so only the fundamental needs a notch.

Chunked processing: a zero-phase filter is not causal, so output near a chunk boundary depends on
samples after it. :class:`StreamingFilter` keeps ``design.margin`` samples of look-ahead and
look-behind, the length after which the cascade's impulse response has decayed to below 1e-7 of its
total (float32 rounding level), so its output equals :func:`apply_filters` on the whole recording
apart from float rounding.
"""

from __future__ import annotations

import dataclasses
import math
import weakref
from typing import Any

import numpy as np
import scipy.fft

from eegfm.core.config import Config, ConfigError, check_option, check_range
from eegfm.pipelines.features import welch_psd
from eegfm.pipelines.filter_design import butter_sos, notch_sos, sos_impulse_response, sos_response

LINE_FREQUENCIES = (50, 60)
OUTPUT_NYQUIST = 128.0  # Nyquist frequency of the 256 Hz data contract
# A harmonic is notched only where the band-pass leaves it above this level (zero-phase dB): below
# it the low-pass already removes the harmonic better than a notch would.
_HARMONIC_SKIP_DB = -40.0
# Padding (odd reflection) at the true recording edges: the length over which the impulse
# response carries all but 1e-3 of its mass, so the edge transient is small.
_PAD_TOL = 1e-3
# Look-ahead/behind of the streaming filter: all but 1e-7 of the impulse response's mass.
_MARGIN_TOL = 1e-7


@dataclasses.dataclass
class FilterConfig(Config):
    """Notch and band-pass settings.

    line_freq: ``'auto'`` (detect from the spectrum, see :func:`detect_line_frequency`), ``50``,
        ``60`` or ``None`` (no notch).
    notch_harmonics: also notch multiples of the mains frequency below Nyquist that the low-pass
        does not already attenuate by 40 dB.
    notch_width_hz: -3 dB bandwidth of each notch (single pass). 2 Hz tolerates mains drift of
        +-0.2 Hz with more than 25 dB of zero-phase attenuation while removing little EEG.
    l_freq, h_freq: band-pass passband edges in Hz (cutoffs lie outside them, see the module
        docstring); ``None`` disables a side. ``h_freq`` must be below 128 Hz, the Nyquist
        frequency of the 256 Hz output.
    order: Butterworth order of each band edge per pass (the zero-phase response doubles it).
    line_threshold_db, line_margin_db: detection thresholds, see :func:`detect_line_frequency`.
    """

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
            raise ConfigError(
                f"line_freq: expected one of 'auto', 50, 60, None; got {self.line_freq!r}"
            )
        check_option("notch_harmonics", self.notch_harmonics, (True, False))
        check_range("notch_width_hz", self.notch_width_hz, 0.0, 10.0, low_inclusive=False)
        if self.l_freq is not None:
            check_range("l_freq", self.l_freq, 0.0, OUTPUT_NYQUIST, low_inclusive=False,
                        high_inclusive=False)
        if self.h_freq is not None:
            if isinstance(self.h_freq, bool) or not isinstance(self.h_freq, (int, float)):
                raise ConfigError(f"h_freq: expected a number or None; got {self.h_freq!r}")
            if not 0.0 < self.h_freq < OUTPUT_NYQUIST:
                raise ConfigError(
                    f"h_freq: expected a value in (0, {OUTPUT_NYQUIST:g}) Hz, below the Nyquist "
                    f"frequency of the 256 Hz output, or None; got {self.h_freq!r}"
                )
        if self.l_freq is not None and self.h_freq is not None and self.l_freq >= self.h_freq:
            raise ConfigError(
                f"l_freq: expected a value below h_freq={self.h_freq!r}; got {self.l_freq!r}"
            )
        order = self.order
        if isinstance(order, bool) or not isinstance(order, int) or not 1 <= order <= 8:
            raise ConfigError(f"order: expected an integer in [1, 8]; got {self.order!r}")
        check_range("line_threshold_db", self.line_threshold_db, 0.0, 60.0)
        check_range("line_margin_db", self.line_margin_db, 0.0, 60.0)


# --------------------------------------------------------------------------------------------
# Line-frequency detection
# --------------------------------------------------------------------------------------------


def _check_data(data: np.ndarray, name: str = "data") -> np.ndarray:
    data = np.asarray(data)
    if data.ndim != 2:
        raise ValueError(f"{name}: expected shape (n_chans, n_times); got shape {data.shape}")
    if not np.issubdtype(data.dtype, np.number) or np.iscomplexobj(data):
        raise TypeError(f"{name}: expected real numbers; got dtype {data.dtype}")
    return data


def _shifted(x: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """``x - offset`` as float32, subtracted in floating point (integer samples would wrap)."""
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float64)
    return np.asarray(x - offset, dtype=np.float32)


def _check_sfreq(sfreq: float) -> float:
    if isinstance(sfreq, bool) or not isinstance(sfreq, (int, float, np.integer, np.floating)):
        raise TypeError(f"sfreq: expected a sampling rate in Hz; got {sfreq!r}")
    if not math.isfinite(sfreq) or sfreq <= 0:
        raise ValueError(f"sfreq: expected a finite rate > 0 Hz; got {sfreq!r}")
    return float(sfreq)


def line_ratio_db(freqs: np.ndarray, psd: np.ndarray, freq: float) -> np.ndarray:
    """Per-channel line-noise ratio in dB from a PSD (``psd`` shape (n_chans, n_freqs)).

    The peak is the largest PSD value within +-0.5 Hz of ``freq`` (mains drifts by up to about
    0.2 Hz, and a line may straddle two bins). The reference is the same statistic over 1 Hz
    windows centred 2, 3, 4 and 5 Hz away on either side (median of those maxima): comparing a
    maximum with a maximum keeps the ratio near 0 dB when no line is present, where comparing it
    with a median would read several dB of "line" out of plain estimation noise.
    Positive values mean a line stands out; strongly negative values mean the recording was
    already notched there. NaN where ``freq`` +- 0.5 Hz is not inside the spectrum.
    """
    freqs = np.asarray(freqs, dtype=np.float64)
    psd = np.asarray(psd, dtype=np.float64)
    if psd.ndim != 2 or psd.shape[1] != freqs.size:
        raise ValueError(f"psd: expected shape (n_chans, {freqs.size}); got {psd.shape}")
    nan = np.full(psd.shape[0], np.nan)
    if freq + 0.5 > freqs[-1] or freq - 0.5 < freqs[0]:
        return nan

    def window_max(center: float) -> np.ndarray | None:
        sel = np.abs(freqs - center) <= 0.5
        return psd[:, sel].max(axis=1) if sel.any() else None

    peak = window_max(freq)
    refs = [
        window_max(freq + side * step)
        for step in (2.0, 3.0, 4.0, 5.0)
        for side in (-1.0, 1.0)
        if freqs[0] <= freq + side * step - 0.5 and freq + side * step + 0.5 <= freqs[-1]
    ]
    refs = [r for r in refs if r is not None]
    if peak is None or not refs:
        return nan
    ref = np.median(np.stack(refs, axis=1), axis=1)
    tiny = np.finfo(np.float64).tiny
    return 10.0 * np.log10(np.maximum(peak, tiny) / np.maximum(ref, tiny))


def _line_psd(data: np.ndarray, sfreq: float) -> tuple[np.ndarray, np.ndarray]:
    # 4 s segments give 0.25 Hz bins: a mains line fills one or two bins while EEG around it is
    # spread thin, so the line stands out by far more than with coarse bins. At most 32 segments
    # (about 2 minutes of data, spread over the recording) bound the cost on long recordings.
    return welch_psd(data, sfreq, segment_s=4.0, max_segments=32)


def line_noise_db(data: np.ndarray, sfreq: float, freq: float) -> np.ndarray:
    """Per-channel ratio (dB) of the PSD peak at ``freq`` to neighbouring bins; see line_ratio_db."""
    data = _check_data(data)
    sfreq = _check_sfreq(sfreq)
    freqs, psd = _line_psd(data, sfreq)
    return line_ratio_db(freqs, psd, freq)


def detect_line_frequency(
    data: np.ndarray,
    sfreq: float,
    *,
    threshold_db: float = 3.0,
    margin_db: float = 3.0,
) -> int | None:
    """The mains frequency visible in ``data``: 50, 60, or None.

    For each candidate the per-channel :func:`line_ratio_db` is taken and its median over channels
    is the evidence (robust to a few bad channels either way). The larger candidate wins if it is at
    least ``threshold_db`` above its neighbouring bins and ``margin_db`` above the other candidate.
    Returns None when neither stands out, which includes recordings already notched at acquisition
    (they show a dip, not a peak: nothing left to remove), and when the Nyquist frequency is below
    50.5 Hz (a candidate needs its +-0.5 Hz peak window inside the spectrum).

    Needs at least 1 s of data; give it a minute or the whole recording. On whole recordings the
    eegmat files (already notched at 50 Hz) read -26 to +1.9 dB at 50 Hz and -1.8 to +1.2 dB at
    60 Hz, and the eegmmi files +5.3 and +6.2 dB at 60 Hz; on single 10 s windows estimation noise
    alone reaches 3-5 dB, and 7 of about 1,100 eegmat windows would read as 60 Hz.
    """
    data = _check_data(data)
    sfreq = _check_sfreq(sfreq)
    if data.shape[1] < sfreq:
        raise ValueError(
            f"data: line-frequency detection needs at least 1 s (n_times >= {int(math.ceil(sfreq))} "
            f"at sfreq={sfreq:g}); got n_times={data.shape[1]}"
        )
    freqs, psd = _line_psd(data, sfreq)
    evidence: dict[int, float] = {}
    for freq in LINE_FREQUENCIES:
        ratios = line_ratio_db(freqs, psd, freq)
        finite = ratios[np.isfinite(ratios)]
        if finite.size:
            evidence[freq] = float(np.median(finite))
    if not evidence:
        return None
    best = max(evidence, key=evidence.get)
    others = [v for f, v in evidence.items() if f != best]
    if evidence[best] < threshold_db:
        return None
    if others and evidence[best] - max(others) < margin_db:
        return None
    return best


def resolve_line_freq(data: np.ndarray, sfreq: float, config: FilterConfig) -> int | None:
    """``config.line_freq`` with ``'auto'`` replaced by :func:`detect_line_frequency` on ``data``."""
    if config.line_freq != "auto":
        return None if config.line_freq is None else int(config.line_freq)
    return detect_line_frequency(
        data, sfreq, threshold_db=config.line_threshold_db, margin_db=config.line_margin_db
    )


# --------------------------------------------------------------------------------------------
# Design
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class FilterDesign:
    """A concrete filter cascade for one sampling rate.

    ``sos`` (float64) holds notch sections first, then the high-pass and low-pass. ``l_cutoff`` /
    ``h_cutoff`` are the Butterworth cutoffs (zero-phase -6 dB) for the passband edges ``l_freq``
    / ``h_freq``. ``padlen`` is the odd reflection used at the true recording edges, ``margin``
    the look-ahead/behind of :class:`StreamingFilter` (both in samples).
    """

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

    @property
    def n_sections(self) -> int:
        return int(self.sos.shape[0])

    def response_db(self, freqs: np.ndarray) -> np.ndarray:
        """Zero-phase magnitude response in dB at ``freqs`` (Hz): twice the single-pass response."""
        h = sos_response(self.sos, freqs, self.sfreq)
        return 20.0 * np.log10(np.maximum(np.abs(h) ** 2, 1e-300))

    def describe(self) -> dict[str, Any]:
        """Plain values for the manifest."""
        return {
            "sfreq": self.sfreq,
            "line_freq": self.line_freq,
            "notch_freqs": list(self.notch_freqs),
            "l_freq": self.l_freq,
            "h_freq": self.h_freq,
            "l_cutoff": self.l_cutoff,
            "h_cutoff": self.h_cutoff,
            "n_sections": self.n_sections,
            "dtype": "float32",
            "applied": "zero-phase |H|^2 in the frequency domain",
        }


def _tail_mass(sos: np.ndarray, limit: int) -> np.ndarray:
    """``tail[n]``: the mass ``sum_{k >= n} |h[k]|`` of the cascade's impulse response within
    ``limit`` samples."""
    h = np.abs(sos_impulse_response(sos, limit))
    return np.cumsum(h[::-1])[::-1]


def _settle_samples(tail: np.ndarray, tol: float) -> int:
    """Samples after which the impulse response keeps less than ``tol`` of its mass."""
    beyond = np.nonzero(tail <= tol * tail[0])[0]
    if beyond.size == 0:
        raise ValueError(
            f"filter impulse response does not settle to {tol:g} within {tail.size} samples; "
            "l_freq or notch_width_hz is too small for this sampling rate"
        )
    return int(beyond[0])


def design_filters(
    sfreq: float, config: FilterConfig | None = None, line_freq: int | None = None
) -> FilterDesign:
    """Design the notch + band-pass cascade for ``sfreq`` with an already resolved ``line_freq``.

    ``line_freq`` is 50, 60 or None; use :func:`resolve_line_freq` to turn ``config.line_freq``
    (which may be ``'auto'``) into it. Raises ValueError when an edge is not below Nyquist.
    """
    config = FilterConfig() if config is None else config
    sfreq = _check_sfreq(sfreq)
    check_option("line_freq", line_freq, (*LINE_FREQUENCIES, None))
    # Measuring the settling time filters up to 10 minutes of impulse response (about 30 ms);
    # a corpus has a handful of distinct designs, so each is computed once per process.
    key = (sfreq, dataclasses.astuple(config), line_freq)
    design = _DESIGNS.get(key)
    if design is None:
        if len(_DESIGNS) >= 64:
            _DESIGNS.clear()
        design = _DESIGNS[key] = _design_filters(sfreq, config, line_freq)
    return design


_DESIGNS: dict[tuple, FilterDesign] = {}


def _design_filters(sfreq: float, config: FilterConfig, line_freq: int | None) -> FilterDesign:
    nyquist = sfreq / 2.0
    for name in ("l_freq", "h_freq"):
        value = getattr(config, name)
        if value is not None and value >= nyquist:
            raise ValueError(
                f"{name}: expected a value below the Nyquist frequency {nyquist:g} Hz of "
                f"sfreq={sfreq:g}; got {value!r}"
            )
    sections: list[np.ndarray] = []
    band: list[np.ndarray] = []
    l_cutoff = h_cutoff = None
    if config.l_freq is not None:
        l_cutoff = highpass_cutoff(config.l_freq)
        band.append(butter_sos(config.order, l_cutoff, "highpass", sfreq))
    if config.h_freq is not None:
        h_cutoff = lowpass_cutoff(config.h_freq, sfreq)
        band.append(butter_sos(config.order, h_cutoff, "lowpass", sfreq))
    band_sos = np.concatenate(band) if band else np.zeros((0, 6))

    notch_freqs: list[float] = []
    if line_freq is not None:
        harmonic = float(line_freq)
        while harmonic + config.notch_width_hz / 2.0 < nyquist:
            keep = harmonic == line_freq
            if not keep and config.notch_harmonics:
                level = _zero_phase_db(band_sos, harmonic, sfreq)
                keep = level > _HARMONIC_SKIP_DB
            if keep:
                notch_freqs.append(harmonic)
                sections.append(notch_sos(harmonic, harmonic / config.notch_width_hz, sfreq))
            if not config.notch_harmonics:
                break
            harmonic += line_freq
    sections.append(band_sos)
    sos = np.concatenate(sections)
    if sos.shape[0] == 0:
        sos = np.array([[1.0, 0.0, 0.0, 1.0, 0.0, 0.0]])  # identity section
    limit = int(min(sfreq * 600, max(sfreq * 120, 2**16)))
    tail = _tail_mass(sos, limit)
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


def _zero_phase_db(sos: np.ndarray, freq: float, sfreq: float) -> float:
    if sos.shape[0] == 0:
        return 0.0
    h = sos_response(sos, [freq], sfreq)
    return float(20.0 * np.log10(max(abs(h[0]) ** 2, 1e-300)))


# --------------------------------------------------------------------------------------------
# Application
# --------------------------------------------------------------------------------------------


def _fft_size(n: int) -> int:
    """The smallest size >= ``n`` of the form m * 2**k, m in 16, 18, 20, 24, 27, 30: fast for a real
    FFT, at most 20% over ``n``, and few enough that recordings of similar length share one
    (``_zero_phase_gain`` is computed once per size)."""
    k = max(0, (max(n, 1) - 1).bit_length() - 5)
    return min(m << j for j in (k, k + 1) for m in (16, 18, 20, 24, 27, 30) if m << j >= n)


_GAINS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # design -> {fft size: gain}


def _zero_phase_gain(design: FilterDesign, size: int) -> np.ndarray:
    """``|H|^2`` of ``design.sos`` at the ``size // 2 + 1`` frequencies of a real FFT (float32)."""
    gains = _GAINS.setdefault(design, {})
    gain = gains.get(size)
    if gain is None:
        if len(gains) >= 32:
            gains.clear()
        h = sos_response(design.sos, np.fft.rfftfreq(size, 1.0 / design.sfreq), design.sfreq)
        gain = gains[size] = (h.real ** 2 + h.imag ** 2).astype(np.float32)
    return gain


def _zero_phase(x: np.ndarray, design: FilterDesign, pad_left: int, pad_right: int) -> np.ndarray:
    """``x`` (float32) filtered with ``|H|^2``, odd-reflected by the given lengths at each end;
    a writable view (rows not contiguous) into a private buffer.

    The padded signal is continued by its end values up to the FFT size, at least
    ``design.padlen`` samples in all, split between the two ends: where both ends are padded, what
    the circular FFT wraps around reaches ``x`` only through the impulse response's tail beyond
    ``1.5 * padlen``. Separate pads let the streaming filter pad only at true recording edges.
    """
    n_chans, n = x.shape
    padded = pad_left + n + pad_right
    size = _fft_size(padded + design.padlen)
    start = (size - padded) // 2 + pad_left  # where x lies in the FFT buffer
    ext = np.empty((n_chans, size), dtype=np.float32)
    ext[:, start:start + n] = x
    if pad_left:
        np.subtract(2 * x[:, :1], x[:, pad_left:0:-1], out=ext[:, start - pad_left:start])
    if pad_right:
        np.subtract(2 * x[:, -1:], x[:, -2:-pad_right - 2:-1], out=ext[:, start + n:start + n + pad_right])
    first, last = start - pad_left, start + n + pad_right
    ext[:, :first] = ext[:, first:first + 1]
    ext[:, last:] = ext[:, last - 1:last]
    spectrum = scipy.fft.rfft(ext, axis=1)
    del ext
    spectrum *= _zero_phase_gain(design, size)
    # A view of the FFT's output, not a copy: the streaming filter slices it again and its
    # buffers copy it once anyway (a copy here was 4% of a recording's processing).
    return scipy.fft.irfft(spectrum, n=size, axis=1)[:, start:start + n]


def apply_filters(data: np.ndarray, design: FilterDesign) -> np.ndarray:
    """Filter a whole recording (n_chans, n_times) with ``design``; float32 out.

    Each channel's first sample is subtracted before filtering and ``offset * dc_gain`` added
    after (exact by linearity: 0 with a high-pass, 1 without). A DC-coupled amplifier can leave
    offsets of tens of millivolts; in float32 the FFT's rounding error scales with the
    signal's magnitude, so filtering the offset along would cost microvolts of accuracy.
    """
    x = _check_data(data)
    if x.shape[1] == 0:
        return x.astype(np.float32)
    offset = x[:, :1].copy()
    pad = min(design.padlen, x.shape[1] - 1)
    y = np.ascontiguousarray(_zero_phase(_shifted(x, offset), design, pad, pad))
    if design.dc_gain:
        y += (offset * design.dc_gain).astype(np.float32)
    return y


def filter_data(
    data: np.ndarray, sfreq: float, config: FilterConfig | None = None
) -> tuple[np.ndarray, FilterDesign]:
    """Resolve the line frequency (``'auto'`` detects it on ``data``), design, and filter.

    Returns the float32 filtered data and the design (its ``describe()`` goes to the manifest).
    """
    config = FilterConfig() if config is None else config
    data = _check_data(data)
    sfreq = _check_sfreq(sfreq)
    design = design_filters(sfreq, config, resolve_line_freq(data, sfreq, config))
    return apply_filters(data, design), design


def notch_filter(
    data: np.ndarray, sfreq: float, line_freq: int, *, width_hz: float = 2.0, harmonics: bool = True
) -> np.ndarray:
    """Zero-phase IIR notch at ``line_freq`` (and harmonics below Nyquist) only; float32 out."""
    config = FilterConfig(line_freq=line_freq, l_freq=None, h_freq=None,
                          notch_width_hz=width_hz, notch_harmonics=harmonics)
    return apply_filters(data, design_filters(sfreq, config, line_freq))


def bandpass_filter(
    data: np.ndarray, sfreq: float, l_freq: float | None, h_freq: float | None, *, order: int = 4
) -> np.ndarray:
    """Zero-phase Butterworth band-pass (either edge may be None) only; float32 out."""
    config = FilterConfig(line_freq=None, l_freq=l_freq, h_freq=h_freq, order=order)
    return apply_filters(data, design_filters(sfreq, config, None))


class StreamingFilter:
    """Chunk-by-chunk :func:`apply_filters`: same output for the concatenated input, up to rounding.

    Each :meth:`push` returns the samples that are at least ``design.margin`` before the newest
    input; :meth:`flush` returns the rest. Every output block is computed from the input
    ``margin`` samples either side of it, where the neighbouring context's influence on the
    impulse response has fallen below 1e-7; at the true start and end of the recording the same odd
    reflection as the one-shot path is used. Memory is bounded by chunk size + 2 * margin.
    """

    def __init__(self, design: FilterDesign, n_chans: int) -> None:
        if isinstance(n_chans, bool) or not isinstance(n_chans, (int, np.integer)) or n_chans < 1:
            raise ValueError(f"n_chans: expected an integer >= 1; got {n_chans!r}")
        self.design = design
        self.n_chans = int(n_chans)
        self._buffer = np.zeros((self.n_chans, 0), dtype=np.float32)
        self._buffer_start = 0
        self._n_in = 0
        self._n_out = 0
        self._closed = False
        self._offset: np.ndarray | None = None

    def push(self, chunk: np.ndarray) -> np.ndarray:
        """Add ``chunk`` (n_chans, n_times); return the outputs now final (possibly none)."""
        if self._closed:
            raise RuntimeError(
                "StreamingFilter: push() after flush(); create a new StreamingFilter"
            )
        if not self._append(chunk):
            return np.zeros((self.n_chans, 0), dtype=np.float32)
        stop = self._n_in - self.design.margin
        if stop <= self._n_out:
            return np.zeros((self.n_chans, 0), dtype=np.float32)
        return self._emit(stop, final=False)

    def finish(self, chunk: np.ndarray) -> np.ndarray:
        """``push(chunk)`` then ``flush()`` in one pass: every remaining output, stream closed.

        Equal to concatenating the two, but filters the last ``margin`` samples once instead of
        twice; a recording that arrives in a single chunk is filtered exactly once, as one shot.
        """
        if self._closed:
            raise RuntimeError("StreamingFilter: finish() after flush(); create a new StreamingFilter")
        self._append(chunk)
        return self.flush()

    def _append(self, chunk: np.ndarray) -> bool:
        """Buffer ``chunk`` minus the first sample's offset; False when it is empty."""
        chunk = _check_data(chunk, "chunk")
        if chunk.shape[0] != self.n_chans:
            raise ValueError(
                f"chunk: expected {self.n_chans} channels (n_chans); got {chunk.shape[0]}"
            )
        if chunk.shape[1] == 0:
            return False
        if self._offset is None:
            self._offset = chunk[:, :1].copy()
        shifted = _shifted(chunk, self._offset)
        self._buffer = shifted if self._buffer.shape[1] == 0 else np.concatenate(
            [self._buffer, shifted], axis=1)
        self._n_in += chunk.shape[1]
        return True

    def flush(self) -> np.ndarray:
        """Return the remaining outputs and close the stream."""
        if self._closed:
            raise RuntimeError("StreamingFilter: flush() called twice")
        self._closed = True
        if self._n_in == self._n_out:
            return np.zeros((self.n_chans, 0), dtype=np.float32)
        return self._emit(self._n_in, final=True)

    def _emit(self, stop: int, *, final: bool) -> np.ndarray:
        margin = self.design.margin
        seg_start = max(0, self._n_out - margin)
        segment = self._buffer[:, seg_start - self._buffer_start:]
        if final:
            pad = min(self.design.padlen, self._n_in - 1)
        else:
            pad = self.design.padlen  # n_in > margin > padlen, as in the one-shot path
        y = _zero_phase(segment, self.design, pad if seg_start == 0 else 0, pad if final else 0)
        out = y[:, self._n_out - seg_start: stop - seg_start]  # y is private: add in place
        if self.design.dc_gain:
            out += (self._offset * self.design.dc_gain).astype(np.float32)
        self._n_out = stop
        keep_from = max(0, stop - margin)
        self._buffer = self._buffer[:, keep_from - self._buffer_start:]
        self._buffer_start = keep_from
        return out
