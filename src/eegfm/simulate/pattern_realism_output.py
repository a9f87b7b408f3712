"""The pattern realism report: episodes measured, summarized per class against their reference
ranges (:mod:`~simulate.pattern_realism`), written as ``pattern_realism.json`` and
``pattern_realism.md``.

``pattern_realism.json``::

    {"version": 1, "seed", "episodes_per_class", "sfreq",
     "classes": {class: {statistic: {"value", "span": [min, max], "episodes", "inside",
                                     "share_inside", "reference": {"low", "high", "kind", "source",
                                     "measured"}}}},
     "sources": {short name: full reference}}

A per-episode statistic's ``value`` is the median over the episodes that have it and ``inside``
says whether that median lies in the reference range (null where there is no range);
``share_inside`` is the fraction of episodes inside. A share (``share_*``) is the fraction of the
sample's seizures with the property, ``span`` its 95 % Wilson interval, and ``inside`` whether that
interval meets the reference range: a sample of 20 cannot tell 0.33 from 0.32.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from eegfm.simulate.pattern_realism import (
    PATTERN_CLASSES,
    SFREQ,
    SOURCES,
    Reference,
    measure,
    references,
    render_episode,
)

REPORT_VERSION = 1
POSTICTAL_RATIO = 2.0  # post-ictal delta power at least twice the pre-ictal: slowing present
AMPLITUDE_CATEGORIES = ((20.0, "very low"), (50.0, "low"), (200.0, "medium"), (math.inf, "high"))


def sample(
    n_per_class: int, seed: int = 0, classes: Iterable[str] = PATTERN_CLASSES, progress: Callable = iter
) -> dict[str, list[dict]]:
    """Each class's measured episodes: ``n_per_class`` drawn, rendered and measured."""
    if n_per_class < 1:
        raise ValueError(f"n_per_class: expected an integer >= 1; got {n_per_class}")
    out: dict[str, list[dict]] = {}
    for cls in progress(list(classes)):
        out[cls] = [measure(render_episode(cls, i, seed)) for i in range(n_per_class)]
    return out


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson score interval of a proportion."""
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def _values(cls: str, name: str, rows: list[dict]) -> list[float]:
    """The episodes' values of a per-episode statistic (those that have it)."""
    if name == "postictal_freq_hz":  # only seizures followed by delta have a post-ictal rhythm
        rows = [r for r in rows if r["postictal_delta_ratio"] >= POSTICTAL_RATIO]
    values = [float(r[name]) for r in rows]
    return [v for v in values if np.isfinite(v)]  # a seizure that never spreads far has no time


def _entry(name: str, reference: Reference, rows: list[dict], cls: str) -> dict:
    ref = {"low": reference.low, "high": reference.high, "kind": reference.kind, "source": reference.source}
    ref["measured"] = reference.measured
    if name.startswith("share_"):
        hits = [
            np.isfinite(r["spread_distant_s"])
            if name == "share_bilateral_spread"
            else r["postictal_delta_ratio"] >= POSTICTAL_RATIO
            for r in rows
        ]
        low, high = wilson(int(sum(hits)), len(hits))
        inside = reference.overlaps(low, high) if reference.has_range else None
        return {
            "value": float(np.mean(hits)),
            "span": [low, high],
            "episodes": len(hits),
            "inside": inside,
            "share_inside": None,
            "reference": ref,
        }
    values = _values(cls, name, rows)
    if not values:
        return {"value": None, "span": None, "episodes": 0, "inside": None, "share_inside": None, "reference": ref}
    median = float(np.median(values))
    entry = {"value": median, "span": [min(values), max(values)], "episodes": len(values), "reference": ref}
    entry["inside"] = reference.contains(median) if reference.has_range else None
    entry["share_inside"] = float(np.mean([reference.contains(v) for v in values])) if reference.has_range else None
    if name == "amplitude_uv":
        entry["category"] = next(label for bound, label in AMPLITUDE_CATEGORIES if median < bound)
    return entry


