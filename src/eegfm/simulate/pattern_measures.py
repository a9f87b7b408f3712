"""What an electroencephalographer reads off a pattern, measured on the rendered signal (pure numpy).

Every function takes scalp potentials ``x`` (19, n) µV in canonical order at ``sfreq`` and the
times an annotator would mark (an episode's start and end); none reads the parameters the
simulator drew, so the numbers can be checked against them (tests) and against the literature
(:mod:`~simulate.pattern_realism`).

- **Seizure** (:func:`seizure_statistics`), at the focus: the rhythm's frequency in its first
  seconds and in its last (the peak of the spectrum's rise above the pre-ictal baseline), the
  seizure's end (the last second its 2-14 Hz amplitude is 3x the baseline's), the amplitude
  growth between the two, when the field reaches the focus's neighbours and the other hemisphere
  (:func:`field_spread`), and post-ictal delta (0.5-3.5 Hz power after the end over that before
  the onset).
- **Periodic discharges** (:func:`discharge_statistics`), at the field maximum: the discharges
  (peaks of the main phase), their rate and the change of period from one cycle to the next, and
  the average discharge: amplitude, main phase at its base, duration, hemisphere ratio.
- **Rhythmic delta** (:func:`rhythmic_delta_statistics`): frequency, typical peak-to-trough of a
  cycle, hemisphere ratio of the power at that frequency.
"""

from __future__ import annotations

import numpy as np

from eegfm.contract.channels import CANONICAL_CHANNELS, canonical_positions
from eegfm.core.dsp.bands import band_power

N_CHANS = len(CANONICAL_CHANNELS)
LEFT = np.array([c[-1] in "1357" for c in CANONICAL_CHANNELS])
RIGHT = np.array([c[-1] in "2468" for c in CANONICAL_CHANNELS])
RHYTHM_BAND = (2.0, 14.0)  # a seizure's rhythm from onset (<= 9 Hz) to end; LVFA lies above it
DELTA_BAND = (0.5, 3.5)
NEIGHBOUR_MAX = 0.86  # unit-sphere distance of adjacent 10-20 electrodes (0.49-0.85)
REACH_FACTOR, REACH_FRACTION, REACH_HOLD_S = 2.5, 0.5, 2.0
END_FACTOR = 3.0


def distances() -> np.ndarray:
    pos = canonical_positions()
    return np.linalg.norm(pos[:, None, :] - pos[None, :, :], axis=-1)


def bandpass(x: np.ndarray, sfreq: float, low: float, high: float, edge: float = 0.5) -> np.ndarray:
    """Zero-phase band-pass along the last axis: an FFT mask with raised-cosine edges ``edge`` Hz wide."""
    freqs = np.fft.rfftfreq(x.shape[-1], 1.0 / sfreq)
    rise = np.clip((freqs - (low - edge / 2)) / edge, 0, 1)
    fall = np.clip(((high + edge / 2) - freqs) / edge, 0, 1)
    mask = (0.5 - 0.5 * np.cos(np.pi * rise)) * (0.5 - 0.5 * np.cos(np.pi * fall))
    return np.fft.irfft(np.fft.rfft(x, axis=-1) * mask, n=x.shape[-1], axis=-1)


def moving_rms(x: np.ndarray, sfreq: float, window_s: float = 1.0) -> np.ndarray:
    """Centred moving RMS along the last axis (same length)."""
    width = max(1, int(round(window_s * sfreq)))
    kernel = np.ones(width) / width
    power = np.apply_along_axis(lambda v: np.convolve(v, kernel, mode="same"), -1, x**2)
    return np.sqrt(power)


def psd(v: np.ndarray, sfreq: float, nfft: int = 8192) -> tuple[np.ndarray, np.ndarray]:
    """Hann-windowed periodogram density (µV²/Hz), zero-padded to ``nfft`` (fine peak location)."""
    nfft = max(nfft, len(v))
    window = np.hanning(len(v))
    spectrum = np.fft.rfft((v - v.mean()) * window, n=nfft)
    return np.fft.rfftfreq(nfft, 1.0 / sfreq), np.abs(spectrum) ** 2 / (sfreq * np.sum(window**2))


