"""The TUH EEG corpora: TUAB, TUEP (folders label each recording), TUSZ, TUAR, TUEV (event files beside each).

Files are ``<patient>_<session>_<token>.edf`` (aaaaaaaq_s004_t000.edf): splits keep a patient's
sessions together; the nearest folder named train, dev or eval is the corpus's own split.

- TUAB: ``{normal,abnormal}/`` folders; TUEP: ``00_epilepsy/`` (1), ``01_no_epilepsy/`` (0).
- TUSZ: a term-based ``<file>.csv_bi`` (else the channel-based ``<file>.csv``): 0 bckg, 1 seizure.
- TUAR: a ``<file>.csv`` of artifact events per channel; unannotated stretches stay unlabeled.
- TUEV: a ``<file>.rec`` of channel,start_s,stop_s,code rows (1 spsw ... 6 bckg); training files
  are ``<patient>_<n>.edf``, evaluation files ``<class>_<patient>_<segment>_.edf``.
"""

from __future__ import annotations

import math
import posixpath
import re
from collections import Counter
from collections.abc import Callable

from eegfm.core.tasks import TUAB_LABELS, TUAR_LABELS, TUEV_LABELS
from eegfm.pipelines.datasets.adapters import Group, by_name, companion_files, every_edf, plain, register, sidecar
from eegfm.pipelines.datasets.items import LabeledInterval, LabeledWindow, SourceItem
from eegfm.pipelines.datasets.tables import read_events

_TUH_NAME = re.compile(r"^([a-z]{8})_(s\d{3})_t\d{3}\.edf$")
TUSZ_SEIZURE_TYPES = frozenset(
    {"seiz", "fnsz", "gnsz", "spsz", "cpsz", "absz", "tnsz", "cnsz", "tcsz", "atsz", "mysz", "nesz"}
)
_TUAR_CODES = {frozenset(name.split("_")): k for k, name in enumerate(TUAR_LABELS)}
_TUEV_NAME = re.compile(r"^(?:(?:spsw|gped|pled|eyem|artf|bckg)_)?([A-Za-z0-9]+)_\w*\.edf$")
# An event's window reaches this far either side of it (5 s around the corpus's 1 s events, the
# context the TUEV benchmarks classify); at a recording's edge it moves inside by up to as much.
TUEV_CONTEXT_S = 2.0


@companion_files
def _event_files(path: str, listed: set[str]) -> str | None:
    stem, ext = posixpath.splitext(path)
    if stem + ".edf" not in listed:
        return None
    if ext.lower() in (".csv_bi", ".csv") and _TUH_NAME.match(posixpath.basename(stem) + ".edf"):
        return sidecar(path)
    return "TUEV event file (.rec) of the EDF beside it, read by the tuev adapter" if ext.lower() == ".rec" else None


def corpus_split(path: str) -> str:
    """The TUH corpora's own split of a recording: the nearest folder named train, dev or eval."""
    return next((p.lower() for p in reversed(path.split("/")[:-1]) if p.lower() in ("train", "dev", "eval")), "")


def _folder_label(path: str, folders: dict[str, int]) -> int:
    """The label of the nearest folder above ``path`` that ``folders`` names, else -1."""
    return next((folders[p.lower()] for p in reversed(path.split("/")[:-1]) if p.lower() in folders), -1)


