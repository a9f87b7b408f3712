"""The report as data: sections of paragraphs, tables, PNG figures and the numbers behind them,
which ``render`` writes as HTML and Markdown and ``report.json`` holds."""

from __future__ import annotations

import dataclasses
import io
import math
from collections.abc import Sequence
from typing import Any


@dataclasses.dataclass
class Table:
    header: list[str]
    rows: list[list[str]]
    caption: str = ""  # a line above the table saying what its rows are


@dataclasses.dataclass
class Picture:
    """A PNG figure: ``name`` is its file name in the Markdown report's folder."""

    name: str
    png: bytes
    caption: str


@dataclasses.dataclass
class Section:
    """One part of the report. ``missing`` (a line saying which input is absent) replaces the
    content where the run folders lack this section's inputs."""

    key: str
    title: str
    paragraphs: list[str] = dataclasses.field(default_factory=list)
    points: list[str] = dataclasses.field(default_factory=list)  # a bulleted list after the paragraphs
    tables: list[Table] = dataclasses.field(default_factory=list)
    pictures: list[Picture] = dataclasses.field(default_factory=list)
    numbers: dict[str, Any] = dataclasses.field(default_factory=dict)
    missing: str | None = None


def missing(key: str, title: str, what: str) -> Section:
    return Section(key, title, missing=what)


def png_of(figure) -> bytes:
    """A matplotlib Figure as PNG bytes."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def fmt(value: Any, digits: int = 3) -> str:
    """A number for a table cell: ``digits`` decimals, an em dash for none or NaN."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    if isinstance(value, int):
        return str(value)
    return f"{value:.{digits}f}"


def interval(estimate: dict[str, Any], digits: int = 3) -> str:
    """``value [low, high]``, or the value alone where no interval exists."""
    text = fmt(estimate["value"], digits)
    if estimate.get("low") is None:
        return f"{text} (1 subject: no interval)"
    return f"{text} [{fmt(estimate['low'], digits)}, {fmt(estimate['high'], digits)}]"


def clean(value: Any) -> Any:
    """``value`` with NaN and infinities as None, numpy scalars as Python numbers: valid JSON."""
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def as_json(sections: Sequence[Section], header: dict[str, Any]) -> dict[str, Any]:
    """report.json: the header, then per section its title, what is missing and its numbers."""
    return clean(
        {
            **header,
            "sections": {
                s.key: {
                    "title": s.title,
                    "missing": s.missing,
                    "numbers": s.numbers,
                    "figures": [p.name for p in s.pictures],
                }
                for s in sections
            },
        }
    )
