"""The few filter designs the pipeline needs, in numpy: Butterworth and notch sections, their
frequency and impulse responses, the Kaiser-windowed low-pass of polyphase resampling, and the
periodic Hann window of Welch's method.

Not ``scipy.signal``: importing it costs every worker 0.6-0.7 s. The tests pin each design to
``scipy.signal`` to float64 rounding. Sections (``sos``) use scipy's layout, one row
``[b0, b1, b2, a0, a1, a2]`` per section with ``a0 = 1``.
"""

from __future__ import annotations

import math

import numpy as np

BTYPES = ("lowpass", "highpass")


def butter_sos(order: int, cutoff: float, btype: str, fs: float) -> np.ndarray:
    """``scipy.signal.butter(order, cutoff, btype, fs=fs, output="sos")``: the analog prototype's
    poles, pre-warped and mapped by the bilinear transform; one section per conjugate pair (plus a
    first-order one for an odd order), the overall gain in the first section."""
    if isinstance(order, bool) or not isinstance(order, int) or order < 1:
        raise ValueError(f"order: expected a positive integer; got {order!r}")
    if btype not in BTYPES:
        raise ValueError(f"btype: expected one of {', '.join(BTYPES)}; got {btype!r}")
    if not (fs > 0 and 0 < cutoff < fs / 2):
        raise ValueError(f"cutoff: expected a frequency in (0, {fs / 2:g}) Hz for fs={fs:g}; got {cutoff!r}")
    # Analog prototype poles on the unit circle's left half, scaled to the pre-warped cutoff (the
    # bilinear transform with fs = 2 maps analog frequency 4 tan(w/2) to digital frequency w).
    prototype = -np.exp(1j * np.pi * np.arange(-order + 1, order, 2) / (2 * order))
    warped = 4.0 * math.tan(math.pi * cutoff / fs)
    if btype == "lowpass":
        analog, gain, zero = prototype * warped, warped**order, -1.0
    else:
        analog, gain, zero = warped / prototype, float(np.real(1.0 / np.prod(-prototype))), 1.0
    poles = (4.0 + analog) / (4.0 - analog)
    # The bilinear transform's gain: the analog zeros (none, or all at s = 0 for the high-pass)
    # over the poles, each as (fs2 - s) with fs2 = 4.
    gain *= float(np.real((4.0**order if btype == "highpass" else 1.0) / np.prod(4.0 - analog)))
    # One section per conjugate pair, the pairs closest to the unit circle last (scipy's order;
    # the cascade's response does not depend on it), after the real pole of an odd order.
    upper = sorted((p for p in poles if p.imag > 1e-300), key=abs)
    sections = [[1.0, -zero, 0.0, 1.0, -p.real, 0.0] for p in poles if abs(p.imag) <= 1e-300]
    sections += [[1.0, -2.0 * zero, 1.0, 1.0, -2.0 * p.real, abs(p) ** 2] for p in upper]
    sos = np.array(sections, dtype=np.float64)
    sos[0, :3] *= gain
    return sos


def notch_sos(freq: float, quality: float, fs: float) -> np.ndarray:
    """Second-order IIR notch at ``freq`` Hz with quality factor ``quality`` (centre frequency over
    the -3 dB bandwidth), one section: ``scipy.signal.iirnotch`` as sections."""
    if not (fs > 0 and 0 < freq < fs / 2):
        raise ValueError(f"freq: expected a frequency in (0, {fs / 2:g}) Hz for fs={fs:g}; got {freq!r}")
    if not quality > 0:
        raise ValueError(f"quality: expected a positive number; got {quality!r}")
    w0 = 2.0 * math.pi * freq / fs
    # -3 dB band edges: tan(bandwidth / 2) sets the pole radius.
    gain = 1.0 / (1.0 + math.tan(w0 / quality / 2.0))
    cos = math.cos(w0)
    return np.array([[gain, -2.0 * gain * cos, gain, 1.0, -2.0 * gain * cos, 2.0 * gain - 1.0]])


