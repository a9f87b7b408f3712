"""Leave-one-site-out evaluation: how a fine-tuned model does at a hospital it never saw.

    python -m eegfm.evaluation.loso --pretrained runs/pt/model --data OUT/tfrecords --task hms6 \
        --output runs/loso [any training.finetune option]

A model can beat the class prior at the hospitals it was fitted on and lose to it at the next
(other montage, amplifiers, population, labelling habits), which a random split of patients
hides. Each site with labeled windows is in turn the test split of one ``training.finetune`` run
(``OUTPUT/<site>/``) that trains and validates on the other sites; ``OUTPUT/loso.json`` gathers the
folds' test metrics beside their baselines with mean, spread and worst site, ``OUTPUT/loso.png``
draws them. Finished folds are kept and unfinished ones resume, so an interrupted run picks up.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import re
import statistics
import sys
import time
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eegfm.contract import layout
from eegfm.core.allocator import keep_freed_memory
from eegfm.core.config import ConfigError
from eegfm.core.logs import get_logger, setup_logging
from eegfm.core.tasks import FINETUNE_TASKS
from eegfm.core.threads import fair_threads
from eegfm.metrics.plots import plot_per_site
from eegfm.training import finetune
from eegfm.training.config_files import dotted
from eegfm.training.finetune import FinetuneJob

if TYPE_CHECKING:
    from eegfm.training.config import FinetuneConfig

log = get_logger(__name__)
REPORT_NAME, PLOT_NAME = "loso.json", "loso.png"
# eval.json's test metrics that every fold's summary averages, where all folds have them
_SUMMARIZED = tuple(
    "kl baseline_kl kl_vs_baseline loss baseline_loss accuracy balanced_accuracy auroc auprc cohen_kappa "
    "f1_weighted ece brier r2".split()
)


def build_parser() -> argparse.ArgumentParser:
    parser = finetune.build_parser()
    parser.prog = "eegfm-loso"
    parser.description = (
        "Leave-one-site-out evaluation: one fine-tuning run per site with labeled windows of the task, "
        "that site held out as the test split and the others' subjects trained and validated on; writes each "
        f"fold's run folder, {REPORT_NAME} (test metrics per site beside the class prior's, mean, spread, worst "
        f"site) and {PLOT_NAME}. Every training.finetune option applies to each fold; an interrupted "
        "evaluation resumes where it stopped."
    )
    for action in parser._actions:
        if action.dest == "output":
            action.help = f"evaluation folder: <site>/ (each fold's fine-tuning run folder), {REPORT_NAME}, {PLOT_NAME}"
    parser.add_argument(
        "--sites",
        nargs="+",
        default=None,
        metavar="SITE",
        help="the sites to hold out in turn (pseudonyms, as in the manifest's counts.per_site); "
        "default: every site with labeled windows of the task. The folds still train on all "
        "the other sites",
    )
    return parser


def fold_folder(output: Path, site: str) -> Path:
    """The run folder of the fold that holds ``site`` out (a pseudonym; anything else made safe)."""
    return output / re.sub(r"[^A-Za-z0-9_.-]", "_", site)


def summarize(folds: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Mean, standard deviation (each site counts once) and range of every test metric all folds
    report, and the site where the model fares worst against its baseline."""
    tests = {site: fold["test"] for site, fold in folds.items()}
    summary: dict[str, Any] = {"n_sites": len(tests)}
    for key in _SUMMARIZED:
        values = [t[key] for t in tests.values() if key in t and not math.isnan(t[key])]
        if values and len(values) == len(tests):
            spread = statistics.stdev(values) if len(values) > 1 else 0.0
            summary[key] = {"mean": statistics.fmean(values), "std": spread, "min": min(values), "max": max(values)}
    value, baseline = ("kl", "baseline_kl") if all("kl" in t for t in tests.values()) else ("loss", "baseline_loss")
    if ratios := {site: t[value] / t[baseline] for site, t in tests.items() if t.get(baseline, 0) > 0}:
        worst = max(ratios, key=ratios.get)
        summary["vs_baseline"] = {
            "metric": value,
            "mean_ratio": sum(ratios.values()) / len(ratios),
            "worst_site": worst,
            "worst_ratio": ratios[worst],
            "sites_worse_than_baseline": sorted(s for s, r in ratios.items() if r >= 1.0),
        }
    return summary


