"""Where a recording's windows lie, and how they are cut from its streamed signal.

`plan_windows` places the windows (sliding, or the data set's labeled ones) in the spans recorded
without a break; `cut_span` reads a span in bounded chunks, resamples, filters and yields its
windows scored by the quality rules, in memory bounded by a chunk plus a window plus filter margins.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable, Iterator

import numpy as np

from eegfm.contract import schema
from eegfm.core.dsp.resample import ResamplePlan, Resampler
from eegfm.pipelines.datasets import SourceItem, interval_label
from eegfm.pipelines.job.process_io import AE_NOT_SCORED, PreprocessConfig, RejectedWindow, Window
from eegfm.pipelines.quality import compute_quality_batch, validate_window
from eegfm.pipelines.quality.artifact_autoencoder import band_features_from_psd
from eegfm.pipelines.quality.rules import WINDOW_RULES, channel_crossing
from eegfm.pipelines.readers import Segment
from eegfm.pipelines.signal.chunking import chunk_samples
from eegfm.pipelines.signal.features import compute_features
from eegfm.pipelines.signal.filters import StreamingFilter
from eegfm.pipelines.signal.harmonize import interpolation_matrix
from eegfm.pipelines.signal.window_spectrograms import WindowSpectrograms


@dataclasses.dataclass(frozen=True)
class Request:
    start: int  # output sample index at 256 Hz, from the start of its span
    n_times: int
    label: int
    votes: tuple[float, ...]
    task: str
    marked_bad: str = ""  # why the recording's own annotations reject it, if they do
    spectrogram_offset_s: float | None = None  # HMS: its window of the recording's Kaggle spectrogram


@dataclasses.dataclass(frozen=True)
class Span:
    """A reader `Segment` at 256 Hz: output samples [0, n_out) from ``onset_s``, and the windows
    to cut from it."""

    segment: Segment
    n_out: int
    requests: list[Request] = dataclasses.field(default_factory=list)

    @property
    def onset_s(self) -> float:
        return self.segment.onset_s

    @property
    def end_s(self) -> float:
        return self.onset_s + self.n_out / schema.SFREQ


def plan_windows(item: SourceItem, spans: list[Span], config: PreprocessConfig) -> list[tuple[float, str, str]]:
    """Fill each span's requests; return the windows that fit in none as (start_s, rule, reason).
    Labeled windows with a ``problem`` are left out; a recording whose label rows are all unusable
    gets no window, unless it has a ``recording_label``: then windows slide over each span. A sliding
    window with a label takes the recording's ``recording_votes`` (a background recording's)."""
    usable = [w for w in item.windows if not w.problem]
    if not (usable or (item.windows and item.recording_label < 0)):
        size = int(round(config.window_seconds * schema.SFREQ))
        stride = int(round(config.stride_seconds * schema.SFREQ))
        for span in spans:
            for s in range(0, span.n_out - size + 1, stride):
                label = item.recording_label
                if item.intervals:  # TUSZ: the label of the stretch the window lies mostly in
                    start_s = span.onset_s + s / schema.SFREQ
                    label = interval_label(start_s, start_s + size / schema.SFREQ, item.intervals)
                votes = item.recording_votes if label >= 0 else ()
                span.requests.append(Request(s, size, label, votes, item.task if label >= 0 else ""))
        return []
    outside = []
    for w in usable:
        n_times = int(round(w.duration_s * schema.SFREQ))
        placed = _placed(w.offset_s, n_times, spans, 0) or _placed(w.offset_s, n_times, spans, w.slack_s)
        if placed is not None:
            span, start = placed
            request = Request(start, n_times, w.label, tuple(w.votes), w.task or item.task)
            span.requests.append(dataclasses.replace(request, spectrogram_offset_s=w.spectrogram_offset_s))
            continue
        end = w.offset_s + n_times / schema.SFREQ
        where = f"window [{w.offset_s:.2f} s, {end:.2f} s)"
        stops = [
            (a.end_s, b.onset_s)
            for a, b in zip(spans, spans[1:])
            if w.offset_s < b.onset_s and a.end_s < w.offset_s + w.duration_s
        ]
        if stops:
            gap_start, gap_stop = stops[0]
            verb = "lies in" if gap_start <= w.offset_s and end <= gap_stop else "spans"
            gap = f"nothing recorded from {gap_start:.2f} s to {gap_stop:.2f} s"
            outside.append((w.offset_s, "recording_gap", f"{where} {verb} a gap in the recording ({gap})"))
        else:
            span = f"({spans[0].onset_s:.0f} s, {spans[-1].end_s:.2f} s)"
            outside.append((w.offset_s, "outside_recording", f"{where} lies outside the recording {span}"))
    for span in spans:
        span.requests.sort(key=lambda r: (r.start, r.n_times))
    return outside


def mark_annotated_bad(spans: list[Span], bad_spans: tuple[tuple[int, int], ...], sfreq: float) -> None:
    """Flag the requests whose input samples touch a span the recording's annotations mark bad.
    The annotation's text is not repeated: it is free text, and may name the patient."""
    if not bad_spans:
        return
    starts, stops = np.array(bad_spans).T
    for span in spans:
        for k, req in enumerate(span.requests):
            first = span.segment.start + math.floor(req.start * sfreq / schema.SFREQ)
            last = span.segment.start + math.ceil((req.start + req.n_times) * sfreq / schema.SFREQ)
            hit = np.flatnonzero((starts < last) & (stops > first))
            if hit.size:
                a, b = bad_spans[int(hit[0])]
                where = f"{a / sfreq:.2f} s" if b - a == 1 else f"[{a / sfreq:.2f} s, {b / sfreq:.2f} s)"
                more = f" (and {hit.size - 1} more)" if hit.size > 1 else ""
                span.requests[k] = dataclasses.replace(
                    req, marked_bad=f"annotated_bad: the recording's annotations mark {where} bad{more}"
                )


