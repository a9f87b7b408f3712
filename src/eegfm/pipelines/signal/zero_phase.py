"""Applying a filter design with zero phase in the frequency domain, one-shot or chunk by chunk.

``|H(f)|^2`` (float64, once per design and FFT size) multiplies the signal's float32 real FFT
instead of running ``sosfiltfilt``'s recursion: about 4x cheaper, and more precise (a float32
recursion loses digits at the 0.25 Hz high-pass poles). The result equals float64 ``sosfiltfilt``
with the same odd-reflection padding to 1e-4 of the signal's spread, except in the last seconds
(the two extrapolate past the end differently). :class:`StreamingFilter` keeps ``design.margin``
samples of look-ahead, beyond which the impulse response is below 1e-7 of its mass.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING

import numpy as np
import scipy.fft

from eegfm.core.dsp.filter_design import sos_response
from eegfm.core.dsp.signal_checks import check_chunk, check_n_chans, check_signal

if TYPE_CHECKING:  # filters imports this module
    from eegfm.pipelines.signal.filters import FilterDesign


def _shifted(x: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """``x - offset`` as float32, subtracted in floating point (integer samples would wrap)."""
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float64)
    return np.asarray(x - offset, dtype=np.float32)


def _fft_size(n: int) -> int:
    """The smallest size >= ``n`` of the form m * 2**k, m in 16, 18, 20, 24, 27, 30: fast, at most
    20% over ``n``, and shared (with its cached gain) by recordings of similar length."""
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
        gain = gains[size] = (h.real**2 + h.imag**2).astype(np.float32)
    return gain


def _zero_phase(x: np.ndarray, design: FilterDesign, pad_left: int, pad_right: int) -> np.ndarray:
    """``x`` (float32) filtered with ``|H|^2``, odd-reflected by the given lengths at each end; a
    writable view into a private buffer. The padded signal is continued by its end values up to
    the FFT size (at least ``padlen`` more), so what the circular FFT wraps around is negligible."""
    n_chans, n = x.shape
    padded = pad_left + n + pad_right
    size = _fft_size(padded + design.padlen)
    start = (size - padded) // 2 + pad_left  # where x lies in the FFT buffer
    ext = np.empty((n_chans, size), dtype=np.float32)
    ext[:, start : start + n] = x
    if pad_left:
        np.subtract(2 * x[:, :1], x[:, pad_left:0:-1], out=ext[:, start - pad_left : start])
    if pad_right:
        np.subtract(2 * x[:, -1:], x[:, -2 : -pad_right - 2 : -1], out=ext[:, start + n : start + n + pad_right])
    first, last = start - pad_left, start + n + pad_right
    ext[:, :first] = ext[:, first : first + 1]
    ext[:, last:] = ext[:, last - 1 : last]
    spectrum = scipy.fft.rfft(ext, axis=1)
    del ext
    spectrum *= _zero_phase_gain(design, size)
    # A view, not a copy: callers slice it again and copy it once anyway.
    return scipy.fft.irfft(spectrum, n=size, axis=1)[:, start : start + n]


def apply_filters(data: np.ndarray, design: FilterDesign) -> np.ndarray:
    """Filter a whole recording (n_chans, n_times) with ``design``; float32 out.

    Each channel's first sample is subtracted first and ``offset * dc_gain`` added after (exact by
    linearity), so a DC offset of tens of millivolts does not set the float32 FFT's rounding."""
    x = check_signal(data)
    if x.shape[1] == 0:
        return x.astype(np.float32)
    offset = x[:, :1].copy()
    pad = min(design.padlen, x.shape[1] - 1)
    y = np.ascontiguousarray(_zero_phase(_shifted(x, offset), design, pad, pad))
    if design.dc_gain:
        y += (offset * design.dc_gain).astype(np.float32)
    return y


class StreamingFilter:
    """Chunk-by-chunk :func:`apply_filters`: same output for the concatenated input, up to rounding.

    :meth:`push` returns the samples at least ``design.margin`` before the newest input, each
    computed from ``margin`` samples of context either side; :meth:`flush` returns the rest."""

    def __init__(self, design: FilterDesign, n_chans: int) -> None:
        self.design = design
        self.n_chans = check_n_chans(n_chans)
        self._buffer = np.zeros((self.n_chans, 0), dtype=np.float32)
        self._buffer_start = self._n_in = self._n_out = 0  # global indices: buffer start, inputs in, outputs out
        self._closed = False
        self._offset: np.ndarray | None = None

    def push(self, chunk: np.ndarray) -> np.ndarray:
        """Add ``chunk`` (n_chans, n_times); return the outputs now final (possibly none)."""
        if self._closed:
            raise RuntimeError("StreamingFilter: push() after flush(); create a new StreamingFilter")
        if not self._append(chunk) or self._n_in - self.design.margin <= self._n_out:
            return np.zeros((self.n_chans, 0), dtype=np.float32)
        return self._emit(self._n_in - self.design.margin, final=False)

    def finish(self, chunk: np.ndarray) -> np.ndarray:
        """``push(chunk)`` then ``flush()``, filtering the last ``margin`` samples once, not twice."""
        if self._closed:
            raise RuntimeError("StreamingFilter: finish() after flush(); create a new StreamingFilter")
        self._append(chunk)
        return self.flush()

    def _append(self, chunk: np.ndarray) -> bool:
        """Buffer ``chunk`` minus the first sample's offset; False when it is empty."""
        chunk = check_chunk(chunk, self.n_chans)
        if chunk.shape[1] == 0:
            return False
        if self._offset is None:
            self._offset = chunk[:, :1].copy()
        shifted = _shifted(chunk, self._offset)
        self._buffer = shifted if self._buffer.shape[1] == 0 else np.concatenate([self._buffer, shifted], axis=1)
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
        segment = self._buffer[:, seg_start - self._buffer_start :]
        pad = min(self.design.padlen, self._n_in - 1)  # not final: n_in > margin > padlen
        y = _zero_phase(segment, self.design, pad if seg_start == 0 else 0, pad if final else 0)
        out = y[:, self._n_out - seg_start : stop - seg_start]  # y is private: add in place
        if self.design.dc_gain:
            out += (self._offset * self.design.dc_gain).astype(np.float32)
        self._n_out = stop
        keep_from = max(0, stop - margin)
        self._buffer = self._buffer[:, keep_from - self._buffer_start :]
        self._buffer_start = keep_from
        return out