def summarize(measured: dict[str, list[dict]]) -> dict[str, dict[str, dict]]:
    """Per class, per statistic: the summary entry (module docstring)."""
    return {
        cls: {name: _entry(name, reference, rows, cls) for name, reference in references(cls).items()}
        for cls, rows in measured.items()
    }


def build_report(measured: dict[str, list[dict]], seed: int) -> dict:
    n = max(len(rows) for rows in measured.values())
    return {
        "version": REPORT_VERSION,
        "seed": seed,
        "episodes_per_class": n,
        "sfreq": SFREQ,
        "classes": summarize(measured),
        "sources": SOURCES,
    }


def _fmt(value: float | None) -> str:
    if value is None:
        return "–"
    if math.isinf(value):
        return "∞"
    return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"


def _range(ref: dict) -> str:
    low, high = ref["low"], ref["high"]
    if low is None and high is None:
        return "–"
    if high is None:
        return f"≥ {_fmt(low)}"
    return f"≤ {_fmt(high)}" if low is None or low == 0 else f"{_fmt(low)} – {_fmt(high)}"


def markdown_table(report: dict) -> str:
    """One row per class and statistic: the simulated median [min, max] (episodes), the reference
    range, its kind, whether the median lies inside (and the share of episodes that do), the source."""
    header = ["class", "statistic", "simulated", "reference", "kind", "inside", "source"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for cls, stats in report["classes"].items():
        for name, entry in stats.items():
            ref = entry["reference"]
            if entry["value"] is None:
                cell = "–"
            elif name.startswith("share_"):
                low, high = entry["span"]
                cell = f"{_fmt(entry['value'])} (95 % CI {_fmt(low)}–{_fmt(high)}; n={entry['episodes']})"
            else:
                low, high = entry["span"]
                cell = f"{_fmt(entry['value'])} [{_fmt(low)}, {_fmt(high)}] (n={entry['episodes']})"
                if "category" in entry:
                    cell += f", {entry['category']}"
            inside = {True: "yes", False: "**no**", None: "n/a"}[entry["inside"]]
            if entry.get("share_inside") is not None:
                inside += f" ({entry['share_inside']:.0%})"
            lines.append(f"| {cls} | `{name}` | {cell} | {_range(ref)} | {ref['kind']} | {inside} | {ref['source']} |")
    return "\n".join(lines)


def write_report(report: dict, output: Path) -> None:
    """``pattern_realism.json`` and ``pattern_realism.md`` under ``output``."""
    output.mkdir(parents=True, exist_ok=True)
    (output / "pattern_realism.json").write_text(json.dumps(report, indent=2) + "\n")
    judged = [e["inside"] for stats in report["classes"].values() for e in stats.values() if e["inside"] is not None]
    measured = "\n".join(
        f"- `{name}`: {entry['reference']['measured']}"
        for name, entry in {n: e for stats in report["classes"].values() for n, e in stats.items()}.items()
    )
    text = [
        "# Realism of the simulated patterns",
        "",
        f"{report['episodes_per_class']} episodes per class (seed {report['seed']}), drawn as a corpus draws them "
        "and rendered on an awake adult background at 200 Hz; statistics measured on the scalp potentials. "
        "Cells: median [min, max] over the episodes (n: those that have the statistic); `inside`: the median "
        "in the reference range (in brackets: the share of episodes inside); shares: the 95 % interval meets "
        "the range.",
        "",
        markdown_table(report),
        "",
        f"{sum(judged)} of {len(judged)} statistics with a reference range lie inside it.",
        "",
        "## Sources",
        "",
        *[f"- **{key}**: {text}" for key, text in report["sources"].items()],
        "",
        "## How each statistic is measured",
        "",
        measured,
        "",
    ]
    (output / "pattern_realism.md").write_text("\n".join(text))
