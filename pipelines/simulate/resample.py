"""Streaming rational resampling (e.g. 250 Hz -> 200 Hz) with chunk-independent output.

Gives exactly what a one-shot zero-phase polyphase filter would, whatever the chunking: it keeps
enough input history for the FIR filter and emits only outputs whose full support has arrived.
The filter's delay is compensated, so output sample m sits exactly at time m / sfreq_out.
"""

from __future__ import annotations

from math import gcd

import numpy as np
from scipy import signal


class StreamingResampler:
    """Resample (n_chans, n) chunks from ``sfreq_in`` to ``sfreq_out`` (integer rates); outputs
    needing input not yet fed are held back, so callers feed a little past the end they need."""

    def __init__(self, sfreq_in: int, sfreq_out: int, n_chans: int, taps_per_phase: int = 10) -> None:
        if sfreq_in <= 0 or sfreq_out <= 0:
            raise ValueError(f"sampling rates must be > 0; got {sfreq_in} -> {sfreq_out}")
        g = gcd(int(sfreq_in), int(sfreq_out))
        self.up, self.down = int(sfreq_out) // g, int(sfreq_in) // g
        self.n_chans = n_chans
        self._consumed = 0  # input samples fed so far
        self._emitted = 0  # output samples returned so far
        if self.identity:
            return
        # Filter length 2*K*down + 1 so its centre falls on an output sample (delay K outputs).
        self._delay = int(np.ceil(taps_per_phase * max(self.up, self.down) / self.down))
        n_taps = 2 * self._delay * self.down + 1
        cutoff = 1.0 / max(self.up, self.down)
        self._taps = self.up * signal.firwin(n_taps, cutoff, window=("kaiser", 5.0))
        history = int(np.ceil(n_taps / self.up))
        self._history_len = int(np.ceil(history / self.down)) * self.down
        self._buffer = np.zeros((n_chans, self._history_len))

    @property
    def identity(self) -> bool:
        return self.up == self.down == 1

    def process(self, chunk: np.ndarray) -> np.ndarray:
        """Feed (n_chans, n) input; get every output sample that is now complete."""
        chunk = np.asarray(chunk, dtype=np.float64)
        if self.identity:
            self._emitted += chunk.shape[1]
            self._consumed += chunk.shape[1]
            return chunk
        if chunk.shape[1] % self.down:
            raise ValueError(
                f"chunk: length must be a multiple of {self.down} input samples "
                f"(whole seconds always are); got {chunk.shape[1]}"
            )
        segment = np.concatenate([self._buffer, chunk], axis=1)
        seg_start = self._consumed - self._history_len  # global index of segment[0]
        causal = signal.upfirdn(self._taps, segment, self.up, self.down, axis=1)
        # causal[:, j] is the global causal output g = seg_start*up/down + j; it is complete
        # when all inputs it needs lie inside the segment.
        g0 = seg_start * self.up // self.down
        g_complete_end = (seg_start + segment.shape[1]) * self.up // self.down
        # Centred output m = causal output g - delay.
        m_end = g_complete_end - self._delay
        m_start = self._emitted
        out = causal[:, m_start + self._delay - g0 : m_end + self._delay - g0]
        self._emitted = max(m_end, m_start)
        self._consumed += chunk.shape[1]
        self._buffer = segment[:, -self._history_len :]
        return out
