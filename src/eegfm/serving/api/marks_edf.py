"""A reviewer's marks as an EDF+ annotations-only file (``GET /v1/marks/{id}/annotations.edf``),
written by edfio: the form clinical EEG viewers import beside the recording.

The file holds the marks alone (no signal, EDF+C, a zero data-record duration, as EDF+ hypnograms
are). Its patient and recording fields stay EDF+'s anonymous ``X``: the server knows nothing of
the patient and writes nothing of the recording's header; onsets count from the recording's start.
A mark on one derivation or electrode has it appended to its text (``spike-wave [Fp1-F7]``):
EDF+ annotations have no channel field.
"""

from __future__ import annotations

import io

from eegfm.serving.api.marks import Mark


def annotations_edf(marks: list[Mark]) -> bytes:
    """The EDF+ annotations-only file of ``marks`` (at least one: EDF+ needs a signal or an annotation)."""
    from edfio import Edf, EdfAnnotation  # only for this route: the server starts without it

    if not marks:
        raise ValueError("marks: expected at least one mark for an EDF+ annotations file; got none")
    annotations = [
        EdfAnnotation(m.onset_s, m.duration_s or None, m.text if m.channel is None else f"{m.text} [{m.channel}]")
        for m in marks
    ]
    out = io.BytesIO()
    Edf(signals=[], annotations=annotations).write(out)
    return out.getvalue()