def peak_frequency(v: np.ndarray, sfreq: float, low: float, high: float, baseline: np.ndarray | None = None) -> float:
    """Frequency (parabolic interpolation) of the largest spectral peak of ``v`` in [low, high] Hz,
    of its rise above ``baseline``'s spectrum when given (a new rhythm, not the ongoing alpha)."""
    nfft = max(8192, len(v), 0 if baseline is None else len(baseline))
    freqs, power = psd(v, sfreq, nfft)
    if baseline is not None:
        power = power - psd(baseline, sfreq, nfft)[1]
    band = np.flatnonzero((freqs >= low) & (freqs <= high))
    k = band[np.argmax(power[band])]
    if 0 < k < len(power) - 1:
        a, b, c = power[k - 1 : k + 2]
        denom = a - 2 * b + c
        if denom < 0:
            return float(freqs[k] + 0.5 * (a - c) / denom * (freqs[1] - freqs[0]))
    return float(freqs[k])


def _span(x: np.ndarray, sfreq: float, start_s: float, end_s: float) -> np.ndarray:
    lo, hi = max(0, int(round(start_s * sfreq))), min(x.shape[-1], int(round(end_s * sfreq)))
    return x[..., lo:hi]


def first_held(condition: np.ndarray, sfreq: float) -> np.ndarray:
    """Per row of a boolean (rows, n): seconds until it first holds for :data:`REACH_HOLD_S` (inf if never)."""
    hold = int(REACH_HOLD_S * sfreq)
    out = np.full(len(condition), np.inf)
    for c, row in enumerate(condition):
        run = np.convolve(row.astype(float), np.ones(hold), mode="valid")  # run[i]: samples i..i+hold-1
        full = np.flatnonzero(run >= hold)
        if len(full):
            out[c] = full[0] / sfreq
    return out


def seizure_statistics(x: np.ndarray, sfreq: float, onset_s: float, search_end_s: float, focus: int) -> dict:
    """A seizure annotated at ``onset_s`` (searched for its end up to ``search_end_s``) with its
    onset at channel ``focus``; see the module docstring. Times in seconds, frequencies in Hz."""
    rhythm = bandpass(x, sfreq, *RHYTHM_BAND)
    envelope = moving_rms(rhythm, sfreq)
    base = _span(envelope, sfreq, onset_s - 15.0, onset_s - 1.0)
    level = np.median(base, axis=1)
    after = int(round(onset_s * sfreq))
    above = np.flatnonzero(_span(envelope[focus], sfreq, onset_s, search_end_s) > END_FACTOR * level[focus])
    end_s = onset_s + (above[-1] if len(above) else 0) / sfreq
    trace, before = x[focus], _span(x[focus], sfreq, onset_s - 15.0, onset_s - 1.0)
    early, late = (onset_s + 4.0, onset_s + 8.0), (end_s - 8.0, end_s - 1.0)
    onset_hz = peak_frequency(_span(trace, sfreq, *early), sfreq, *RHYTHM_BAND, baseline=before)
    end_hz = peak_frequency(_span(trace, sfreq, *late), sfreq, *RHYTHM_BAND, baseline=before)
    growth = np.mean(_span(envelope[focus], sfreq, *late)) / np.mean(_span(envelope[focus], sfreq, *early))
    spread = field_spread(envelope, level, sfreq, after, focus)
    post = _span(x[focus], sfreq, end_s + 2.0, end_s + 10.0)
    delta_ratio = _band_power(post, sfreq, *DELTA_BAND) / _band_power(before, sfreq, *DELTA_BAND)
    return {
        "duration_s": end_s - onset_s,
        "onset_freq_hz": onset_hz,
        "end_freq_hz": end_hz,
        "freq_ratio": end_hz / onset_hz,
        "freq_drop_hz": onset_hz - end_hz,
        "amplitude_growth": float(growth),
        "amplitude_uv": float(np.ptp(np.percentile(_span(rhythm[focus], sfreq, *late), [2.5, 97.5]))),
        "focus_reached_s": spread["focus_s"],
        "spread_neighbour_s": spread["neighbour_s"] - spread["focus_s"],
        "spread_distant_s": spread["distant_s"] - spread["focus_s"],
        "electrodes_recruited": spread["recruited"],
        "postictal_delta_ratio": float(delta_ratio),
        "postictal_freq_hz": peak_frequency(post, sfreq, 0.3, 8.0, baseline=before) if len(post) > sfreq else np.nan,
    }