def _placed(offset_s: float, n_times: int, spans: list[Span], slack_s: float) -> tuple[Span, int] | None:
    """The span a labeled window lies in and its start there; one overhanging a span's edge by at
    most ``slack_s`` moves inside it (a TUEV event near the recording's start keeps its 5 s)."""
    slack = int(round(slack_s * schema.SFREQ))
    for span in spans:
        start = int(round((offset_s - span.onset_s) * schema.SFREQ))
        fitted = min(max(start, 0), span.n_out - n_times)
        if fitted >= 0 and abs(fitted - start) <= slack:
            return span, fitted
    return None


@dataclasses.dataclass(frozen=True)
class Cutting:
    """What every window of one recording shares: where its samples come from and what its records say."""

    item: SourceItem
    sfreq: float  # the input's sampling rate
    n_chans: int  # the channels ``harmonized`` reads, which bound a chunk's samples (``chunking``)
    harmonized: Callable[[int, int], tuple[np.ndarray, np.ndarray]]  # (rows, bad samples) of input samples
    design: object  # filters.design_filters's, for StreamingFilter
    n_rows: int  # the 19 EEG rows, and the ECG row where the recording has one
    mask: np.ndarray  # channel_mask: 0 where a channel is interpolated
    ids: dict[str, str]  # pseudonyms: site_id, subject_id, session_id, recording_id
    clinical: dict  # age, sex
    config: PreprocessConfig
    config_hash: str
    sha: str
    spectrograms: WindowSpectrograms | None = None  # None: windows carry no spectrogram