def _register_tuh(
    dataset: str,
    task: str,
    folders: dict[str, int] | None = None,
    events: tuple[str, ...] = (),
    parse: Callable[[str, str], tuple[LabeledInterval, ...]] | None = None,
) -> None:
    """Registers a TUH corpus labelled by the nearest of ``folders`` above each recording, or else by the first of the
    ``events`` files beside it (detected by the first kind); a recording without either is processed unlabeled."""

    def detect(files: list[str]) -> bool:
        listed = set(files)
        known = (lambda f: _folder_label(f, folders) >= 0) if folders else (lambda f: f[:-4] + events[0] in listed)
        return every_edf(files, lambda f: known(f) and _TUH_NAME.match(posixpath.basename(f)) is not None)

    @register(dataset, detect)
    def list_items(group: Group):
        items, ignored, named_files = by_name(group, _TUH_NAME)
        listed = set(group.files)
        for path, named in named_files:
            fields = {}
            if folders and (label := _folder_label(path, folders)) >= 0:
                fields = {"recording_label": label}
            elif event_file := next((path[:-4] + ext for ext in events if path[:-4] + ext in listed), ""):
                intervals, problem = read_events(event_file, parse)
                fields = {"intervals": intervals or (), "label_problem": problem}
            if not fields:
                items.append(plain(path, group))
                continue
            items.append(
                SourceItem(
                    path=path,
                    dataset=dataset,
                    site=group.site_of(path),
                    subject_key=f"tuh-{named.group(1)}",
                    session_key=named.group(2),
                    task=task,
                    corpus_split=corpus_split(path),
                    **fields,
                )
            )
        return items, ignored


def _csv_intervals(
    text: str, name: str, code: Callable[[str], int | None], expected: str
) -> tuple[LabeledInterval, ...]:
    """The labeled stretches of a TUH ``.csv``/``.csv_bi`` (channel,start_time,stop_time,label,
    confidence after ``#`` comment lines), each label coded by ``code`` (None: not one of
    ``expected``). Raises ValueError naming the line and field of a row it cannot read."""
    lines = [
        (k, line)
        for k, line in enumerate(text.splitlines(), start=1)
        if line.strip() and not line.lstrip().startswith("#")
    ]
    if not lines:
        raise ValueError(
            f"{name}: no events (expected a header channel,start_time,stop_time,label,confidence and one row per event)"
        )
    header = [c.strip() for c in lines[0][1].split(",")]
    missing = [c for c in ("start_time", "stop_time", "label") if c not in header]
    if missing:
        raise ValueError(
            f"{name}: line {lines[0][0]}: columns: expected channel,start_time,stop_time,label,"
            f"confidence; missing {', '.join(missing)}"
        )
    at_start, at_stop, at_label = (header.index(c) for c in ("start_time", "stop_time", "label"))
    out = []
    for k, line in lines[1:]:
        cells = [c.strip() for c in line.split(",")]
        if len(cells) < len(header):
            raise ValueError(f"{name}: line {k}: expected {len(header)} fields; got {len(cells)}")
        label = code(cells[at_label].lower())
        if label is None:
            raise ValueError(f"{name}: line {k}, label: expected {expected}; got {cells[at_label]!r}")
        try:
            start, stop = float(cells[at_start]), float(cells[at_stop])
        except ValueError:
            raise ValueError(
                f"{name}: line {k}: start_time, stop_time: expected seconds; got "
                f"{cells[at_start]!r}, {cells[at_stop]!r}"
            ) from None
        if not (math.isfinite(start) and math.isfinite(stop) and 0 <= start < stop):
            raise ValueError(f"{name}: line {k}: expected 0 <= start_time < stop_time; got {start:g}, {stop:g}")
        out.append(LabeledInterval(start, stop, label))
    return tuple(out)


def tusz_intervals(text: str, name: str) -> tuple[LabeledInterval, ...]:
    """The labeled stretches of a TUSZ ``.csv_bi`` or ``.csv``: 1 a seizure type, 0 ``bckg``."""
    types = ", ".join(sorted(TUSZ_SEIZURE_TYPES))
    return _csv_intervals(
        text,
        name,
        lambda label: 0 if label == "bckg" else 1 if label in TUSZ_SEIZURE_TYPES else None,
        f"bckg or a seizure type ({types})",
    )


def tuar_intervals(text: str, name: str) -> tuple[LabeledInterval, ...]:
    """The artifact stretches of a TUAR ``.csv``, coded as their kind's index in ``TUAR_LABELS``: a
    pair in another order (musc_eyem) reads as the pair, elpp (older releases' electrode pop) as elec."""
    return _csv_intervals(
        text,
        name,
        lambda label: _TUAR_CODES.get(frozenset(label.replace("elpp", "elec").split("_"))),
        f"an artifact kind ({', '.join(TUAR_LABELS)})",
    )


