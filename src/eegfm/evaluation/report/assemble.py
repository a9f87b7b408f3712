"""The sections of ``eegfm-report`` (``evaluation.report.cli``): the fine-tuned model and each
leave-one-site-out fold scored on their held-out windows, then every section drawn from what
``discover`` found and those scores, the summary first."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch

from eegfm.contract import layout
from eegfm.core.config import ConfigError
from eegfm.core.logs import get_logger
from eegfm.core.stores import is_remote
from eegfm.evaluation.report import sections_checks, sections_data, sections_predictions, sections_shift, sections_sites
from eegfm.evaluation.report.discover import Found
from eegfm.evaluation.report.document import Section
from eegfm.evaluation.report.scoring import Scored, score_run
from eegfm.evaluation.report.sections_summary import summary_section

log = get_logger("eegfm.evaluation.report.cli")  # the command's one logger name


def _data_for(run: Path, args: argparse.Namespace, found: Found) -> Any:
    """The pipeline output(s) to score ``run`` on: --data, else those its run.json names, each as
    given where it exists, else the pipeline output found below the RUN_DIRs whose path ends with it
    (a run names its data relative to where it was started)."""
    if args.data:
        return [str(p) for p in args.data] if len(args.data) > 1 else str(args.data[0])
    named = json.loads((run / layout.RUN).read_text()).get("data") or []
    if not named:
        raise ConfigError(f"{run}/run.json: no 'data' field naming its pipeline output; pass --data")
    resolved = []
    for name in named:
        tail = Path(name).parts
        matches = [m for m in found.manifests if m.parts[-len(tail) :] == tail]
        if Path(name).is_dir() or is_remote(name):
            resolved.append(name)
        elif matches:
            resolved.append(str(matches[0]))
        else:
            raise ConfigError(
                f"{run}/run.json: its data {name} is neither a folder from here nor below the RUN_DIRs; pass --data"
            )
    return resolved if len(resolved) > 1 else resolved[0]


def _score_all(args: argparse.Namespace, found: Found) -> tuple[Scored | None, dict[str, Scored], str]:
    """The fine-tuned model's held-out windows and each fold's unseen site, scored; with the reason
    where the model's could not be."""
    if args.no_scoring:
        return None, {}, "Not scored (--no_scoring)."
    device = torch.device(
        "cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available()) else "cpu"
    )
    within, why = None, "No fine-tuned model (run.json, eval.json, model/) below the run folders."
    if found.finetuned is not None:
        try:
            within = score_run(found.finetuned, _data_for(found.finetuned, args, found), args.batch_size, device)
        except ConfigError as err:
            why = f"The fine-tuned model could not be scored: {err}"
            log.warning(why)
    unseen = {}
    for folder in found.loso:
        sites = json.loads((folder / "loso.json").read_text()).get("sites", {})
        for run in (r for r in found.finetune_runs if r.parent == folder):
            try:
                scored = score_run(run, _data_for(run, args, found), args.batch_size, device)
            except ConfigError as err:
                log.warning("leave-one-site-out fold %s not scored: %s", run, err)
                continue
            if scored.split == "test" and len(set(scored.sites.tolist())) == 1 and scored.sites[0] in sites:
                unseen[str(scored.sites[0])] = scored
    return within, unseen, why


def build_sections(args: argparse.Namespace, found: Found) -> list[Section]:
    within, unseen, why = _score_all(args, found)
    site_section = sections_sites.per_site_section(within, unseen, args.bootstrap, args.seed, why)
    groups = site_section.numbers.get("groups", {})
    sections = [
        sections_data.data_section(found),
        sections_data.curves_section(found),
        site_section,
        sections_checks.loso_section(found),
        sections_checks.confusion_section(found),
        sections_checks.calibration_section(found),
        sections_checks.robustness_section(found),
        sections_data.benchmark_section(found),
        sections_shift.embeddings_section(within, args.projection, args.seed, why),
        sections_shift.shift_section(within, groups, args.seed, why),
        sections_predictions.predictions_section(within, found),
        sections_data.explanations_section(found),
    ]
    return [summary_section(sections), *sections]
