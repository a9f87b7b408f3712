"""Text from outside (file names, channel labels, CSV cells, class names) made safe where it is
shown or stored.

- CSV cells: a spreadsheet runs a cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a
  carriage return as a formula (OWASP, "CSV injection"); :func:`csv_text` prefixes such a text cell
  with a single quote, which spreadsheets show as text. Text cells only: a number the program
  formatted (``-0.5``) must stay a number.
- Terminals and logs: a control character in a name can rewrite the screen (ESC starts a terminal
  escape sequence) or forge a log line (a newline); :func:`escape_controls` shows it as Python
  writes it in a string literal (``\\x1b``, ``\\n``), and :class:`ControlEscaping` does so for the
  names every log record of a run carries.
- CSVs from others: :func:`bounded_csv_rows` reads one line at a time with a limit on each line
  and each record, so a 1 GB line is refused after its first 64 KiB, by its line number, and never
  held in memory; cells must be UTF-8 (strict: no byte is smuggled through as a lone surrogate)
  without NUL.
"""

from __future__ import annotations

import csv
import dataclasses
import logging
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import BinaryIO

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
# C0 and C1 controls, DEL, the Unicode line and paragraph separators, and the bidirectional
# overrides and isolates (they reorder what a terminal shows: "Trojan Source")
_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def csv_text(cell: object) -> str:
    """A text cell for a CSV a person may open in a spreadsheet: ``'`` before one that starts with
    ``= + - @``, a tab or a CR, so it is shown as text and never run as a formula."""
    text = "" if cell is None else str(cell)
    return f"'{text}" if text.startswith(_FORMULA_START) else text


def escape_controls(text: str, keep: str = "") -> str:
    """``text`` with each control character (those of ``keep`` aside) written as in a Python
    string literal: ``\\n``, ``\\x1b``, ``\\u202e``."""

    def escaped(match: re.Match) -> str:
        char = match.group()
        if char in keep:
            return char
        code = ord(char)
        return _NAMED.get(char) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")

    return _CONTROLS.sub(escaped, text)


def has_controls(text: str) -> bool:
    return _CONTROLS.search(text) is not None


def _escaped_argument(value: object) -> object:
    """A log record's argument: numbers as they are (``%d`` and ``%.2f`` still apply); anything else
    whose text holds a control character, as that text escaped."""
    if value is None or isinstance(value, (bool, int, float)):
        return value
    text = str(value)
    return escape_controls(text) if has_controls(text) else value


class ControlEscaping(logging.Filter):
    """Escapes control characters in every log record: in its arguments, where the names are (all
    of them, newlines too); a record without arguments keeps its newlines and tabs, which are the
    code's own layout (a redacting filter before this one has already folded the arguments in, but
    names there are tokens). Install with :func:`escaping_logs`."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_eegfm_escaped", False):  # each handler, and a record held and released, pass again
            return True
        if isinstance(record.args, Mapping):
            record.args = {key: _escaped_argument(value) for key, value in record.args.items()}
        elif record.args:
            record.args = tuple(_escaped_argument(value) for value in record.args)
        elif isinstance(record.msg, str):
            record.msg = escape_controls(record.msg, keep="\n\t")
        record._eegfm_escaped = True
        return True


class escaping_logs:  # noqa: N801 (a context manager, used as ``with escaping_logs():``)
    """:class:`ControlEscaping` on every handler the root logger has on entry, until exit. Install
    it after a redacting filter: the scrubber must see the names as they are to replace them."""

    def __init__(self) -> None:
        self.filter = ControlEscaping()
        self.handlers: list[logging.Handler] = []

    def __enter__(self) -> escaping_logs:
        self.handlers = list(logging.getLogger().handlers)
        for handler in self.handlers:
            handler.addFilter(self.filter)
        return self

    def __exit__(self, *_) -> None:
        for handler in self.handlers:
            handler.removeFilter(self.filter)


@dataclasses.dataclass(frozen=True)
class CsvLimits:
    """How much of a CSV one line and one record (a quoted cell may span lines) may hold, in bytes."""

    line_bytes: int = 64 * 1024
    record_bytes: int = 256 * 1024


class _BoundedLines:
    """A binary file's lines, decoded as UTF-8, each at most ``limits.line_bytes`` and each record
    (the lines since :meth:`next_record`) at most ``limits.record_bytes``; ValueError naming the line."""

    def __init__(self, fh: BinaryIO, what: str, limits: CsvLimits) -> None:
        self.fh, self.what, self.limits = fh, what, limits
        self.number = 0  # the line last read
        self.record = 0  # bytes of the record read so far

    def __iter__(self) -> _BoundedLines:
        return self

    def __next__(self) -> str:
        raw = self.fh.readline(self.limits.line_bytes + 1)  # never more: a 1 GB line stays on disk
        if not raw:
            raise StopIteration
        self.number += 1
        if len(raw) > self.limits.line_bytes and not raw.endswith(b"\n"):
            raise ValueError(f"{self.what} line {self.number}: expected at most {self.limits.line_bytes} bytes a line")
        self.record += len(raw)
        if self.record > self.limits.record_bytes:
            raise ValueError(
                f"{self.what} line {self.number}: a row over {self.limits.record_bytes} bytes (a quoted cell "
                "across lines?); expected shorter rows"
            )
        if b"\x00" in raw:  # no text holds one, and Python 3.11's csv module lets it through
            raise ValueError(f"{self.what} line {self.number}: a NUL byte; expected text")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            raise ValueError(
                f"{self.what} line {self.number}: byte {err.start + 1} is not UTF-8; expected UTF-8 text"
            ) from None
        return text.removeprefix("\ufeff") if self.number == 1 else text

    def next_record(self) -> None:
        self.record = 0


def bounded_csv_rows(path: str | Path, what: str, limits: CsvLimits = CsvLimits()) -> Iterator[tuple[int, list[str]]]:
    """Each row of the CSV file at ``path`` as ``(line, cells)``, ``line`` the number of the line
    it ends on; ValueError (``"<what> line N: ..."``) for a line or row over ``limits``, bytes that
    are not UTF-8 (a byte-order mark may open the file), a NUL byte, or a row the csv module refuses."""
    with open(path, "rb") as fh:
        lines = _BoundedLines(fh, what, limits)
        reader = csv.reader(lines)
        while True:
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as err:
                raise ValueError(f"{what} line {lines.number}: {err}; expected a CSV row") from None
            lines.next_record()
            yield reader.line_num, cells