def cut_span(span: Span, cut: Cutting) -> Iterator[Window | RejectedWindow]:
    """Resample, filter and cut one span: its filters start afresh, as at a recording's start,
    so no window mixes samples from either side of a gap."""
    seg, requests = span.segment, span.requests
    resampler = Resampler(cut.sfreq, cut.n_rows, schema.SFREQ)
    filt = StreamingFilter(cut.design, cut.n_rows)
    raw_buf = _Rolling(cut.n_rows)  # resampled, before filtering (for clipping/flat checks)
    bad_buf = _NonFinite(resampler.plan)  # the input samples that were non-finite
    out_buf = _Rolling(cut.n_rows)
    chunk = chunk_samples(cut.config.chunk_seconds, cut.sfreq, cut.n_chans)
    next_req = 0
    for start in range(seg.start, seg.stop, chunk):
        stop = min(seg.stop, start + chunk)
        data, bad = cut.harmonized(start, stop)
        last = stop >= seg.stop
        block = resampler.finish(data) if last else resampler.push(data)
        raw_buf.append(block)
        out_buf.append(filt.finish(block) if last else filt.push(block))
        bad_buf.add(bad, start - seg.start)
        ready = []
        while next_req < len(requests) and requests[next_req].start + requests[next_req].n_times <= out_buf.end:
            ready.append(requests[next_req])
            next_req += 1
        for batch in _quality_batches(ready):
            yield from _make_windows(cut, span, batch, raw_buf, out_buf, bad_buf)
        keep_from = requests[next_req].start if next_req < len(requests) else out_buf.end
        for buf in (raw_buf, out_buf, bad_buf):
            buf.drop_before(keep_from)


class _NonFinite:
    """The span's input samples (indices from its start) that were non-finite, set to 0 before
    resampling. A window counts every one its outputs read through the resampling filter
    (`ResamplePlan.input_span`), not just the input nearest each output: one bad sample between
    two output instants still reaches the outputs on both sides."""

    def __init__(self, plan: ResamplePlan):
        self.plan = plan
        self.index = np.zeros(0, dtype=np.int64)  # sorted

    def add(self, bad: np.ndarray, start: int) -> None:
        """Note the True entries of ``bad``, the input samples ``start, start + 1, ...``."""
        if bad.any():
            self.index = np.concatenate([self.index, start + np.flatnonzero(bad)])

    def count(self, start: int, n: int) -> int:
        """How many non-finite input samples the outputs ``start .. start + n - 1`` read."""
        if not self.index.size:
            return 0
        first, stop = self.plan.input_span(start, start + n)
        return int(np.searchsorted(self.index, stop) - np.searchsorted(self.index, first))

    def drop_before(self, index: int) -> None:
        """Forget the input samples no output from ``index`` on reads."""
        if self.index.size:
            first, _ = self.plan.input_span(index, index + 1)
            self.index = self.index[np.searchsorted(self.index, first) :]


class _Rolling:
    """A growing 2-D buffer addressed by global sample index, trimmed from the left."""

    def __init__(self, n_rows: int):
        self.base = 0
        self.data = np.zeros((n_rows, 0), dtype=np.float32)

    @property
    def end(self) -> int:
        return self.base + self.data.shape[1]

    def append(self, block: np.ndarray) -> None:
        """Add ``block`` after the end; an empty buffer adopts it without a copy (the caller never
        writes to it again)."""
        if not block.shape[1]:
            return
        block = block.astype(self.data.dtype, copy=False)
        self.data = block if not self.data.shape[1] else np.concatenate([self.data, block], axis=1)

    def take(self, start: int, n: int) -> np.ndarray:
        return self.data[:, start - self.base : start - self.base + n]

    def drop_before(self, index: int) -> None:
        cut = max(0, min(index, self.end) - self.base)
        if cut:
            self.data = self.data[:, cut:]
            self.base += cut


# Windows scored together: shares compute_quality_batch's per-call work, bounded in memory
# (32 windows of 50 s are 24 MB of float32).
_QUALITY_BATCH = 32


def _quality_batches(requests: list) -> Iterator[list]:
    """Consecutive runs of equally long requests, at most _QUALITY_BATCH each."""
    for _, run in itertools.groupby(requests, key=lambda req: req.n_times):
        run = list(run)
        for i in range(0, len(run), _QUALITY_BATCH):
            yield run[i : i + _QUALITY_BATCH]


