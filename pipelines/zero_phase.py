"""Applying a filter design with zero phase, in the frequency domain: one-shot or chunk by chunk.

The zero-phase response ``|H(f)|^2`` is evaluated in float64 (once per design and FFT size) and
multiplied into the signal's real FFT, in float32, rather than running the recursion forward and
backward (``sosfiltfilt``):

- Cost. The recursion costs 2 passes x 6 sections of multiply-adds, about 21 ns per sample here; a
  float32 real FFT and its inverse 4 to 6 ns. On the 64 eegmat files the stage takes 0.42 s
  instead of 0.73 s (``benchmarks/signal_stages.py``).
- Precision. The 0.25 Hz high-pass has poles 2.3e-3 inside the unit circle at 256 Hz, where a
  float32 recursion loses digits (7e-4 of the signal's spread on eegmat); the FFT's rounding is
  about 2e-6 of it.

Each channel's first sample is subtracted first (:func:`apply_filters`), so a DC offset of tens of
millivolts does not set the scale of the rounding. The result equals float64 ``sosfiltfilt`` with
the same odd-reflection padding to 1e-4 of the signal's spread, except in the last few seconds,
where the two extrapolate past the end differently (``sosfiltfilt`` holds the forward output's
last value, this the padded signal's) and differ by up to 1%. The FFT is circular: the padded
signal is continued by constants up to the FFT size, at least ``padlen`` samples in all, so what
wraps around reaches the data only through the impulse response's tail beyond ``1.5 * padlen``.

A zero-phase filter is not causal: :class:`StreamingFilter` keeps ``design.margin`` samples of
look-ahead and look-behind, after which the impulse response has decayed below 1e-7 of its total
(float32 rounding), so its output equals :func:`apply_filters` on the whole recording up to rounding.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING

import numpy as np
import scipy.fft

from eegfm.pipelines.filter_design import sos_response
from eegfm.pipelines.signal_checks import check_chunk, check_n_chans, check_signal

if TYPE_CHECKING:  # filters imports this module
    from eegfm.pipelines.filters import FilterDesign


def _shifted(x: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """``x - offset`` as float32, subtracted in floating point (integer samples would wrap)."""
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float64)
    return np.asarray(x - offset, dtype=np.float32)


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
        gain = gains[size] = (h.real**2 + h.imag**2).astype(np.float32)
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
    # A view of the FFT's output, not a copy: the streaming filter slices it again and its
    # buffers copy it once anyway (a copy here was 4% of a recording's processing).
    return scipy.fft.irfft(spectrum, n=size, axis=1)[:, start : start + n]


def apply_filters(data: np.ndarray, design: FilterDesign) -> np.ndarray:
    """Filter a whole recording (n_chans, n_times) with ``design``; float32 out.

    Each channel's first sample is subtracted before filtering and ``offset * dc_gain`` added
    after (exact by linearity: 0 with a high-pass, 1 without). A DC-coupled amplifier can leave
    offsets of tens of millivolts; in float32 the FFT's rounding error scales with the
    signal's magnitude, so filtering the offset along would cost microvolts of accuracy.
    """
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

    Each :meth:`push` returns the samples that are at least ``design.margin`` before the newest
    input; :meth:`flush` returns the rest. Every output block is computed from the input
    ``margin`` samples either side of it, where the neighbouring context's influence on the
    impulse response has fallen below 1e-7; at the true start and end of the recording the same odd
    reflection as the one-shot path is used. Memory is bounded by chunk size + 2 * margin.
    """

    def __init__(self, design: FilterDesign, n_chans: int) -> None:
        self.design = design
        self.n_chans = check_n_chans(n_chans)
        self._buffer = np.zeros((self.n_chans, 0), dtype=np.float32)
        self._buffer_start = 0
        self._n_in = 0
        self._n_out = 0
        self._closed = False
        self._offset: np.ndarray | None = None

    def push(self, chunk: np.ndarray) -> np.ndarray:
        """Add ``chunk`` (n_chans, n_times); return the outputs now final (possibly none)."""
        if self._closed:
            raise RuntimeError("StreamingFilter: push() after flush(); create a new StreamingFilter")
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
        if final:
            pad = min(self.design.padlen, self._n_in - 1)
        else:
            pad = self.design.padlen  # n_in > margin > padlen, as in the one-shot path
        y = _zero_phase(segment, self.design, pad if seg_start == 0 else 0, pad if final else 0)
        out = y[:, self._n_out - seg_start : stop - seg_start]  # y is private: add in place
        if self.design.dc_gain:
            out += (self._offset * self.design.dc_gain).astype(np.float32)
        self._n_out = stop
        keep_from = max(0, stop - margin)
        self._buffer = self._buffer[:, keep_from - self._buffer_start :]
        self._buffer_start = keep_from
        return out
