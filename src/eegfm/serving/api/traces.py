"""``POST /v1/traces``'s work: a span of an uploaded recording's EEG in a review montage
(``contract.montages``: double banana by default, or the model's own referential channels, the
average reference, transverse, a custom list), as a clinical EEG reviewer reads it, drawn from the
samples the model saw; with display filters (``display_filters``), the recording's auxiliary
channels, its own annotations and start time (``recording_facts``).

The signal is the pipeline's windows (``windows.pipeline_events``: 19 canonical channels at 256 Hz,
after its filters, float16 as stored); each derivation is a row of weights over them. Where windows
overlap (a stride under the window) a sample comes from the first window holding it; where none
does (a rejected window, the recording's tail) it is missing. Only the asked span (and, with
display filters, ``MARGIN_S`` either side) is kept while the windows stream past, at most
``MAX_SECONDS``, whatever the recording's length.

Samples travel as little-endian int16 in base64, one string per derivation: value in µV =
integer x ``scale_uv`` (0.1 µV unless the span's largest value needs more), ``MISSING`` where no
window holds the sample. The reply names derivations, electrodes and rules only by canonical names,
and auxiliary channels by kind: nothing of the file's labels or name reaches it.
"""

from __future__ import annotations

import base64
import dataclasses
import math
import re
from pathlib import Path
from typing import Any

import numpy as np

from eegfm.contract.channels import canonical_name
from eegfm.contract.montages import (
    CUSTOM,
    MODEL_MONTAGE,
    MONTAGE_KEYS,
    Derivation,
    MontageError,
    derivation_matrix,
    montage,
    parse_derivations,
)
from eegfm.contract.schema import CHANNELS, SFREQ
from eegfm.serving.api.display_filters import MARGIN_S, DisplayFilters, display_filters
from eegfm.serving.api.recording_facts import RecordingFacts, recording_facts, recording_id
from eegfm.serving.api.uploads import UploadError
from eegfm.serving.api.windows import pipeline_events, recording_item

MAX_SECONDS = 60.0  # six 10 s pages: about 0.75 MB of reply
# A month of continuous EEG, longer than any monitoring session: a later start is no recording's
# (and 1.7e308 s would overflow the sample index, a 500 before)
MAX_START_S = 31 * 86400.0
MISSING = -32768
_FINEST_SCALE_UV = 0.1
_RULE = re.compile(r"[a-z][a-z0-9_]*")  # a quality rule's name; anything else could quote the file
REPAIRED = "bad in this window only (flat, clipped or too large there): interpolated from its neighbours"


@dataclasses.dataclass(frozen=True)
class TraceView:
    """How the span is drawn: the montage (its key, title, derivations), the display filters, and
    whether the auxiliary channels come too."""

    key: str = "double_banana"
    title: str = montage("double_banana")[0]
    derivations: tuple[Derivation, ...] = montage("double_banana")[1]
    filters: DisplayFilters = DisplayFilters()
    extra: bool = False


def trace_view(preprocess, key: str, derivations: str, lff: float, hff: float, notch: str, extra: bool) -> TraceView:
    """The view a request's query asks for; UploadError 422 naming the query parameter (and the
    custom montage's entry, ``derivations[i]``) otherwise."""
    if key not in MONTAGE_KEYS:
        raise UploadError(422, f"query parameter montage: expected one of {', '.join(MONTAGE_KEYS)}; got {key[:40]!r}")
    if key != CUSTOM and derivations:
        raise UploadError(422, "query parameter derivations: expected only with montage=custom")
    try:
        title, chosen = ("custom", parse_derivations(derivations)) if key == CUSTOM else montage(key)
    except MontageError as err:
        raise UploadError(422, f"query parameter {err}") from None
    return TraceView(key, title, chosen, display_filters(preprocess, lff, hff, notch), extra)


class TraceService:
    """Traces of uploaded recordings for a loaded Predictor (see the module docstring)."""

    def __init__(self, predictor, limits) -> None:
        self.predictor, self.limits = predictor, limits

    def traces_file(
        self, path: Path, ext: str, start_s: float, seconds: float, view: TraceView = TraceView()
    ) -> dict[str, Any]:
        """The reply for ``seconds`` from ``start_s`` of the upload saved at ``path``; UploadError 422
        for a span past the recording's end, ValueError for an upload holding no recording."""
        uploaded = recording_id(path)  # the bytes sent: an upload is unpacked (and a .gz removed) next
        item = recording_item(self.predictor, path, ext, self.limits.expanded_max_bytes)
        reply = traces_of(self.predictor, item, start_s, seconds, view)
        first, n = round(reply["start_s"] * SFREQ), round(reply["seconds"] * SFREQ)
        with recording_facts(item.path, self.predictor.preprocess) as facts:
            line_freq = reply["filters"]["pipeline"]["notch_hz"]
            reply["extra"] = _extra(facts, first, n, view.filters, line_freq, view.extra) if facts else []
            reply["annotations"] = facts.annotations() if facts else []
            reply["recorded_at"] = facts.recorded_at() if facts else None
        reply["recording_id"] = uploaded
        return reply


def _extra(facts: RecordingFacts, first: int, n: int, filters: DisplayFilters, line_freq, wanted: bool) -> list:
    """The auxiliary channels' entries over the span (samples ``first .. first + n``), each with its
    own scale, filtered as the EEG is shown (with MARGIN_S of the file either side)."""
    if not wanted:
        return []
    margin = min(first, round(MARGIN_S * SFREQ))
    names, values = facts.extra(first - margin, n + margin + round(MARGIN_S * SFREQ))
    values = filters.apply_full(values, line_freq)[:, margin : margin + n] if len(values) else values
    out = []
    for (name, kind), row in zip(names, values, strict=True):
        [samples], scale = _encoded(row[None])
        out.append({"name": name, "kind": kind, "samples": samples, "scale_uv": scale})
    return out


