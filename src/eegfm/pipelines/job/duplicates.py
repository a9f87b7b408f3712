"""Inputs with the same bytes (``Outcome.source_sha256``): one recording, written once.

A copy written twice weighs double in pretraining, and copies in two site folders would let a
leave-one-site-out evaluation test on what it trained on. One copy is kept (its labels may reach only
one copy: the most labeled windows wins); the others are quarantined at stage ``duplicate``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable

import apache_beam as beam

from eegfm.pipelines.job.process import Outcome


def duplicate_sources(hashed: Iterable[tuple[str, str, int, int]]) -> dict[str, str]:
    """``{copy: kept}`` from ``(sha256, source, labeled windows, windows)``: per hash, the source
    with the most labeled windows is kept, then the most windows, then the first by path."""
    by_hash: dict[str, set[tuple[int, int, str]]] = {}
    for sha, source, labeled, windows in hashed:
        by_hash.setdefault(sha, set()).add((-labeled, -windows, source))
    copies = {}
    for ranked in by_hash.values():
        (*_, kept), *others = sorted(ranked)
        copies.update({other: kept for *_, other in others if other != kept})
    return copies


def mark_duplicate(outcome: Outcome, copies: dict[str, str]) -> Outcome:
    """``outcome`` quarantined as a copy of the input ``copies`` names; others as they are."""
    kept = copies.get(outcome.source)
    if kept is None:
        return outcome
    cleared = dict(windows=0, labeled_windows=0, rejected_windows=0, rejection_rules={})
    return dataclasses.replace(
        outcome,
        **cleared,
        status="quarantined",
        stage="duplicate",
        reason=f"{os.path.basename(outcome.source)}: the same file (SHA-256 {outcome.source_sha256[:16]}...) as "
        f"{kept}, whose windows are written; a copy is not written twice",
    )


def _hash_of(outcome: Outcome) -> list[tuple[str, tuple[str, int, int]]]:
    if outcome.status != "processed" or not outcome.source_sha256:
        return []
    return [(outcome.source_sha256, (outcome.source, outcome.labeled_windows, outcome.windows))]


def _copies_of(group: tuple[str, Iterable[tuple[str, int, int]]]) -> list[tuple[str, str]]:
    sha, copies = group
    return sorted(duplicate_sources((sha, *copy) for copy in copies).items())


@beam.ptransform_fn
def DropDuplicates(pcolls):
    """``(recordings, rejected windows, outcomes)``, the same three without the copies: their
    spilled recordings and rejected windows left out, their outcomes quarantined."""
    recordings, rejected, outcomes = pcolls
    copies = (
        outcomes
        | "Hashes" >> beam.FlatMap(_hash_of)
        | "ByHash" >> beam.GroupByKey()
        | "Copies" >> beam.FlatMap(_copies_of)
    )
    found = beam.pvalue.AsDict(copies)
    return (
        recordings | "DropRecordings" >> beam.Filter(lambda rec, c: rec.source not in c, found),
        rejected | "DropRejected" >> beam.Filter(lambda event, c: event.source not in c, found),
        outcomes | "MarkOutcomes" >> beam.Map(mark_duplicate, found),
    )
