"""The few filter designs the pipeline needs, in numpy: Butterworth and notch sections, their
frequency and impulse responses, the Kaiser-windowed low-pass of polyphase resampling, and the
periodic Hann window of Welch's method.

Why not ``scipy.signal``: importing it takes 0.6-0.7 s (it rewrites the docstrings of hundreds
of functions and imports ``scipy.stats``), paid by every process that runs the job: on the 64
eegmat recordings that was a sixth of a one-worker run. The designs are textbook formulas, and
the tests pin each one to ``scipy.signal`` to float64 rounding.

Second-order sections (``sos``) use scipy's layout: one row ``[b0, b1, b2, a0, a1, a2]`` per
section, ``a0 = 1``; a first-order section has ``b2 = a2 = 0``.
"""

from __future__ import annotations

import math

import numpy as np

BTYPES = ("lowpass", "highpass")


def butter_sos(order: int, cutoff: float, btype: str, fs: float) -> np.ndarray:
    """Digital Butterworth filter of ``order`` with its -3 dB point at ``cutoff`` Hz, as sections.

    The analog prototype's poles, frequency-warped to ``cutoff`` and mapped by the bilinear
    transform, as ``scipy.signal.butter(order, cutoff, btype, fs=fs, output="sos")`` designs it.
    Conjugate poles share a section with two of the zeros (all at z = -1 for a low-pass, z = 1 for
    a high-pass); an odd order adds one first-order section. The overall gain sits in the first
    section.
    """
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
        analog = prototype * warped
        gain = warped**order
        zero = -1.0
    else:
        analog = warped / prototype
        gain = float(np.real(1.0 / np.prod(-prototype)))
        zero = 1.0
    poles = (4.0 + analog) / (4.0 - analog)
    # The bilinear transform's gain: the analog zeros (none, or all at s = 0 for the high-pass)
    # over the poles, each as (fs2 - s) with fs2 = 4.
    gain *= float(np.real((4.0**order if btype == "highpass" else 1.0) / np.prod(4.0 - analog)))
    # One section per conjugate pair, the pairs closest to the unit circle last (scipy's order;
    # the cascade's response does not depend on it), after the real pole of an odd order.
    upper = sorted((p for p in poles if p.imag > 1e-300), key=abs)
    sections = []
    for p in (p.real for p in poles if abs(p.imag) <= 1e-300):
        sections.append([1.0, -zero, 0.0, 1.0, -p, 0.0])
    for p in upper:
        sections.append([1.0, -2.0 * zero, 1.0, 1.0, -2.0 * p.real, abs(p) ** 2])
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
    """Complex frequency response of the cascade at ``freqs`` Hz (``scipy.signal.sosfreqz``).

    Each section is evaluated as two quadratics in ``z^-1`` by Horner's rule, which keeps the
    relative accuracy of double zeros at z = 1 (a high-pass edge) at very low frequencies.
    """
    sos = np.atleast_2d(np.asarray(sos, dtype=np.float64))
    zm1 = np.exp(-2j * np.pi * np.asarray(freqs, dtype=np.float64) / fs)
    h = np.ones_like(zm1)
    for b0, b1, b2, a0, a1, a2 in sos:
        h *= (b0 + zm1 * (b1 + zm1 * b2)) / (a0 + zm1 * (a1 + zm1 * a2))
    return h


def sos_impulse_response(sos: np.ndarray, n: int) -> np.ndarray:
    """The cascade's first ``n`` impulse response samples (``scipy.signal.sosfilt`` of an impulse).

    Each section's response in closed form (a damped sinusoid for complex poles), the sections then
    convolved by FFT, truncating to ``n`` after each: a linear convolution of two ``n``-sample
    sequences fits an FFT of ``2 n``, so nothing wraps around.
    """
    sos = np.atleast_2d(np.asarray(sos, dtype=np.float64))
    if n < 1:
        raise ValueError(f"n: expected a positive number of samples; got {n!r}")
    size = 2 * n
    spectrum = None
    for section in sos:
        h = _section_impulse_response(section, n)
        if sos.shape[0] == 1:
            return h
        if spectrum is None:
            spectrum = np.fft.rfft(h, size)
        else:
            spectrum = np.fft.rfft(np.fft.irfft(spectrum * np.fft.rfft(h, size), size)[:n], size)
    return np.fft.irfft(spectrum, size)[:n]


def _section_impulse_response(section: np.ndarray, n: int) -> np.ndarray:
    b0, b1, b2, a0, a1, a2 = section / section[3]
    k = np.arange(n, dtype=np.float64)
    # g: the impulse response of 1 / (1 + a1 z^-1 + a2 z^-2); then h = b0 g + b1 g[-1] + b2 g[-2].
    if a2 == 0.0:
        g = np.power(-a1, k) if a1 != 0.0 else (k == 0).astype(np.float64)
    elif a2 < 0.0:  # real poles of opposite signs: far apart, the plain formula is accurate
        root = math.sqrt(a1 * a1 - 4.0 * a2)
        p, q = (-a1 + root) / 2.0, (-a1 - root) / 2.0
        g = (np.power(p, k + 1.0) - np.power(q, k + 1.0)) / (p - q)
    else:
        # Poles r e^{+-i theta} or r e^{+-phi} (same sign): g[k] = r^k sin((k + 1) theta) / sin(theta),
        # or the same with sinh. The sinh form is written with expm1 so that nearly equal real poles
        # (phi -> 0, a double pole at the limit) lose no precision.
        r = math.sqrt(a2)
        half = -a1 / 2.0
        disc = half * half - a2
        sign = -1.0 if half < 0 else 1.0
        if disc < 0.0:
            theta = math.atan2(math.sqrt(-disc), half)
            g = np.power(r, k) * np.sin((k + 1.0) * theta) / math.sin(theta)
        else:
            phi = math.asinh(math.sqrt(disc) / r)
            if phi == 0.0:
                g = (k + 1.0) * np.power(r, k)
            else:
                g = np.exp(k * math.log(r) - (k + 1.0) * phi) * np.expm1(2.0 * (k + 1.0) * phi) / (2.0 * math.sinh(phi))
            if sign < 0:
                g[1::2] *= -1.0
    h = b0 * g
    h[1:] += b1 * g[:-1]
    h[2:] += b2 * g[:-2]
    return h


def kaiser_lowpass(numtaps: int, cutoff: float, beta: float) -> np.ndarray:
    """Linear-phase FIR low-pass: a Kaiser-windowed sinc with ``cutoff`` as a fraction of Nyquist,
    scaled to unit gain at 0 Hz (``scipy.signal.firwin(numtaps, cutoff, window=("kaiser", beta))``).
    """
    if isinstance(numtaps, bool) or not isinstance(numtaps, int) or numtaps < 1:
        raise ValueError(f"numtaps: expected a positive integer; got {numtaps!r}")
    if not 0 < cutoff < 1:
        raise ValueError(f"cutoff: expected a fraction of Nyquist in (0, 1); got {cutoff!r}")
    m = np.arange(numtaps) - (numtaps - 1) / 2.0
    taps = cutoff * np.sinc(cutoff * m) * np.kaiser(numtaps, beta)
    return taps / taps.sum()


def hann_periodic(n: int) -> np.ndarray:
    """The periodic Hann window of ``n`` samples (``scipy.signal.get_window("hann", n)``), the one
    spectral estimators use: the symmetric window of ``n + 1`` samples without its last."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n: expected a positive integer; got {n!r}")
    if n == 1:
        return np.ones(1)  # scipy's convention for a one-sample window
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)
