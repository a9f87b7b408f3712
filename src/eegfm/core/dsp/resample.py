"""Resampling any EEG rate to another (the pipeline's: the data contract's ``contract.schema.SFREQ``),
one-shot or chunk by chunk.

Polyphase FIR with ``scipy.signal.resample_poly``'s default filter (Kaiser, beta 5, ``20 *
max(up, down) + 1`` taps: flat to 110 Hz, -6 dB at 128 Hz), so chunks need bounded look-ahead and
the end does not wrap onto the start. ``sfreq_out / sfreq`` becomes ``up / down``: exact for integer
rates, else the smallest denominator within ``max_ratio_error`` (Bonn's 173.61 Hz: 3682 / 2497),
and :meth:`ResamplePlan.window_start_s` maps output samples back to the input clock exactly. Each
channel's first sample is subtracted before filtering and added back (zero padding would ring on a
DC offset). The sum runs as small float32 matrix products (BLAS), equal to ``resample_poly`` to
float32 rounding (tested).
"""

from __future__ import annotations

import dataclasses
from fractions import Fraction
from functools import lru_cache

import numpy as np
from numpy.lib.stride_tricks import as_strided

from eegfm.core.dsp.filter_design import kaiser_lowpass
from eegfm.core.dsp.signal_checks import check_chunk, check_n_chans, check_sfreq, check_signal

# The output rate is always the caller's: core knows nothing of the data contract's rate.
# Under one output sample of drift per hour at 256 Hz (3600 s * 1e-6 = 3.6 ms < 1 / 256 s).
DEFAULT_MAX_RATIO_ERROR = 1e-6
# scipy.signal.resample_poly's default window, a Kaiser window's beta.
_KAISER_BETA = 5.0
_MAX_DENOMINATOR = 2**24