def field_spread(envelope: np.ndarray, level: np.ndarray, sfreq: float, start: int, focus: int) -> dict:
    """How far a seizure's field extends over time: an electrode is reached once its rhythm carries
    :data:`REACH_FRACTION` of the focus's amplitude for :data:`REACH_HOLD_S` while the focus is
    active (its amplitude :data:`REACH_FACTOR` x its baseline): the field's extent, not the far
    field that volume conduction carries everywhere at a smaller amplitude. Seconds from sample
    ``start`` until the focus is active (``focus_s``), until half the adjacent electrodes (<=
    :data:`NEIGHBOUR_MAX` away) are reached (``neighbour_s``), and half of the other hemisphere's
    (``distant_s``; inf if fewer than half ever are); how many electrodes besides the focus are
    ever reached (``recruited``)."""
    active = envelope[focus, start:] > REACH_FACTOR * level[focus]
    share = envelope[:, start:] / np.maximum(envelope[focus, start:], 1e-9)
    reached = first_held((share >= REACH_FRACTION) & active[None, :], sfreq)
    dist = distances()[focus]

    def half(group: np.ndarray) -> float:  # when half the group is reached
        return float(np.sort(reached[group])[(group.sum() - 1) // 2])

    return {
        "focus_s": float(first_held(active[None, :], sfreq)[0]),
        "neighbour_s": half((dist > 0) & (dist <= NEIGHBOUR_MAX)),
        "distant_s": half(RIGHT if LEFT[focus] else LEFT),
        "recruited": int(np.isfinite(reached[dist > 0]).sum()),
    }


def _band_power(v: np.ndarray, sfreq: float, low: float, high: float) -> float:
    """Power of ``v`` in the closed band ``[low, high]`` (``high``'s own bin counts)."""
    freqs, power = psd(v, sfreq)
    return float(band_power(freqs, power, low, np.nextafter(high, np.inf)))


def field_maximum(x: np.ndarray, sfreq: float, low: float, high: float) -> int:
    """The channel where the pattern's band carries the most power."""
    return int(np.argmax(np.mean(bandpass(x, sfreq, low, high) ** 2, axis=1)))


def hemisphere_ratio(per_channel: np.ndarray) -> float:
    """Mean of ``per_channel`` (an amplitude) over the larger hemisphere over the smaller's (>= 1)."""
    left, right = float(np.mean(per_channel[LEFT])), float(np.mean(per_channel[RIGHT]))
    return max(left, right) / min(left, right)


def detect_discharges(v: np.ndarray, sfreq: float) -> tuple[np.ndarray, float]:
    """Sample indices of the discharges in ``v`` (1-30 Hz at the field maximum) and the polarity of
    their main phase: the period from the envelope's autocorrelation, then the largest peaks of
    the main phase at least 0.6 periods apart that reach half the 99th percentile."""
    polarity = 1.0 if np.percentile(v, 99.5) > -np.percentile(v, 0.5) else -1.0
    s = polarity * v
    envelope = moving_rms(s, sfreq, 0.1)
    e = envelope - envelope.mean()
    acf = np.fft.irfft(np.abs(np.fft.rfft(e, n=2 * len(e))) ** 2)[: len(e)]
    lags = np.arange(int(0.3 * sfreq), int(2.5 * sfreq))
    period = lags[np.argmax(acf[lags])]
    height = 0.5 * np.percentile(s, 99)
    candidates = np.flatnonzero((s[1:-1] > s[:-2]) & (s[1:-1] >= s[2:]) & (s[1:-1] > height)) + 1
    kept: list[int] = []
    taken = np.zeros(len(s), dtype=bool)
    for k in candidates[np.argsort(-s[candidates])]:  # greedy: largest first
        if not taken[k]:
            kept.append(int(k))
            taken[max(0, k - int(0.6 * period)) : k + int(0.6 * period)] = True
    return np.sort(np.array(kept, dtype=int)), polarity


def discharge_statistics(x: np.ndarray, sfreq: float, start_s: float, end_s: float) -> dict:
    """Periodic discharges between ``start_s`` and ``end_s`` (seconds); see the module docstring."""
    x = _span(x, sfreq, start_s, end_s)
    wide = bandpass(x, sfreq, 0.5, 30.0)
    channel = field_maximum(x, sfreq, 1.0, 30.0)
    peaks, polarity = detect_discharges(bandpass(x[channel], sfreq, 1.0, 30.0), sfreq)
    intervals = np.diff(peaks) / sfreq
    period = float(np.median(intervals))
    # The average discharge over one period around each main phase (all channels).
    before, after = int(0.3 * period * sfreq), int(0.7 * period * sfreq)
    usable = peaks[(peaks >= before) & (peaks + after <= x.shape[1])]
    template = np.mean([wide[:, k - before : k + after] for k in usable], axis=0)
    template -= np.median(template, axis=1, keepdims=True)
    main = polarity * template[channel]
    near = int(0.02 * sfreq)  # the band-passed peak lies within 20 ms of the wide one
    peak = before - near + int(np.argmax(main[before - near : before + near + 1]))
    # The main phase at its base: where it falls below 10 % of its peak on either side.
    low = np.flatnonzero(main[:peak] < 0.1 * main[peak])
    left = low[-1] + 1 if len(low) else 0
    low = np.flatnonzero(main[peak:] < 0.1 * main[peak])
    right = peak + low[0] if len(low) else len(main)
    strong = np.flatnonzero(np.abs(template[channel]) > 0.1 * np.abs(template[channel]).max())
    p2p = np.ptp(template, axis=1)
    return {
        "rate_hz": 1.0 / period,
        "period_variation": float(np.median(np.abs(np.diff(intervals)) / intervals[:-1])),
        "amplitude_uv": float(p2p[channel]),
        "main_phase_ms": 1000.0 * (right - left) / sfreq,
        "discharge_duration_ms": 1000.0 * (strong[-1] - strong[0] + 1) / sfreq,
        "lateralization": hemisphere_ratio(p2p),
        "field_maximum": CANONICAL_CHANNELS[channel],
        "n_discharges": int(len(peaks)),
    }


def rhythmic_delta_statistics(x: np.ndarray, sfreq: float, start_s: float, end_s: float) -> dict:
    """Rhythmic delta between ``start_s`` and ``end_s`` (the 10 s before ``start_s`` as baseline)."""
    baseline = _span(x, sfreq, start_s - 10.0, start_s - 0.5)
    x = _span(x, sfreq, start_s, end_s)
    channel = field_maximum(x, sfreq, 0.5, 4.5)
    freq = peak_frequency(x[channel], sfreq, 0.3, 4.5, baseline=baseline[channel])
    delta = bandpass(x[channel], sfreq, 0.3, 8.0)  # the wave and its sharpening harmonic
    cycle = int(round(sfreq / freq))
    cycles = delta[: len(delta) // cycle * cycle].reshape(-1, cycle)
    narrow = bandpass(x, sfreq, max(0.2, freq - 0.3), freq + 0.3)
    return {
        "freq_hz": freq,
        "amplitude_uv": float(np.median(np.ptp(cycles, axis=1))),
        "lateralization": hemisphere_ratio(np.sqrt(np.mean(narrow**2, axis=1))),
        "field_maximum": CANONICAL_CHANNELS[channel],
    }