def _make_windows(cut: Cutting, span: Span, batch, raw_buf, out_buf, bad_buf):
    config, mask = cut.config, cut.mask
    # The buffers hold each electrode against the recording's own reference: flat and clipped
    # electrodes are found there (an average reference would spread them over every channel), and
    # the average reference, linear like the filters, is taken per window after any repair.
    filtered = np.stack([out_buf.take(r.start, r.n_times) for r in batch])
    unfiltered = np.stack([raw_buf.take(r.start, r.n_times)[: schema.N_CHANS] for r in batch])
    referenced = _referenced(filtered, config)
    reports = compute_quality_batch(
        referenced[:, : schema.N_CHANS], schema.SFREQ, config.quality, channel_mask=mask, unfiltered=unfiltered
    )
    scored = []
    for req, window, own, raw, report in zip(batch, referenced, filtered, unfiltered, reports):
        n_bad = bad_buf.count(req.start, req.n_times)
        window_mask, repaired = mask, ()
        if config.repair_channels and not req.marked_bad and not n_bad:
            fixed = repair_window(own, raw, report, mask, config)
            if fixed is not None:
                window, window_mask, report = fixed
                repaired = tuple(c for c, was, now in zip(schema.CHANNELS, mask, window_mask) if was and not now)
        reasons = _rejection(cut, req, window, report, n_bad)
        scored.append(_Scored(req, window, report, window_mask, repaired, reasons))
    spectrograms = _spectrograms(cut, [s for s in scored if s.reasons is None])
    for s in scored:
        if s.reasons is None:
            yield _make_window(cut, span, s, next(spectrograms))
        else:
            start_s = span.onset_s + s.req.start / schema.SFREQ
            yield RejectedWindow(cut.item.path, cut.ids["site_id"], start_s, s.reasons)


@dataclasses.dataclass(frozen=True)
class _Scored:
    """A window of a batch, scored (and repaired where it could be): what its record needs."""

    req: Request
    window: np.ndarray  # its rows, referenced as the records store them
    report: object  # its quality report
    mask: np.ndarray  # its channel_mask
    repaired: tuple[str, ...]  # the channels its repair interpolated
    reasons: list[str] | None  # why it is rejected; None where it is kept


def _spectrograms(cut: Cutting, kept: list[_Scored]) -> Iterator[np.ndarray | None]:
    """The spectrograms of the kept windows of a batch, in order; the computed ones come from one
    vectorised call (the windows of a batch are equally long)."""
    if cut.spectrograms is None or not kept:
        return iter([None] * len(kept))
    eeg = np.stack([s.window[: schema.N_CHANS] for s in kept])
    masks = np.stack([s.mask for s in kept])
    return iter(cut.spectrograms.for_windows([s.req.spectrogram_offset_s for s in kept], eeg, masks))


# Window rules whose offending channels may be interpolated instead (the rule table's ``repairable``).
_REPAIRABLE = {rule.name: rule for rule in WINDOW_RULES if rule.repairable}


def repair_window(window: np.ndarray, unfiltered: np.ndarray, report, mask: np.ndarray, config: PreprocessConfig):
    """A window (against the recording's own reference) rejected, or flagged ``high_amplitude``,
    whose only fault is at most ``repair_channels`` flat, clipped or out-of-range channels, those
    (and any the recording lacks) interpolated from its other measured channels: (window,
    channel_mask, quality report), or None. An out-of-range channel carrying rhythmic activity with
    a field is brain, not a fault, and stays. Interpolation (spatial) and filtering (temporal) are
    both linear, so they commute."""
    quality = config.quality
    keep, reasons = validate_window(report, quality)
    fired = {reason.split(":", 1)[0] for reason in reasons}  # rule names (or artifact_score)
    if keep and "high_amplitude" in report.flags:
        fired = {"high_amplitude"}
    if not fired or not fired <= set(_REPAIRABLE):
        return None
    measured = mask.astype(bool)
    bad = np.zeros_like(measured)
    channels = report.channels()
    for rule in fired:
        bad |= measured & channel_crossing(_REPAIRABLE[rule], channels, quality)
    bad &= ~np.asarray(report.channel_rhythmic_field, dtype=bool)
    new_mask = (measured & ~bad).astype(mask.dtype)
    if not 0 < bad.sum() <= config.repair_channels or new_mask.sum() < config.min_channels:
        return None
    sources, targets = np.flatnonzero(new_mask), np.flatnonzero(new_mask == 0)
    weights = interpolation_matrix(
        tuple(schema.CHANNELS[i] for i in sources), tuple(schema.CHANNELS[i] for i in targets)
    )
    window, unfiltered = window.copy(), unfiltered.copy()
    for rows in (window, unfiltered):  # the ECG row, if any, stays as recorded
        rows[targets] = (weights @ rows[sources].astype(np.float64)).astype(np.float32)
    window = _referenced(window, config)
    fixed = compute_quality_batch(
        window[None, : schema.N_CHANS], schema.SFREQ, quality, channel_mask=new_mask, unfiltered=unfiltered[None]
    )[0]
    return (window, new_mask, fixed) if validate_window(fixed, quality)[0] else None


