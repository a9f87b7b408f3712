"""Reading the text files adapters take labels and demographics from: csv rows, number and age cells."""

from __future__ import annotations

import csv
import io
import math
import posixpath
import re
from collections.abc import Callable
from typing import Any

from eegfm.core.stores import is_remote
from eegfm.pipelines.privacy.deid import safe_age
from eegfm.pipelines.readers.regular_files import open_regular


def read_text(path: str) -> str:
    # A local file is opened without blocking: a sidecar swapped for a FIFO is refused, not waited on.
    if not is_remote(path):
        with open_regular(path) as fh:
            return fh.read().decode("utf-8-sig")
    from apache_beam.io.filesystems import FileSystems  # apache_beam: ~1 s to import; only for a remote file

    with FileSystems.open(path) as fh:
        return fh.read().decode("utf-8-sig")


def csv_rows(path: str, delimiter: str = ",") -> list[tuple[str, dict]]:
    """``(where, row)`` for each row of a csv file; ``where`` is "<file name> line <n>" (a line
    number, not an id from the row: those can be patient codes)."""
    reader = csv.DictReader(io.StringIO(read_text(path)), delimiter=delimiter)
    return [(f"{posixpath.basename(path)} line {reader.line_num}", row) for row in reader]


def number(row: dict, column: str, default: float | None = None, minimum: float | None = None) -> float:
    """The finite number in ``row[column]`` (an empty or absent cell: ``default``); ValueError
    names the column, what it expects and the cell's text."""
    text = row.get(column)
    if text is None or not str(text).strip():
        if default is not None:
            return default
        got = "no such column" if text is None else "an empty cell"
    else:
        got = repr(str(text).strip())
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if math.isfinite(value) and (minimum is None or value >= minimum):
            return value
    expected = "a number" if minimum is None else f"a number >= {minimum:g}"
    raise ValueError(f"{column}: expected {expected}; got {got}")


def age_cell(text: str | None) -> float | None:
    """Age in years from a sidecar's cell: a number, or a lower bound such as BIDS's "89+" (ages
    above 89 written so to de-identify them) or ">89"; None for "n/a", empty or anything else."""
    cleaned = (text or "").strip().removeprefix(">").removesuffix("+").strip()
    try:
        return safe_age(float(cleaned))
    except ValueError:
        return None


def read_events(path: str, parse: Callable[[str, str], Any]) -> tuple[Any, str]:
    """What ``parse`` makes of a label file (a recording's events, a case's seizure summary), or
    None and why it cannot be read (its recordings are then quarantined at stage "labels")."""
    name = posixpath.basename(path)
    try:
        return parse(read_text(path), name), ""
    except UnicodeDecodeError as err:
        return None, f"{name}: not UTF-8 text ({err})"
    except ValueError as err:
        return None, str(err)


def label_files(files, pattern: re.Pattern, parse) -> tuple[dict[str, Any], dict[str, str]]:
    """Every ``pattern``-named label file's entries (file name -> what ``parse`` says of it), and
    per folder why its label file cannot be read."""
    entries: dict[str, Any] = {}
    unreadable: dict[str, str] = {}
    for f in files:
        if pattern.match(posixpath.basename(f)):
            found, problem = read_events(f, parse)
            if problem:
                unreadable[posixpath.dirname(f)] = problem
            else:
                entries[f] = found
    return entries, unreadable
