"""The report as one self-contained HTML file (CSS inline, every figure a base64 PNG data URI,
nothing fetched) and as Markdown with its figures in a folder beside it. The sections given are
drawn whole: one without its inputs is left out by the caller (``cli.write_report``)."""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from pathlib import Path

from eegfm.evaluation.report.document import Section, Table

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1d2330;
       max-width: 1100px; margin: 2em auto; padding: 0 1.2em; line-height: 1.45; }
h1 { font-size: 1.7em; margin-bottom: 0.2em; } h2 { margin-top: 2em; border-bottom: 2px solid #d8dde6; }
.meta { color: #5b6475; font-size: 0.92em; }
nav ol { columns: 2; font-size: 0.95em; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.9em; }
th, td { border: 1px solid #d8dde6; padding: 0.3em 0.6em; text-align: left; vertical-align: top; }
th { background: #f1f4f8; } tr:nth-child(even) td { background: #fafbfc; }
caption { text-align: left; font-weight: 600; padding: 0.3em 0; }
.figures { display: flex; flex-wrap: wrap; gap: 1em; align-items: flex-start; }
figure { margin: 0.6em 0; max-width: 100%; }
figure img { max-width: 100%; max-height: 640px; width: auto; height: auto; border: 1px solid #e4e8ee; }
ul.summary li { margin: 0.25em 0; }
figcaption { color: #5b6475; font-size: 0.88em; }
"""


def _table_html(table: Table) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in table.header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in table.rows)
    caption = f"<caption>{html.escape(table.caption)}</caption>" if table.caption else ""
    return f"<table>{caption}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _section_html(section: Section) -> str:
    parts = [f'<section id="{section.key}"><h2>{html.escape(section.title)}</h2>']
    parts += [f"<p>{html.escape(p)}</p>" for p in section.paragraphs]
    parts += [_table_html(t) for t in section.tables]
    if section.points:
        parts.append('<ul class="summary">' + "".join(f"<li>{html.escape(p)}</li>" for p in section.points) + "</ul>")
    figures = []
    for picture in section.pictures:
        data = base64.b64encode(picture.png).decode("ascii")
        alt = html.escape(picture.caption, quote=True)
        figures.append(
            f'<figure><img src="data:image/png;base64,{data}" alt="{alt}">'
            f"<figcaption>{html.escape(picture.caption)}</figcaption></figure>"
        )
    if figures:
        parts.append('<div class="figures">' + "".join(figures) + "</div>")
    return "\n".join(parts) + "</section>"


def to_html(title: str, meta: Sequence[str], sections: Sequence[Section]) -> str:
    """The whole report as one HTML document; it references no file and no URL."""
    toc = "".join(f'<li><a href="#{s.key}">{html.escape(s.title)}</a></li>' for s in sections)
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>",
            f"<h1>{html.escape(title)}</h1>",
            *(f'<p class="meta">{html.escape(line)}</p>' for line in meta),
            f"<nav><ol>{toc}</ol></nav>",
            *(_section_html(s) for s in sections),
            "</body></html>",
        ]
    )


def _table_markdown(table: Table) -> list[str]:
    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    return [
        *([f"*{table.caption}*", ""] if table.caption else []),
        "| " + " | ".join(map(cell, table.header)) + " |",
        "|" + "---|" * len(table.header),
        *("| " + " | ".join(map(cell, row)) + " |" for row in table.rows),
        "",
    ]


def to_markdown(title: str, meta: Sequence[str], sections: Sequence[Section], figures: Path) -> str:
    """The report as Markdown; its figures are written into ``figures`` and linked relative to the
    Markdown file, which sits beside that folder."""
    lines = [f"# {title}", "", *(f"{line}  " for line in meta), ""]
    figures.mkdir(parents=True, exist_ok=True)
    for section in sections:
        lines += [f"## {section.title}", ""]
        for paragraph in section.paragraphs:
            lines += [paragraph, ""]
        if section.points:
            lines += [*(f"- {point}" for point in section.points), ""]
        for table in section.tables:
            lines += _table_markdown(table)
        for picture in section.pictures:
            (figures / picture.name).write_bytes(picture.png)
            lines += [f"![{picture.caption}]({figures.name}/{picture.name})", ""]
    return "\n".join(lines)
