"""``POST /v1/traces``'s work: a span of an uploaded recording's EEG in the double-banana bipolar
montage, as a clinical EEG reviewer reads it, drawn from the samples the model saw.

The signal is the pipeline's windows (``windows.pipeline_events``: 19 canonical channels at 256 Hz,
after its filters, float16 as stored); each derivation is its first electrode minus its second.
Where windows overlap (a stride under the window) a sample comes from the first window holding it;
where none does (a rejected window, the recording's tail) it is missing. Only the asked span is
kept while the windows stream past, at most ``MAX_SECONDS``, whatever the recording's length.

Samples travel as little-endian int16 in base64, one string per derivation: value in µV =
integer x ``scale_uv`` (0.1 µV unless the span's largest value needs more), ``MISSING`` where no
window holds the sample. The reply names derivations, electrodes and rules only by canonical names:
nothing of the file (its name, its channel labels) reaches it.
"""

from __future__ import annotations

import base64
import math
import re
from typing import Any

import numpy as np

from eegfm.contract.channels import canonical_name
from eegfm.contract.schema import CHANNELS, SFREQ
from eegfm.contract.spectrogram import CHAINS
from eegfm.serving.api.uploads import UploadError
from eegfm.serving.api.windows import pipeline_events, recording_item

# The 18 longitudinal derivations: the spectrogram's four chains (LL, RL, LP, RP), then the midline.
DOUBLE_BANANA: tuple[tuple[str, str], ...] = (
    *(pair for chain in CHAINS.values() for pair in chain),
    ("Fz", "Cz"),
    ("Cz", "Pz"),
)
DERIVATIONS = tuple(f"{a}-{b}" for a, b in DOUBLE_BANANA)
_PAIRS = np.array([[CHANNELS.index(a), CHANNELS.index(b)] for a, b in DOUBLE_BANANA])
MAX_SECONDS = 60.0  # six 10 s pages: about 0.75 MB of reply
# A month of continuous EEG, longer than any monitoring session: a later start is no recording's
# (and 1.7e308 s would overflow the sample index, a 500 before)
MAX_START_S = 31 * 86400.0
MISSING = -32768
_FINEST_SCALE_UV = 0.1
_RULE = re.compile(r"[a-z][a-z0-9_]*")  # a quality rule's name; anything else could quote the file
REPAIRED = "bad in this window only (flat, clipped or too large there): interpolated from its neighbours"


class TraceService:
    """Double-banana traces of uploaded recordings for a loaded Predictor (see the module docstring)."""

    def __init__(self, predictor, limits) -> None:
        self.predictor, self.limits = predictor, limits

    def traces_file(self, path, ext: str, start_s: float, seconds: float) -> dict[str, Any]:
        """The reply for ``seconds`` from ``start_s`` of the upload saved at ``path``; UploadError 422
        for a span past the recording's end, ValueError for an upload holding no recording."""
        item = recording_item(self.predictor, path, ext, self.limits.expanded_max_bytes)
        return traces_of(self.predictor, item, start_s, seconds)


def traces_of(predictor, item, start_s: float, seconds: float) -> dict[str, Any]:
    """``item``'s double-banana derivations from ``start_s`` for ``seconds`` (at most MAX_SECONDS),
    clipped at the recording's end; the windows and rejected windows over the span."""
    from eegfm.pipelines.job.process_io import Outcome, RejectedWindow, Window

    if not (math.isfinite(start_s) and 0 <= start_s <= MAX_START_S):
        raise UploadError(422, f"query parameter start_s: expected seconds from 0 to {MAX_START_S:g}; got {start_s:g}")
    if not (math.isfinite(seconds) and 0 < seconds <= MAX_SECONDS):
        raise UploadError(
            422, f"query parameter seconds: expected more than 0 and at most {MAX_SECONDS:g}; got {seconds}"
        )
    first, n = round(start_s * SFREQ), max(1, round(seconds * SFREQ))
    span = _Span(first, n, round(float(predictor.preprocess.window_seconds) * SFREQ))
    outcome = None
    for event in pipeline_events(predictor, item):
        if isinstance(event, Window):
            span.add_window(event)
        elif isinstance(event, RejectedWindow):
            span.add_rejected(event)
        elif isinstance(event, Outcome):
            outcome = event
    if outcome is None or outcome.status != "processed":
        raise UploadError(422, "the recording has no windows to draw (see /v1/predict for why)")
    duration = float(outcome.eeg_seconds)
    if first >= duration * SFREQ:
        raise UploadError(
            422,
            f"query parameter start_s: expected a time before the recording's end, from 0 to under "
            f"{duration:g} s (the recording's duration); got {start_s:g}",
        )
    return span.reply(duration, _reasons(outcome))