def _referenced(windows: np.ndarray, config: PreprocessConfig) -> np.ndarray:
    """``windows`` (..., rows, n_times) with the 19 EEG rows (not ECG) against their average, as a
    copy, under ``--reference average``."""
    if config.reference != "average":
        return windows
    out = windows.copy()
    eeg = out[..., : schema.N_CHANS, :]
    eeg -= eeg.mean(axis=-2, keepdims=True)
    return out


def _rejection(cut: Cutting, req: Request, window: np.ndarray, report, n_bad: int) -> list[str] | None:
    """Why a window is rejected (its reasons), or None where it is kept."""
    eeg = window[: schema.N_CHANS]
    keep, reasons = validate_window(report, cut.config.quality)
    if req.marked_bad:
        keep, reasons = False, [req.marked_bad] + reasons
    if n_bad:
        keep, reasons = False, [f"non_finite: {n_bad} samples were NaN or infinite in the source"] + reasons
    if keep and float(np.abs(eeg).max()) >= 65504:
        keep, reasons = False, [f"amplitude: {float(np.abs(eeg).max()):.4g} uV exceeds the float16 range"]
    return None if keep else reasons


def _make_window(cut: Cutting, span: Span, scored: _Scored, spectrogram: np.ndarray | None) -> Window:
    """The record of a kept window."""
    item, ids, config = cut.item, cut.ids, cut.config
    req, filtered, report, mask = scored.req, scored.window, scored.report, scored.mask
    eeg = filtered[: schema.N_CHANS]
    # On the recording's time axis: after a gap, a window starts where it was recorded.
    start_index = int(round(span.onset_s * schema.SFREQ)) + req.start
    window_start_s = span.onset_s + req.start / schema.SFREQ
    return Window(
        schema.WindowRecord(
            eeg=eeg,
            channel_mask=mask,
            site_id=ids["site_id"],
            subject_id=ids["subject_id"],
            session_id=ids["session_id"],
            recording_id=ids["recording_id"],
            window_start_s=window_start_s,
            window_start_index=start_index,
            quality=np.append(report.vector(), np.float32(AE_NOT_SCORED)),
            artifact_score=float(report.artifact_score),
            label=req.label,
            votes=np.asarray(req.votes, dtype=np.float32),
            task=req.task,
            age=math.nan if cut.clinical["age"] is None else cut.clinical["age"],
            sex=cut.clinical["sex"],
            extra=(
                compute_features(eeg, schema.SFREQ, spectrum=report.spectrum)
                if config.features
                else np.zeros(0, np.float32)
            ),
            ecg=filtered[schema.N_CHANS] if cut.n_rows > schema.N_CHANS else None,
            spectrogram=spectrogram,
            corpus_split=item.corpus_split,
            source_sha256=cut.sha,
            config_hash=cut.config_hash,
        ),
        item.path,
        band_features_from_psd(report.spectrum.freqs, report.spectrum.psd).astype(np.float32),
        scored.repaired,
    )
