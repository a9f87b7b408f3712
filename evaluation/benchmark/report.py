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


def markdown(
    title: str,
    flat: Mapping[str, Mapping],
    methods: Mapping[str, str],
    metrics: Sequence[str],
    notes: Sequence[str] = (),
    published: Sequence[tuple[str, Mapping[str, float], str]] = (),
) -> str:
    """One table per split present: a row per method (mean ± std over seeds), then the published rows."""
    lines = [f"# {title}", ""]
    splits = sorted({key.split(".")[1] for key in flat}, key=["val", "test", "heldout"].index)
    for split in splits:
        lines += [f"## {split}", "", "| method | " + " | ".join(metrics) + " |", "|---" * (len(metrics) + 1) + "|"]
        for name, description in methods.items():
            cells = [_cell(flat.get(f"{name}.{split}.{metric}")) for metric in metrics]
            lines.append(f"| {description} (`{name}`) | " + " | ".join(cells) + " |")
        if split == "test" or (published and split == splits[-1]):
            for name, numbers, source in published:
                cells = [f"{numbers[m]:.3f}" if m in numbers else "—" for m in metrics]
                lines.append(f"| {name} (published, test split; {source}) | " + " | ".join(cells) + " |")
        lines.append("")
    lines += [f"- {note}" for note in notes]
    return "\n".join(lines) + "\n"


def plot(path: Path, flat: Mapping[str, Mapping], methods: Sequence[str], metrics: Sequence[str], title: str) -> None:
    """Grouped bars (mean, error bar: std over seeds) per metric, one panel per split."""
    from matplotlib.figure import Figure  # heavy: only when the figure is drawn

    splits = sorted({key.split(".")[1] for key in flat}, key=["val", "test", "heldout"].index)
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