class _Span:
    """The asked span's derivations, filled as the windows stream past, and what covers it."""

    def __init__(self, first: int, n: int, window_n: int) -> None:
        self.first, self.n, self.window_n = first, n, window_n
        self.values = np.full((len(DOUBLE_BANANA), n), np.nan, dtype=np.float32)
        self.filled = np.zeros(n, dtype=bool)
        self.windows: list[tuple[int, int, tuple[str, ...], tuple[str, ...]]] = []  # start, stop, masked, repaired
        self.rejected: list[tuple[int, int, tuple[str, ...]]] = []

    def _overlap(self, start: int, length: int) -> tuple[int, int] | None:
        """The part of ``start .. start + length`` (samples) inside the span, in the span's samples."""
        lo, hi = max(start, self.first) - self.first, min(start + length, self.first + self.n) - self.first
        return (lo, hi) if lo < hi else None

    def add_window(self, window) -> None:
        record = window.record
        start = round(float(record.window_start_s) * SFREQ)
        inside = self._overlap(start, record.n_times)
        if inside is None:
            return
        lo, hi = inside
        eeg = record.eeg[:, lo + self.first - start : hi + self.first - start].astype(np.float32)
        derived = eeg[_PAIRS[:, 0]] - eeg[_PAIRS[:, 1]]
        new = ~self.filled[lo:hi]  # overlapping windows: the first one's samples stay
        self.values[:, lo:hi][:, new] = derived[:, new]
        self.filled[lo:hi] |= new
        masked = tuple(CHANNELS[c] for c in np.flatnonzero(np.asarray(record.channel_mask) == 0))
        self.windows.append((start, start + record.n_times, masked, tuple(window.repaired)))

    def add_rejected(self, rejected) -> None:
        start_s = float(rejected.window_start_s)
        if not math.isfinite(start_s):
            return
        start = round(start_s * SFREQ)
        if self._overlap(start, self.window_n) is not None:
            rules = tuple(rule for rule in rejected.rule_names() if _RULE.fullmatch(rule))
            self.rejected.append((start, start + self.window_n, rules))

    def reply(self, duration: float, reasons: dict[str, str]) -> dict[str, Any]:
        n = min(self.n, max(0, math.ceil(duration * SFREQ) - self.first))  # clipped at the recording's end
        encoded, scale = _encoded(self.values[:, :n])
        end = self.first + n
        return {
            "start_s": self.first / SFREQ,
            "seconds": n / SFREQ,
            "sfreq": SFREQ,
            "duration_s": round(duration, 3),
            "montage": "double banana (longitudinal bipolar)",
            "encoding": {"format": "int16 little-endian, base64", "scale_uv": scale, "missing": MISSING},
            "derivations": [
                {
                    "name": name,
                    "electrodes": list(pair),
                    "samples": samples,
                    "interpolated": self._interpolated(pair, reasons, end),
                }
                for name, pair, samples in zip(DERIVATIONS, DOUBLE_BANANA, encoded, strict=True)
            ],
            "windows": [_times(a, b) for a, b in sorted({(w[0], w[1]) for w in self.windows})],
            "rejected": [{**_times(a, b), "rules": list(rules)} for a, b, rules in sorted(self.rejected)],
        }

    def _interpolated(self, pair: tuple[str, str], reasons: dict[str, str], end: int) -> list[dict[str, Any]]:
        """The stretches where ``pair`` involves an interpolated electrode, and why; adjacent windows
        with the same electrodes and reasons make one stretch."""
        stretches: list[dict[str, Any]] = []
        for start, stop, masked, repaired in sorted(self.windows):
            electrodes = [e for e in pair if e in masked]
            if not electrodes or min(stop, end) <= max(start, self.first):
                continue
            why = "; ".join(f"{e}: {REPAIRED if e in repaired else reasons.get(e, 'interpolated')}" for e in electrodes)
            piece = {**_times(max(start, self.first), min(stop, end)), "electrodes": electrodes, "reason": why}
            last = stretches[-1] if stretches else None
            if last and last["reason"] == why and last["end_s"] >= piece["start_s"]:
                last["end_s"] = max(last["end_s"], piece["end_s"])
            else:
                stretches.append(piece)
        return stretches


def _times(start: int, stop: int) -> dict[str, float]:
    return {"start_s": round(start / SFREQ, 4), "end_s": round(stop / SFREQ, 4)}


def _reasons(outcome) -> dict[str, str]:
    """Why each electrode interpolated for the whole recording is, by its canonical name: the file's
    own labels (in ``constant``, ``marked_bad``) are only read, never answered."""
    constant = {canonical_name(label) for label in outcome.constant}
    marked = {canonical_name(label) for label in outcome.marked_bad}
    return {
        electrode: "flat from start to end (never recorded): interpolated from its neighbours"
        if electrode in constant
        else "marked bad by the file: interpolated from its neighbours"
        if electrode in marked
        else "not in the recording: interpolated from its neighbours"
        for electrode in outcome.interpolated
    }


def _encoded(values: np.ndarray) -> tuple[list[str], float]:
    """Each row as base64 little-endian int16 of value / scale (MISSING where NaN), and the scale:
    0.1 µV, coarser only where the span's largest magnitude would overflow int16."""
    finite = np.isfinite(values)
    largest = float(np.abs(values[finite]).max()) if finite.any() else 0.0
    scale = round(max(1, math.ceil(largest / 32767 / _FINEST_SCALE_UV)) * _FINEST_SCALE_UV, 1)
    # clipped to +-32767: MISSING (-32768) means only 'no window here'
    steps = np.clip(np.round(np.where(finite, values, 0.0) / scale), -32767, 32767)
    steps = np.where(finite, steps, MISSING).astype("<i2")
    return [base64.b64encode(row.tobytes()).decode("ascii") for row in steps], scale