def sos_response(sos: np.ndarray, freqs: np.ndarray, fs: float) -> np.ndarray:
    """Complex frequency response of the cascade at ``freqs`` Hz (``scipy.signal.sosfreqz``); Horner's
    rule in ``z^-1`` keeps double zeros at z = 1 accurate at very low frequencies."""
    sos = np.atleast_2d(np.asarray(sos, dtype=np.float64))
    zm1 = np.exp(-2j * np.pi * np.asarray(freqs, dtype=np.float64) / fs)
    h = np.ones_like(zm1)
    for b0, b1, b2, a0, a1, a2 in sos:
        h *= (b0 + zm1 * (b1 + zm1 * b2)) / (a0 + zm1 * (a1 + zm1 * a2))
    return h


def sos_impulse_response(sos: np.ndarray, n: int) -> np.ndarray:
    """The cascade's first ``n`` impulse response samples (``scipy.signal.sosfilt`` of an impulse).

    ``h[k] = C A^(k-1) B`` of the state-space form, one matrix product per block of ``_BLOCK``
    samples. Unlike an inverse FFT its error shrinks with the response, so a tail's mass is
    accurate down to 1e-7 of the total."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n: expected a positive number of samples; got {n!r}")
    a, b, c, d = _state_space(np.atleast_2d(np.asarray(sos, dtype=np.float64)))
    h = np.empty(int(n) + _BLOCK)
    h[0] = d
    columns = np.empty((b.size, _BLOCK))  # A^j B, j < _BLOCK
    column = b
    jump = np.eye(b.size)  # A^_BLOCK, by as many products as a recursion takes (squaring loses digits)
    for j in range(_BLOCK):
        columns[:, j] = column
        column = a @ column
        jump = a @ jump
    row = c
    for start in range(1, int(n), _BLOCK):
        h[start : start + _BLOCK] = row @ columns
        row = row @ jump
    return h[:n]


_BLOCK = 512


def _state_space(sos: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """(A, B, C, D) of the cascade, two states per section (transposed direct form II)."""
    a, b, c, d = np.zeros((0, 0)), np.zeros(0), np.zeros(0), 1.0
    for b0, b1, b2, _a0, a1, a2 in sos / sos[:, 3:4]:
        # One section: y = z1 + b0 u; z1' = -a1 z1 + z2 + (b1 - a1 b0) u; z2' = -a2 z1 + (b2 - a2 b0) u.
        a_s = np.array([[-a1, 1.0], [-a2, 0.0]])
        b_s = np.array([b1 - a1 * b0, b2 - a2 * b0])
        # Its input u is the cascade's output so far: c x + d (times the cascade's input).
        size = b.size
        grown = np.zeros((size + 2, size + 2))
        grown[:size, :size] = a
        grown[size:, :size] = np.outer(b_s, c)
        grown[size:, size:] = a_s
        a = grown
        b = np.concatenate([b, b_s * d])
        c = np.concatenate([b0 * c, [1.0, 0.0]])
        d = b0 * d
    return a, b, c, d


def kaiser_lowpass(numtaps: int, cutoff: float, beta: float) -> np.ndarray:
    """Linear-phase FIR low-pass: a Kaiser-windowed sinc with ``cutoff`` as a fraction of Nyquist,
    scaled to unit gain at 0 Hz (``scipy.signal.firwin(numtaps, cutoff, window=("kaiser", beta))``)."""
    if isinstance(numtaps, bool) or not isinstance(numtaps, int) or numtaps < 1:
        raise ValueError(f"numtaps: expected a positive integer; got {numtaps!r}")
    if not 0 < cutoff < 1:
        raise ValueError(f"cutoff: expected a fraction of Nyquist in (0, 1); got {cutoff!r}")
    m = np.arange(numtaps) - (numtaps - 1) / 2.0
    taps = cutoff * np.sinc(cutoff * m) * np.kaiser(numtaps, beta)
    return taps / taps.sum()


def hann_periodic(n: int) -> np.ndarray:
    """The periodic Hann window of ``n`` samples (``scipy.signal.get_window("hann", n)``)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n: expected a positive integer; got {n!r}")
    if n == 1:
        return np.ones(1)  # scipy's convention for a one-sample window
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)