def traces_of(predictor, item, start_s: float, seconds: float, view: TraceView = TraceView()) -> dict[str, Any]:
    """``item``'s derivations in ``view`` from ``start_s`` for ``seconds`` (at most MAX_SECONDS),
    clipped at the recording's end; the windows and rejected windows over the span."""
    from eegfm.pipelines.job.process_io import Outcome, RejectedWindow, Window

    if not (math.isfinite(start_s) and 0 <= start_s <= MAX_START_S):
        raise UploadError(422, f"query parameter start_s: expected seconds from 0 to {MAX_START_S:g}; got {start_s:g}")
    if not (math.isfinite(seconds) and 0 < seconds <= MAX_SECONDS):
        raise UploadError(
            422, f"query parameter seconds: expected more than 0 and at most {MAX_SECONDS:g}; got {seconds}"
        )
    first, n = round(start_s * SFREQ), max(1, round(seconds * SFREQ))
    margin = round(MARGIN_S * SFREQ) if view.filters.active else 0
    span = _Span(first, n, round(float(predictor.preprocess.window_seconds) * SFREQ), margin)
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
    return span.reply(duration, _reasons(outcome), view, outcome.line_freq)


class _Span:
    """The asked span's 19 channels (and ``margin`` samples either side, for the display filters),
    filled as the windows stream past, and what covers the span."""

    def __init__(self, first: int, n: int, window_n: int, margin: int = 0) -> None:
        self.first, self.n, self.window_n = first, n, window_n
        self.before = min(first, margin)  # the kept samples start this many before the span
        self.kept_first, kept_n = first - self.before, self.before + n + margin
        self.values = np.full((len(CHANNELS), kept_n), np.nan, dtype=np.float32)
        self.filled = np.zeros(kept_n, dtype=bool)
        self.windows: list[tuple[int, int, tuple[str, ...], tuple[str, ...]]] = []  # start, stop, masked, repaired
        self.rejected: list[tuple[int, int, tuple[str, ...]]] = []

    def _overlap(self, start: int, length: int, first: int, n: int) -> tuple[int, int] | None:
        """The part of ``start .. start + length`` (samples) inside ``first .. first + n``, relative to ``first``."""
        lo, hi = max(start, first) - first, min(start + length, first + n) - first
        return (lo, hi) if lo < hi else None

    def add_window(self, window) -> None:
        record = window.record
        start = round(float(record.window_start_s) * SFREQ)
        inside = self._overlap(start, record.n_times, self.kept_first, self.values.shape[1])
        if inside is None:
            return
        lo, hi = inside
        eeg = record.eeg[:, lo + self.kept_first - start : hi + self.kept_first - start].astype(np.float32)
        new = ~self.filled[lo:hi]  # overlapping windows: the first one's samples stay
        self.values[:, lo:hi][:, new] = eeg[:, new]
        self.filled[lo:hi] |= new
        if self._overlap(start, record.n_times, self.first, self.n) is not None:
            masked = tuple(CHANNELS[c] for c in np.flatnonzero(np.asarray(record.channel_mask) == 0))
            self.windows.append((start, start + record.n_times, masked, tuple(window.repaired)))

    def add_rejected(self, rejected) -> None:
        start_s = float(rejected.window_start_s)
        if not math.isfinite(start_s):
            return
        start = round(start_s * SFREQ)
        if self._overlap(start, self.window_n, self.first, self.n) is not None:
            rules = tuple(rule for rule in rejected.rule_names() if _RULE.fullmatch(rule))
            self.rejected.append((start, start + self.window_n, rules))

    def reply(self, duration: float, reasons: dict[str, str], view: TraceView, line_freq) -> dict[str, Any]:
        n = min(self.n, max(0, math.ceil(duration * SFREQ) - self.first))  # clipped at the recording's end
        derived = derivation_matrix(view.derivations) @ self.values  # NaN where no window: all 19 at once
        derived = view.filters.apply(derived)[:, self.before : self.before + n]
        encoded, scale = _encoded(derived)
        end = self.first + n
        return {
            "start_s": self.first / SFREQ,
            "seconds": n / SFREQ,
            "sfreq": SFREQ,
            "duration_s": round(duration, 3),
            "montage": view.title,
            "montage_key": view.key,
            "model_montage": MODEL_MONTAGE,
            "is_model_montage": view.key == MODEL_MONTAGE,
            "filters": view.filters.described(line_freq),
            "encoding": {"format": "int16 little-endian, base64", "scale_uv": scale, "missing": MISSING},
            "derivations": [
                {
                    "name": derivation.name,
                    "electrodes": list(derivation.electrodes),
                    "group": derivation.group,
                    "samples": samples,
                    "interpolated": self._interpolated(derivation.electrodes, reasons, end),
                }
                for derivation, samples in zip(view.derivations, encoded, strict=True)
            ],
            "windows": [_times(a, b) for a, b in sorted({(w[0], w[1]) for w in self.windows})],
            "rejected": [{**_times(a, b), "rules": list(rules)} for a, b, rules in sorted(self.rejected)],
        }

    def _interpolated(self, pair: tuple[str, ...], reasons: dict[str, str], end: int) -> list[dict[str, Any]]:
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
