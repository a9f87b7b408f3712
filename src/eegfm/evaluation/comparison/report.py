"""A benchmark's results as ``benchmark.json`` (flat ``method.split.metric`` keys), ``benchmark.md``
(a table like the papers', published numbers beside it) and ``benchmark.png``."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

# What the papers and model cards report on eegmat's published split (subjects 32-35 as test).
PUBLISHED_EEGMAT: tuple[tuple[str, dict[str, float], str], ...] = (
    ("CBraMod", {"balanced_accuracy": 0.726, "auroc": 0.791}, "Wang et al., ICLR 2025, Table 4"),
    ("CBraMod, independent rerun", {"balanced_accuracy": 0.589}, "rerun of the released code on this split"),
    ("REVE-base", {"balanced_accuracy": 0.766}, "REVE model card"),
    ("NeurIPT", {"balanced_accuracy": 0.865, "auroc": 0.911}, "NeurIPT paper"),
)
SPLIT_NAMES = {"dev": "val", "eval": "test", "heldout": "heldout"}


def summarize(values: Sequence[float]) -> dict[str, float | list[float]]:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return {
        "mean": float(np.mean(finite)) if finite else math.nan,
        "std": float(np.std(finite)) if len(finite) > 1 else 0.0 if finite else math.nan,
        "runs": [float(v) for v in values],
    }


def flat_results(results: Mapping[str, Mapping[str, Mapping[str, Sequence[float]]]]) -> dict[str, dict]:
    """``{method: {split: {metric: [value per seed]}}}`` as ``{"method.split.metric": summary}``."""
    return {
        f"{method}.{split}.{metric}": summarize(values)
        for method, splits in results.items()
        for split, metrics in splits.items()
        for metric, values in metrics.items()
    }


def _cell(summary: Mapping[str, float] | None) -> str:
    if not summary or not math.isfinite(summary["mean"]):
        return "—"
    runs = len(summary["runs"])
    return f"{summary['mean']:.3f} ± {summary['std']:.3f}" if runs > 1 else f"{summary['mean']:.3f}"


def _splits(flat: Mapping[str, Mapping]) -> list[str]:
    """The splits of the window-level keys (``method.split.metric``), in report order."""
    found = {key.split(".")[1] for key in flat if key.count(".") == 2}
    return sorted(found, key=["val", "test", "heldout"].index)


def _interval_cell(summary: Mapping | None, interval: Mapping | None) -> str:
    cell = _cell(summary)
    if cell == "—" or not interval or not math.isfinite(interval.get("low", math.nan)):
        return cell
    return f"{cell} [{interval['low']:.3f}, {interval['high']:.3f}]"


def _level_table(flat: Mapping, methods: Mapping[str, str], metrics: Sequence[str], split: str, level: str) -> list:
    if not any(f"{name}.{split}.{level}.{m}" in flat for name in methods for m in metrics):
        return []
    people = next(
        (
            flat[k]["people"]
            for k in flat
            if k.startswith(f"{next(iter(methods))}.{split}.{level}.") and "people" in flat[k]
        ),
        None,
    )
    what = f"{split}, per {level}" + (f" ({people} people; 95 % interval over people)" if people else "")
    lines = [f"### {what}", "", "| method | " + " | ".join(metrics) + " |", "|---" * (len(metrics) + 1) + "|"]
    for name in methods:
        cells = [
            _interval_cell(flat.get(f"{name}.{split}.{level}.{m}"), flat.get(f"{name}.{split}.{level}.{m}_ci"))
            for m in metrics
        ]
        lines.append(f"| `{name}` | " + " | ".join(cells) + " |")
    return [*lines, ""]


def markdown(
    title: str,
    flat: Mapping[str, Mapping],
    methods: Mapping[str, str],
    metrics: Sequence[str],
    notes: Sequence[str] = (),
    published: Sequence[tuple[str, Mapping[str, float], str]] = (),
    levels: Sequence[str] = ("recording", "subject"),
) -> str:
    """One table per split present: a row per method (mean ± std over seeds), the published rows
    under the test split alone (theirs is a test split); then per split and level (``levels``)
    the recording- and person-level metrics with their intervals over people."""
    lines = [f"# {title}", ""]
    splits = _splits(flat)
    for split in splits:
        lines += [f"## {split}", "", "| method | " + " | ".join(metrics) + " |", "|---" * (len(metrics) + 1) + "|"]
        for name, description in methods.items():
            cells = [_cell(flat.get(f"{name}.{split}.{metric}")) for metric in metrics]
            lines.append(f"| {description} (`{name}`) | " + " | ".join(cells) + " |")
        if split == "test":
            for name, numbers, source in published:
                cells = [f"{numbers[m]:.3f}" if m in numbers else "—" for m in metrics]
                lines.append(f"| {name} (published, test split; {source}) | " + " | ".join(cells) + " |")
        lines.append("")
        for level in levels:
            lines += _level_table(flat, methods, metrics, split, level)
    if published and "test" not in splits:
        notes = [*notes, "published numbers are on the corpus's test split, which this run has not: not shown"]
    lines += [f"- {note}" for note in notes]
    return "\n".join(lines) + "\n"


def chosen_markdown(run: Mapping) -> str:
    """What validation chose in the run (every ``*.chosen`` entry, the ranking, the export)."""
    lines = ["", "## What validation chose", ""]
    for key in sorted(k for k in run if k.endswith(".chosen")):
        lines.append(f"- `{key}`: {json.dumps(run[key], default=str)}")
    if run.get("ranked_on_validation"):
        lines.append(f"- rows by validation score, best first: {', '.join(run['ranked_on_validation'])}")
    if run.get("exported"):
        lines.append(f"- exported: `{run['exported']['row']}` (model {run['exported']['model_index'] + 1} of the row)")
    return "\n".join(lines) + "\n"


def plot(path: Path, flat: Mapping[str, Mapping], methods: Sequence[str], metrics: Sequence[str], title: str) -> None:
    """Grouped bars (mean, error bar: std over seeds) per metric, one panel per split."""
    from matplotlib.figure import Figure  # heavy: only when the figure is drawn

    splits = _splits(flat)
    fig = Figure(figsize=(6 * len(splits) + 2, 4), layout="constrained")
    axes = fig.subplots(1, len(splits), squeeze=False)
    width = 0.8 / max(len(methods), 1)
    for ax, split in zip(axes[0], splits):
        for i, method in enumerate(methods):
            stats = [flat.get(f"{method}.{split}.{m}", {"mean": math.nan, "std": 0.0}) for m in metrics]
            xs = np.arange(len(metrics)) + i * width
            ax.bar(xs, [s["mean"] for s in stats], width, yerr=[s["std"] for s in stats], label=method, capsize=2)
        ax.set_xticks(np.arange(len(metrics)) + 0.4 - width / 2, metrics)
        ax.set_title(f"{title}: {split}")
        ax.grid(axis="y", alpha=0.3)
    # Beside the panels, not over them: a low metric's bars (AUPRC) would hide behind it.
    fig.legend(*axes[0][0].get_legend_handles_labels(), fontsize=8, loc="outside right center")
    fig.savefig(path, dpi=120)


def write(output: Path, flat: Mapping[str, Mapping], extra: Mapping, text: str, figure) -> None:
    output.mkdir(parents=True, exist_ok=True)
    document = {"run": dict(extra), **flat}  # results keyed "method.split.metric"; "run" says how
    (output / "benchmark.json").write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
    (output / "benchmark.md").write_text(text, encoding="utf-8")
    figure(output / "benchmark.png")