@dataclasses.dataclass(frozen=True)
class ResamplePlan:
    """How one input rate maps onto the output rate: ``up / down`` (coprime) is applied, and
    ``ratio_error`` is ``(up / down) / (sfreq_out / sfreq_in) - 1``, zero for exact ratios."""

    sfreq_in: float
    sfreq_out: float
    up: int
    down: int
    ratio_error: float

    @property
    def is_identity(self) -> bool:
        return self.up == 1 and self.down == 1

    @property
    def half_len(self) -> int:
        """Half length of the anti-aliasing FIR in upsampled samples (scipy's rule)."""
        return 10 * max(self.up, self.down)

    def output_length(self, n_times: int) -> int:
        """Number of output samples for ``n_times`` input samples: ``ceil(n_times * up / down)``."""
        return -(-int(n_times) * self.up // self.down)

    def input_span(self, start: int, stop: int) -> tuple[int, int]:
        """The input samples ``[first, last + 1)`` that outputs ``start .. stop - 1`` read: every one
        under the anti-aliasing filter's support (a zero-padded one may lie before 0 or past the
        end). An input sample outside it has no effect on those outputs, whatever its value."""
        if self.is_identity:
            return start, stop
        # y[m] reads x[n] for 0 <= m * down + half - n * up <= 2 * half.
        first = -(-(start * self.down - self.half_len) // self.up)
        last = ((stop - 1) * self.down + self.half_len) // self.up
        return first, last + 1

    def window_start_s(self, index: int) -> float:
        """Time in seconds, on the input recording's clock, of output sample ``index`` (input
        position ``index * down / up``: the filter is centred); exact for exact ratios."""
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"index: expected an integer sample index; got {index!r}")
        if index < 0:
            raise ValueError(f"index: expected an index >= 0; got {index}")
        index = int(index)
        if self.ratio_error == 0.0:
            return index / self.sfreq_out
        return float(Fraction(index * self.down, self.up) / Fraction(self.sfreq_in))


@lru_cache(maxsize=64)
def plan_resample(sfreq_in: float, sfreq_out: float, max_ratio_error: float = DEFAULT_MAX_RATIO_ERROR) -> ResamplePlan:
    """The smallest ``up / down`` within ``max_ratio_error`` of ``sfreq_out / sfreq_in`` (denominator
    limits tried in powers of two: the shortest filter that meets the bound)."""
    sfreq_in = check_sfreq(sfreq_in, "sfreq_in")
    sfreq_out = check_sfreq(sfreq_out, "sfreq_out")
    if not 0.0 <= max_ratio_error < 0.01:
        raise ValueError(f"max_ratio_error: expected a value in [0, 0.01); got {max_ratio_error!r}")
    target = Fraction(sfreq_out) / Fraction(sfreq_in)
    limit = 1
    while True:
        ratio = target.limit_denominator(limit)
        # limit_denominator can return 0 for extreme ratios; a rate needs a positive numerator.
        if ratio.numerator > 0:
            error = float(ratio / target) - 1.0
            if abs(error) <= max_ratio_error:
                break
        if limit >= _MAX_DENOMINATOR:
            raise ValueError(
                f"sfreq_in: no ratio up/down with down <= {_MAX_DENOMINATOR} approximates "
                f"{sfreq_out}/{sfreq_in} within max_ratio_error={max_ratio_error}"
            )
        limit *= 2
    return ResamplePlan(sfreq_in, sfreq_out, ratio.numerator, ratio.denominator, error)


@lru_cache(maxsize=16)
def _fir_taps(up: int, down: int) -> np.ndarray:
    """scipy's resample_poly anti-aliasing filter for up/down, float32, before the gain of ``up``."""
    max_rate = max(up, down)
    taps = kaiser_lowpass(2 * 10 * max_rate + 1, 1.0 / max_rate, _KAISER_BETA).astype(np.float32)
    taps.setflags(write=False)
    return taps


def resample(
    data: np.ndarray, sfreq: float, sfreq_out: float, *, max_ratio_error: float = DEFAULT_MAX_RATIO_ERROR
) -> np.ndarray:
    """Resample ``data`` (n_chans, n_times) from ``sfreq`` to ``sfreq_out`` Hz: float32,
    ``plan.output_length(n_times)`` samples per channel."""
    data = np.ascontiguousarray(check_signal(data), dtype=np.float32)
    resampler = Resampler(sfreq, max(1, data.shape[0]), sfreq_out, max_ratio_error=max_ratio_error)
    if resampler.plan.is_identity or data.shape[1] == 0 or data.shape[0] == 0:
        return data.copy()
    return resampler.finish(data)


# Outputs per tap matrix: large enough for BLAS to pay off, small enough to stay mostly non-zero.
_GROUP = 16


@dataclasses.dataclass(frozen=True)
class _PolyphasePlan:
    """Tap matrices for outputs ``m = m0 + q * block + r`` whose filter index is
    ``rem + r * down - j * up`` for input ``first_input(m0) + q * step + j``."""

    block: int  # outputs per block (K * up)
    step: int  # inputs per block (K * down)
    groups: tuple[tuple[int, int, int, np.ndarray], ...]  # (r0, n_outputs, j_lo, matrix (span, n))


@lru_cache(maxsize=256)
def _polyphase_plan(up: int, down: int, rem: int) -> _PolyphasePlan:
    taps = _fir_taps(up, down) * np.float32(up)
    n_taps = len(taps)
    # Widest input span of _GROUP consecutive outputs; the block's input step must be at least
    # that wide so every strided row of the input view stays inside one BLAS leading dimension.
    span_bound = ((_GROUP - 1) * down + n_taps - 1) // up + 2
    k = -(-span_bound // down)
    block = k * up
    groups = []
    for r0 in range(0, block, _GROUP):
        base = rem + np.arange(r0, min(block, r0 + _GROUP), dtype=np.int64) * down
        j_min = -((n_taps - 1 - base) // up)  # ceil((base - n_taps + 1) / up)
        j_lo, j_hi = int(j_min.min()), int((base // up).max())
        index = base[None, :] - (j_lo + np.arange(j_hi - j_lo + 1, dtype=np.int64))[:, None] * up
        valid = (index >= 0) & (index < n_taps)
        matrix = np.where(valid, taps[np.clip(index, 0, n_taps - 1)], np.float32(0.0))
        matrix = np.ascontiguousarray(matrix, dtype=np.float32)
        matrix.setflags(write=False)
        groups.append((r0, len(base), j_lo, matrix))
    return _PolyphasePlan(block, k * down, tuple(groups))


def _polyphase(
    segment: np.ndarray, seg_start: int, plan: ResamplePlan, start: int, stop: int, offset: np.ndarray
) -> np.ndarray:
    """Outputs ``start .. stop`` of ``y[m] = sum_n x[n] h[m * down + half - n * up]`` (taps scaled by
    ``up``) with ``x = segment - offset`` from global index ``seg_start`` on and zero elsewhere."""
    up, down = plan.up, plan.down
    first, rem = divmod(start * down + plan.half_len, up)
    poly = _polyphase_plan(up, down, rem)
    n_chans, n_seg = segment.shape
    n_out = stop - start
    n_blocks = -(-n_out // poly.block)
    j_lo = min(g[2] for g in poly.groups)
    j_hi = max(g[2] + g[3].shape[0] for g in poly.groups)
    # The padded input starts at global index first + j_lo; zeros stand for inputs outside the segment.
    origin = first + j_lo
    length = (n_blocks - 1) * poly.step + (j_hi - j_lo)
    padded = np.zeros((n_chans, length + 1), dtype=np.float32)
    lo, hi = max(seg_start, origin), min(seg_start + n_seg, origin + length)
    if hi > lo:
        np.subtract(segment[:, lo - seg_start : hi - seg_start], offset, out=padded[:, lo - origin : hi - origin])
    out = np.empty((n_chans, n_blocks, poly.block), dtype=np.float32)
    s_chan, s_time = padded.strides
    for r0, n, j0, matrix in poly.groups:
        view = as_strided(
            padded[:, j0 - j_lo :],
            shape=(n_chans, n_blocks, matrix.shape[0]),
            strides=(s_chan, poly.step * s_time, s_time),
            writeable=False,
        )
        np.matmul(view, matrix, out=out[:, :, r0 : r0 + n])
    return out.reshape(n_chans, n_blocks * poly.block)[:, :n_out]


class Resampler:
    """Streaming resampler: push chunks, get output; equals :func:`resample` of the concatenation.

    :meth:`push` returns every output whose inputs have all arrived, :meth:`flush` the tail
    (zero-padded past the end, as scipy does). Only the about ``half_len / up`` inputs still needed
    are buffered."""

    def __init__(
        self,
        sfreq: float,
        n_chans: int,
        sfreq_out: float,
        *,
        max_ratio_error: float = DEFAULT_MAX_RATIO_ERROR,
    ) -> None:
        self.plan = plan_resample(sfreq, sfreq_out, max_ratio_error)
        self.n_chans = check_n_chans(n_chans)
        self._buffer = np.zeros((self.n_chans, 0), dtype=np.float32)
        self._buffer_start = self._n_in = self._n_out = 0  # global indices: buffer start, inputs in, outputs out
        self._offset: np.ndarray | None = None
        self._closed = False

    def push(self, chunk: np.ndarray) -> np.ndarray:
        """Add ``chunk`` (n_chans, n_times); return the outputs now complete (possibly none)."""
        if self._closed:
            raise RuntimeError("Resampler: push() after flush(); create a new Resampler")
        chunk = self._append(chunk)
        if chunk is not None:  # identity plan
            return chunk
        if self._offset is None:
            return np.zeros((self.n_chans, 0), dtype=np.float32)
        up, down, half = self.plan.up, self.plan.down, self.plan.half_len
        # Outputs m with (m * down + half) // up < n_in have all their inputs.
        stop = max(self._n_out, (self._n_in * up - 1 - half) // down + 1)
        return self._emit(stop)

    def flush(self) -> np.ndarray:
        """Return the remaining outputs (inputs past the end count as zero) and close the stream."""
        if self._closed:
            raise RuntimeError("Resampler: flush() called twice")
        self._closed = True
        if self.plan.is_identity or self._offset is None:
            return np.zeros((self.n_chans, 0), dtype=np.float32)
        return self._emit(self.plan.output_length(self._n_in))

    def finish(self, chunk: np.ndarray) -> np.ndarray:
        """``push(chunk)`` then ``flush()`` in one pass: every remaining output, stream closed."""
        if self._closed:
            raise RuntimeError("Resampler: finish() after flush(); create a new Resampler")
        passed = self._append(chunk)
        if passed is None:
            return self.flush()
        self._closed = True
        return passed

    def _append(self, chunk: np.ndarray) -> np.ndarray | None:
        """Buffer ``chunk``; for the identity plan return it (copied) instead."""
        chunk = np.ascontiguousarray(check_chunk(chunk, self.n_chans), dtype=np.float32)
        if chunk.shape[1] == 0:
            return np.zeros((self.n_chans, 0), dtype=np.float32) if self.plan.is_identity else None
        if self._offset is None:
            self._offset = chunk[:, :1].copy()
        self._n_in += chunk.shape[1]
        if self.plan.is_identity:
            self._n_out += chunk.shape[1]
            return chunk.copy()
        # The offset is subtracted when _polyphase copies the inputs it needs, not here.
        self._buffer = chunk.copy() if self._buffer.shape[1] == 0 else np.concatenate([self._buffer, chunk], axis=1)
        return None

    def _emit(self, stop: int) -> np.ndarray:
        start = self._n_out
        if stop <= start:
            return np.zeros((self.n_chans, 0), dtype=np.float32)
        up, down, half = self.plan.up, self.plan.down, self.plan.half_len
        # First input that output `start` touches; everything before it is no longer needed.
        seg_start = max(self._buffer_start, -(-(start * down - half) // up))
        segment = self._buffer[:, seg_start - self._buffer_start :]
        out = _polyphase(segment, seg_start, self.plan, start, stop, self._offset)
        out += self._offset
        self._n_out = stop
        # Keep only inputs that the next output still needs.
        keep_from = max(self._buffer_start, -(-(stop * down - half) // up))
        self._buffer = self._buffer[:, keep_from - self._buffer_start :]
        self._buffer_start = keep_from
        return out
