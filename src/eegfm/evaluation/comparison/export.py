"""``--export DIR``: the row validation ranks first, as a model folder ``eegfm-predict``,
``eegfm-serve``, the page and ``eegfm-models`` load like a fine-tuned network.

The folder is the row's :class:`~eegfm.model.fused.FusedModel` (``fused.json`` and its parts:
networks as model folders, the readout's arrays in safetensors, EEGNet's weights), the
preprocessing recipe of the benchmark's windows (``preprocess.json``), and a card (``fused.json``'s
``card`` and ``README.md``): the row's name and description, what validation chose, the
benchmark's validation and test metrics of the exported model and of the row, and the date. Where
the row has a model per seed, the seed with the best validation score is exported.
"""

from __future__ import annotations

import datetime
import json
import math
import shutil
from pathlib import Path
from typing import Any

from eegfm.contract.preprocess_spec import save_preprocess_spec
from eegfm.core.logs import get_logger

log = get_logger(__name__)
CARD_FILE = "README.md"


def _model_metrics(results: dict[str, Any], index: int) -> dict[str, dict[str, float]]:
    """``{split[.level]: {metric: value}}`` of the ``index``-th model of a row's results."""
    return {key: {m: float(v[index]) for m, v in found.items()} for key, found in results.items()}


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    return value


def export_row(
    folder: Path, name: str, index: int, fitted, row_results: dict, flat: dict, suite, data: str
) -> dict[str, Any]:
    """Write model ``index`` of row ``name`` (``fitted``: its models; ``row_results``: its
    results) into ``folder``; returns what the run's record says of it."""
    model = fitted.models[index]
    card = {
        "row": name,
        "model_index": index,
        "models_in_row": len(fitted.models),
        "suite": suite.name,
        "title": suite.title,
        "labels": list(suite.classes),
        "chosen": fitted.chosen,
        "metrics": _finite(_model_metrics(row_results, index)),
        "row_metrics": _finite({k: v["mean"] for k, v in flat.items() if k.startswith(f"{name}.") and "mean" in v}),
        "exported": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "ranked_first_by": "the mean of the window-level validation balanced accuracy, AUROC and AUPRC",
    }
    model.card = card
    if folder.exists():
        shutil.rmtree(folder)  # an earlier export of another run: never mixed with this one
    model.save(folder)
    save_preprocess_spec([data], folder)
    (folder / CARD_FILE).write_text(card_markdown(card), encoding="utf-8")
    log.info("benchmark: exported row %s (model %d of %d) to %s", name, index + 1, len(fitted.models), folder)
    return {"row": name, "model_index": index, "folder": str(folder)}


def card_markdown(card: dict[str, Any]) -> str:
    """The card as a page a person reads."""
    lines = [f"# {card['row']}: {card['title']}", "", f"Exported {card['exported']} by `eegfm-benchmark`."]
    lines += [f"Classes, in output order: {', '.join(card['labels'])}.", ""]
    lines += [f"Ranked first among the run's rows by {card['ranked_first_by']}."]
    if card["models_in_row"] > 1:
        lines += [f"Model {card['model_index'] + 1} of the row's {card['models_in_row']} (one per seed)."]
    lines += ["", "| split | metric | this model |", "|---|---|---|"]
    for key, found in card["metrics"].items():
        for metric, value in found.items():
            lines.append(f"| {key} | {metric} | {'—' if value is None else f'{value:.3f}'} |")
    lines += ["", "What validation chose:", "", "```json", json.dumps(card["chosen"], indent=2, default=str), "```"]
    return "\n".join(lines) + "\n"
