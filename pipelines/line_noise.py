"""Mains line noise: how far a 50 or 60 Hz line stands out of a spectrum, and which one a recording has."""

from __future__ import annotations

import math

import numpy as np

from eegfm.pipelines.features import welch_psd
from eegfm.pipelines.signal_checks import check_sfreq, check_signal

LINE_FREQUENCIES = (50, 60)


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
    data = check_signal(data)
    sfreq = check_sfreq(sfreq)
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
    data = check_signal(data)
    sfreq = check_sfreq(sfreq)
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
