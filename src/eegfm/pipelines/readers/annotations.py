"""A recording's own annotations as a reader reports them: gaps and cuts (segments), spans marked bad, events."""

from __future__ import annotations

from collections.abc import Sequence

from eegfm.pipelines.readers.base import Segment

# Annotations that mark where a recording stops being continuous: MNE's skipped FIF buffers
# (zeros in the data), EEGLAB's cuts (data removed there) and BrainVision's resumptions.
_SKIP = "bad_acq_skip"
_CUTS = ("boundary", "new segment/", "new segment")


def annotation_samples(raw, keep_case: bool = False) -> list[tuple[int, int, str]]:
    """Each annotation of an MNE raw as (first sample, length in samples, lower-case text, or the
    text as recorded with ``keep_case``)."""
    notes = raw.annotations
    if not len(notes):
        return []
    sfreq = float(raw.info["sfreq"])
    index = raw.time_as_index(notes.onset, use_rounding=True, origin=notes.orig_time)
    return [
        (at, int(round(duration * sfreq)), str(text).strip() if keep_case else str(text).strip().lower())
        for at, duration, text in zip(index.tolist(), notes.duration.tolist(), notes.description)
    ]


def annotated_segments(notes: list[tuple[int, int, str]], n: int, sfreq: float) -> tuple[Segment, ...]:
    """The continuous stretches of ``n`` samples between the cuts and outside the skipped spans the
    notes (``annotation_samples``) mark; () when there is only one (the reader's default)."""
    holes = [(at, at + length) for at, length, kind in notes if kind.startswith(_SKIP)]
    holes += [(at, at) for at, _, kind in notes if kind in _CUTS and 0 < at < n]
    if not holes:
        return ()
    segments, start = [], 0
    for hole_start, hole_stop in sorted(holes) + [(n, n)]:
        stop = min(max(hole_start, start), n)
        if stop > start:
            segments.append(Segment(start, stop, start / sfreq))
        start = max(start, min(hole_stop, n))
    return tuple(segments) if len(segments) != 1 or segments[0] != Segment(0, n, 0.0) else ()


def annotated_events(
    notes: list[tuple[int, int, str]], segments: Sequence[Segment], sfreq: float
) -> tuple[tuple[float, float, str], ...]:
    """``annotation_samples``' notes as (onset s in the recording's time, duration s, text), placed
    by the segment they fall in (a cut recording's samples are not its time)."""
    out = []
    for at, length, text in notes:
        segment = next((s for s in segments if s.start <= at < s.stop), segments[-1] if segments else None)
        origin = (segment.onset_s - segment.start / sfreq) if segment else 0.0
        out.append((origin + at / sfreq, length / sfreq, text))
    return tuple(out)


def marks_bad(text: str) -> bool:
    """Whether an annotation marks its span bad (MNE's 'BAD...'), skips aside (they are gaps)."""
    kind = text.strip().lower()
    return kind.startswith("bad") and not kind.startswith(_SKIP)


def annotated_bad_spans(notes: list[tuple[int, int, str]], n: int) -> tuple[tuple[int, int], ...]:
    """Sample ranges of the annotations that `marks_bad`; a zero-length one covers its sample."""
    spans = [(max(0, at), min(n, at + max(1, length))) for at, length, kind in notes if marks_bad(kind)]
    return tuple(sorted((a, b) for a, b in spans if b > a))