def write_report(output: Path, folds: Mapping[str, Mapping[str, Any]], task: str, record_task: str) -> dict[str, Any]:
    """loso.json and loso.png from the folds' eval.json contents."""
    report = {
        "task": task,
        "record_task": record_task,
        "summary": summarize(folds),
        "sites": {
            site: {"val": fold.get("val", {}), **{k: fold[k] for k in ("test", "groups", "windows")}}
            for site, fold in folds.items()
        },
    }
    partial = output / f".{REPORT_NAME}.partial"
    partial.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    partial.replace(output / REPORT_NAME)
    vs = report["summary"].get("vs_baseline")
    title = f"leave-one-site-out, {task}: {len(folds)} site{'s' * (len(folds) != 1)} each unseen in training"
    if vs:
        title += f"; mean {vs['metric']} {vs['mean_ratio']:.2f}x the class prior's, worst {vs['worst_ratio']:.2f}x"
    plot_per_site({site: fold["test"] for site, fold in folds.items()}, title, output / PLOT_NAME)
    return report


# run settings that change no number of a fold
_BOOKKEEPING = ("wandb", "log_every", "save_every", "keep_last", "backend")


def fold_differences(folder: Path, expected: Mapping[str, Any]) -> list[str]:
    """The settings (dotted) where a finished fold's run.json differs from ``expected`` (its config,
    ``pretrained`` and ``data``); [] when the fold is this evaluation's."""
    try:
        ran = json.loads((folder / layout.RUN).read_text())
    except (OSError, ValueError):
        return ["run.json (missing or unreadable)"]
    config = dotted({k: v for k, v in ran.get("config", {}).items() if k not in _BOOKKEEPING})
    wanted = dotted({k: v for k, v in expected["config"].items() if k not in _BOOKKEEPING})
    differ = [k for k in sorted(set(config) | set(wanted)) if config.get(k) != wanted.get(k)]
    return differ + [k for k in ("pretrained", "data") if ran.get(k) != expected[k]]


def _plan(args) -> tuple[Any, str, Counter, list[str]]:
    """The fine-tuning config, record task, labeled windows per site and sites to hold out;
    ConfigError where the command line cannot make a leave-one-site-out evaluation."""
    # Here, not at the top: they import torch, which --help does without (tests/test_commands.py)
    from eegfm.training.data import RecordFilter, check_data, data_label, scan_windows
    from eegfm.training.finetune.initial_model import resolve_pretrained
    from eegfm.training.finetune.plan import is_labeled

    cfg = finetune.config_from_args(args)
    if cfg.test_sites or cfg.test_fraction or cfg.corpus_split:
        raise ConfigError(
            "test_sites, test_fraction, corpus_split: leave-one-site-out makes each site the test "
            f"split in turn; expected none of them set; got {cfg.test_sites}, {cfg.test_fraction}, "
            f"{cfg.corpus_split}"
        )
    resolve_pretrained(args.pretrained)
    record_task = args.record_task or FINETUNE_TASKS.get(cfg.task)
    if record_task is None:
        raise ConfigError(f"--record_task: task {cfg.task!r} needs the `task` value its windows carry")
    windows = scan_windows(check_data(args.data, True, cfg.allow_partial), RecordFilter(tasks=(record_task,)))
    found = Counter(w["site_id"] for w in windows if is_labeled(w, cfg))  # labeled windows per site
    if len(found) < 2:
        raise ConfigError(
            f"--data {data_label(args.data)}: {len(found)} site(s) with labeled windows of "
            f"{record_task!r} ({', '.join(sorted(found)) or 'none'}); leave-one-site-out needs at "
            "least 2, one to test on and one to train on"
        )
    sites = sorted(found) if args.sites is None else list(dict.fromkeys(args.sites))
    if unknown := [s for s in sites if s not in found]:
        raise ConfigError(
            f"--sites: {', '.join(unknown)} has no labeled window of {record_task!r} in "
            f"{data_label(args.data)}; expected some of {', '.join(sorted(found))}"
        )
    return cfg, record_task, found, sites


