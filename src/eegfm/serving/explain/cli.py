"""``eegfm-predict --explain``: each scored recording's most confident windows explained.

The windows are cut again by the pipeline (``process_recording``, as the predictor cut them, so
a window's index ``k`` is its row among the recording's rows of predictions.csv in time order),
scored by the torch model, and the ``--explain_max_windows`` with the highest predicted-class
probability are explained by ``inference.explain.attribution``. Written beside the predictions:

- ``explanations/NNN_<token>_w<k>.json``: ``serving.explain.report.explanation_json`` plus the
  recording's index and name (its keyed token under redaction, as everywhere in predict's outputs);
- ``explanations/NNN_<token>_w<k>.png``: ``serving.explain.plot``'s figure;
- in recordings.json, per explained recording, ``explanations``: each window's ``k``, start,
  predicted label, ``explanation_reliable``, ``why`` and the two files.

A regression head has no classes to explain; its recordings are left without explanations.
"""

from __future__ import annotations

import argparse
import heapq
import json
import re
import secrets
from pathlib import Path
from typing import Any

import torch
from threadpoolctl import threadpool_limits
from tqdm import tqdm

from eegfm.contract.schema import SFREQ
from eegfm.core.logs import get_logger

log = get_logger(__name__)


def file_stem(index: int, name: str, k: int) -> str:
    """``NNN_<stem>_w<k>``: ``name`` is the recording's token under redaction (as timelines/ names it)."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", name.rstrip("/").rsplit("/", 1)[-1].rsplit(".", 1)[0])[:60]
    return f"{index:03d}_{stem}_w{k}"


def _most_confident_windows(predictor, model, item, count: int) -> tuple[list[tuple], list[float]]:
    """The ``count`` windows of ``item`` with the highest top probability, as (probability,
    start_s, record) in time order, and every window's start (s)."""
    # the model's classes and the pipeline (transformers, mne): not for eegfm-predict --help
    from eegfm.inference.model_inputs import model_inputs
    from eegfm.pipelines.job.process import Window, process_recording

    best: list[tuple] = []
    starts: list[float] = []
    key, config = secrets.token_bytes(32), predictor.preprocess  # pseudonyms stay inside the records
    with threadpool_limits(limits=1, user_api="blas"):
        for event in process_recording(item, key, config, config.config_hash()):
            if not isinstance(event, Window):
                continue
            with torch.no_grad():
                logits = model(**model_inputs([event.record], model.config)).logits
            top = float(predictor.outputs_of(logits).max())
            start = float(event.record.window_start_s)
            starts.append(start)
            heapq.heappush(best, (top, -start, len(starts), event.record))
            if len(best) > count:
                heapq.heappop(best)
    return sorted(((p, -s, record) for p, s, _, record in best), key=lambda w: w[1]), sorted(starts)


def _explain_recording(summary: dict, item, predictor, model, randomised, config, output: Path) -> list[dict]:
    # the model's classes (transformers) and matplotlib: not for eegfm-predict --help
    from eegfm.inference.explain.attribution import explain_window
    from eegfm.inference.model_inputs import model_inputs
    from eegfm.serving.explain.plot import plot_explanation
    from eegfm.serving.explain.report import explanation_json

    chosen, starts = _most_confident_windows(predictor, model, item, config.max_windows)
    entries = []
    for _, start, record in chosen:
        k = starts.index(start)
        inputs = model_inputs([record], model.config)
        explanation = explain_window(
            model, inputs, list(predictor.labels), config, temperature=predictor.temperature, randomised=randomised
        )
        stem = file_stem(summary["index"], summary["input"], k)
        report = {
            "recording": summary["index"],
            "input": summary["input"],
            "window": k,
            "duration_s": record.n_times / SFREQ,
            **explanation_json(explanation, config, start_s=start),
        }
        (output / "explanations").mkdir(parents=True, exist_ok=True)
        (output / "explanations" / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
        title = f"{summary['index']:03d} {summary['input']}, window {k} at {start:.1f} s"
        plot_explanation(explanation, inputs["eeg"][0].numpy(), title, output / "explanations" / f"{stem}.png")
        entries.append(
            {
                "window": k,
                "start_s": round(start, 3),
                "predicted": report["predicted"],
                "explanation_reliable": explanation.reliable,
                "why": explanation.why,
                "json": f"explanations/{stem}.json",
                "png": f"explanations/{stem}.png",
            }
        )
    return entries


def explain_recordings(args: argparse.Namespace, predictor, items: list, recordings: list[dict[str, Any]]) -> int:
    """With ``--explain``: each processed recording's windows explained into ``args.output`` and
    its summary's ``explanations``; the number of windows explained (0 without ``--explain``)."""
    if not getattr(args, "explain", False):
        return 0
    if predictor.head == "regression":
        log.warning("--explain: a regression model's value has no classes to explain; no explanations written")
        return 0
    # the model's classes (transformers): not for eegfm-predict --help
    from eegfm.inference.explain.attribution import ExplainConfig
    from eegfm.inference.explain.checks import randomised_copy
    from eegfm.model.architectures import load_model_folder

    config = ExplainConfig(steps=args.explain_steps, max_windows=args.explain_max_windows)
    model = load_model_folder(predictor.model_dir).float().eval()  # eegfm, ensemble ...
    if getattr(model, "main_input_name", "eeg") != "eeg":
        log.warning(
            "--explain: this %s reads no EEG, so its integrated gradients over the EEG would be 0; "
            "no explanations written (an ensemble's are those of its EEG members)",
            type(model).__name__,
        )
        return 0
    randomised = randomised_copy(model, config.seed)  # one copy for every window: the same random model
    explained = 0
    for summary in tqdm(recordings, desc="explaining", unit="rec", disable=None):
        if summary["status"] != "processed":
            continue
        item = items[summary["index"] - 1]  # predict_items numbers the items from 1
        summary["explanations"] = _explain_recording(summary, item, predictor, model, randomised, config, args.output)
        explained += len(summary["explanations"])
        unreliable = [e for e in summary["explanations"] if not e["explanation_reliable"]]
        if unreliable:
            log.warning(
                "%s: %d of %d explanations unreliable (%s)",
                summary["input"],
                len(unreliable),
                len(summary["explanations"]),
                unreliable[0]["why"],
            )
    return explained