_register_tuh("tuab", "tuab_abnormal", folders={name: k for k, name in enumerate(TUAB_LABELS)})
_register_tuh("tuep", "tuep_epilepsy", folders={"01_no_epilepsy": 0, "00_epilepsy": 1})
_register_tuh("tusz", "tusz_seizure", events=(".csv_bi", ".csv"), parse=tusz_intervals)
_register_tuh("tuar", "tuar_artifact", events=(".csv",), parse=tuar_intervals)


def _tuev_row(line: str, k: int, name: str) -> tuple[float, float, int]:
    """``(start, stop, class)`` of a TUEV ``.rec`` row; ValueError naming the line and field."""
    cells = [c.strip() for c in line.split(",")]
    if len(cells) != 4:
        raise ValueError(f"{name}: line {k}: expected 4 fields (channel,start,stop,label); got {len(cells)}")
    try:
        channel, start, stop, code = map(float, cells)
    except ValueError:
        raise ValueError(
            f"{name}: line {k}: expected numbers (channel,start,stop,label); got {line.strip()!r}"
        ) from None
    if not (channel >= 0 and channel == int(channel)):
        raise ValueError(f"{name}: line {k}, channel: expected a channel index >= 0; got {cells[0]!r}")
    if code not in range(1, len(TUEV_LABELS) + 1):
        raise ValueError(
            f"{name}: line {k}, label: expected a code 1-{len(TUEV_LABELS)} "
            f"({', '.join(f'{i} {c}' for i, c in enumerate(TUEV_LABELS, 1))}); got {cells[3]!r}"
        )
    if not (math.isfinite(start) and math.isfinite(stop) and 0 <= start < stop):
        raise ValueError(
            f"{name}: line {k}: start, stop: expected 0 <= start < stop seconds; got {cells[1]}, {cells[2]}"
        )
    return start, stop, int(code) - 1


def tuev_windows(text: str, name: str) -> tuple[LabeledWindow, ...]:
    """One labeled window per event of a TUEV ``.rec``, ``TUEV_CONTEXT_S`` either side of it. An
    event's rows (one per channel it shows on) make one window, labelled by most rows, a tie by the
    lower code (the epileptiform classes come first). ValueError names a bad row's line and field."""
    rows: dict[tuple[float, float], Counter] = {}
    for k, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            start, stop, label = _tuev_row(line, k, name)
            rows.setdefault((start, stop), Counter())[label] += 1
    if not rows:
        raise ValueError(f"{name}: no events (expected one row channel,start,stop,label per event and channel)")
    return tuple(
        LabeledWindow(
            start - TUEV_CONTEXT_S,
            stop - start + 2 * TUEV_CONTEXT_S,
            label=min(votes, key=lambda c: (-votes[c], c)),
            task="tuev_event",
            slack_s=TUEV_CONTEXT_S,
        )
        for (start, stop), votes in sorted(rows.items())
    )


def _tuev_detect(files: list[str]) -> bool:
    listed = set(files)
    return every_edf(files, lambda f: f[:-4] + ".rec" in listed)


@register("tuev", detect=_tuev_detect)
def list_tuev(group: Group):
    items, ignored, named_files = by_name(group, _TUEV_NAME, ".rec")
    for path, named in named_files:
        windows, problem = read_events(path[:-4] + ".rec", tuev_windows)
        # Training files carry TUH's patient codes (as TUAB and TUSZ do); evaluation files a number.
        patient = named.group(1)
        items.append(
            SourceItem(
                path=path,
                dataset="tuev",
                site=group.site_of(path),
                subject_key=f"tuh-{patient}" if re.fullmatch(r"[a-z]{8}", patient) else f"tuev-{patient}",
                task="tuev_event",
                windows=windows or (),
                label_problem=problem,
                corpus_split=corpus_split(path),
            )
        )
    return items, ignored