def _keep_finished_fold(args, cfg, folder: Path, site: str, k: int, n: int) -> bool:
    """Whether the finished fold in ``folder`` ran with this evaluation's settings (else the
    settings that differ go to stderr)."""
    expected = {
        "config": dataclasses.replace(cfg, test_sites=[site]).to_dict(),
        "pretrained": str(args.pretrained),
        "data": list(args.data),
    }
    if differ := fold_differences(folder, expected):
        print(
            f"loso: {folder} holds a fold run with other settings ({', '.join(differ)}); give another "
            "--output, or delete that folder to run the fold again",
            file=sys.stderr,
        )
        return False
    done = folder / layout.EVAL
    log.info("fold %d/%d (%s held out): done earlier, %s kept (delete the folder to run it again)", k, n, site, done)
    return True


def _run_fold(
    cfg: FinetuneConfig, job: FinetuneJob, output: Path, folder: Path, site: str, windows: int, k: int, n: int
) -> int:
    """Fine-tune the fold that holds ``site`` out into ``folder`` (``cfg`` and ``job``: the
    evaluation's own); its exit status."""
    log.info("fold %d/%d: %s held out, %d windows", k, n, site, windows)
    started = time.time()
    fold = dataclasses.replace(job, run=dataclasses.replace(job.run, output=folder))
    status = finetune.finetune(cfg.with_settings({"test_sites": [site]}), fold)
    if status != 0:
        log.error(
            "fold %d/%d (%s held out) exited with status %d; the folds before it are in %s; run the "
            "same command again to go on",
            k,
            n,
            site,
            status,
            output,
        )
        return status
    log.info("fold %d/%d done in %.0f s", k, n, time.time() - started)
    return 0


def main(argv: list[str] | None = None) -> int:
    fair_threads()  # before any work: core/threads.py
    keep_freed_memory()  # a training step's freed tensors stay for the next: core/allocator.py
    args = build_parser().parse_args(argv)
    from eegfm.training.data import data_label  # after --help: it imports torch

    setup_logging("INFO")
    try:
        cfg, record_task, found, sites = _plan(args)
        job = finetune.job_from_args(args)
    except ConfigError as err:
        print(f"loso: {err}", file=sys.stderr)
        return 2
    # Under torchrun every rank runs every fold together; rank 0 writes what the folds report.
    main_rank = os.environ.get("RANK", "0") == "0"
    if not main_rank:
        setup_logging("WARNING")
    args.output.mkdir(parents=True, exist_ok=True)
    windows = ", ".join(f"{s}: {found[s]} windows" for s in sites)
    log.info("leave-one-site-out over %d sites of %s (%s)", len(sites), data_label(args.data), windows)
    folds: dict[str, dict[str, Any]] = {}
    for k, site in enumerate(sites, 1):
        folder = fold_folder(args.output, site)
        done = folder / layout.EVAL
        if done.is_file():
            if not _keep_finished_fold(args, cfg, folder, site, k, len(sites)):
                return 2
        elif status := _run_fold(cfg, job, args.output, folder, site, found[site], k, len(sites)):
            return status
        if main_rank:  # the other ranks may get here before rank 0 has written eval.json
            folds[site] = json.loads(done.read_text())
    if not main_rank:
        return 0
    report = write_report(args.output, folds, cfg.task, record_task)
    if vs := report["summary"].get("vs_baseline"):
        worse = ", ".join(vs["sites_worse_than_baseline"])
        log.info(
            "leave-one-site-out: mean test %s %.2fx the class prior's over %d sites; worst %s at %.2fx%s",
            vs["metric"],
            vs["mean_ratio"],
            len(folds),
            vs["worst_site"],
            vs["worst_ratio"],
            f"; worse than the prior at {worse}" if worse else "",
        )
    log.info("wrote %s and %s", args.output / REPORT_NAME, args.output / PLOT_NAME)
    return 0


if __name__ == "__main__":
    sys.exit(main())
