"""The per-recording path's events with their names redacted: an ``Outcome``'s and a rejected
window's paths, reasons and channel labels by a :class:`~pipelines.privacy.redact.PathRedactor`,
as the job and the predictor write them.

Apart from ``redact`` (names and tokens, and eegfm-redact's command line) because the events'
types come with the signal path (scipy), which the command line does without.
"""

from __future__ import annotations

import dataclasses

from eegfm.pipelines.job.process_io import Outcome, RejectedWindow
from eegfm.pipelines.privacy.redact import PathRedactor, related_paths


def redacted_outcome(outcome: Outcome, item, redactor: PathRedactor) -> Outcome:
    """``outcome`` with its paths, its reason and every channel label it lists redacted."""
    parts, labels = outcome.split_parts, outcome.channel_labels
    scrub = redactor.scrubber([*related_paths(item), *parts], labels)
    bipolar = {k: [scrub(v) for v in values] for k, values in outcome.bipolar.items()}
    return dataclasses.replace(
        outcome,
        source=redactor.path(outcome.source),
        reason=scrub(outcome.reason),
        split_parts=tuple(map(redactor.path, parts)),
        marked_bad=redactor.labels(outcome.marked_bad),
        other_rate=redactor.labels(outcome.other_rate),
        constant=redactor.labels(outcome.constant),
        cap_sites={site: redactor.label(label) for site, label in outcome.cap_sites.items()},
        repaired={redactor.label(k): v for k, v in outcome.repaired.items()},
        bipolar=bipolar,
        channel_labels=redactor.labels(labels),
    )


def redacted_events(item, redactor: PathRedactor):
    """A function giving ``process_recording``'s events for ``item`` with the paths, reasons and
    channel labels of outcomes and rejected windows redacted (windows hold no path)."""
    if not redactor.enabled:
        return lambda event: event
    scrub = redactor.scrubber(related_paths(item))

    def redacted(event):
        if isinstance(event, Outcome):
            return redacted_outcome(event, item, redactor)
        if isinstance(event, RejectedWindow):
            return dataclasses.replace(
                event, source=redactor.path(event.source), reasons=list(map(scrub, event.reasons))
            )
        return event

    return redacted
