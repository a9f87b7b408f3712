"""``python -m eegfm.evaluation.comparison {eegmat,folder,simulated}``: eegfm against baselines and
its own ablations, on the same windows and split, in one command; ``folder`` takes any labeled corpus."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from eegfm.core import stopwatch
from eegfm.core.allocator import keep_freed_memory
from eegfm.core.config import ConfigError
from eegfm.core.logs import setup_logging
from eegfm.core.threads import fair_threads
from eegfm.evaluation.comparison.methods import METHODS
from eegfm.evaluation.comparison.options import (
    DEFAULT_CONFIG,
    EEGMAT_METHODS,
    LAYOUTS,
    BenchmarkOptions,
    FolderOptions,
    SharedOptions,
    SimulatedOptions,
)
from eegfm.evaluation.comparison.rows import baseline_names


def _pretraining(parser: argparse.ArgumentParser, output: str) -> None:
    """The options of a run that pretrains: every suite, and the shared encoder's command
    (``output``: what its --output folder holds)."""
    parser.add_argument("--output", required=True, help=output)
    parser.add_argument("--config", default=DEFAULT_CONFIG, help="training preset or YAML file for every eegfm run")
    parser.add_argument("--pretrain_steps", type=int, default=None, help="pretraining steps; None: the preset's")
    parser.add_argument(
        "--unlabeled", nargs="+", default=[], metavar="DIR", help="more preprocessed folders for pretraining only"
    )
    parser.add_argument(
        "--pseudonym_key_file",
        default=None,
        help="your own pseudonym key (for data that is not a public corpus); default: the benchmarks' fixed key",
    )
    parser.add_argument(
        "--pretrain_set", action="append", default=[], metavar="KEY=VALUE", help="pretraining config override"
    )


def _common(parser: argparse.ArgumentParser, methods: list[str], suite: str = "labeled") -> None:
    """A suite's options: pretraining's, then its fine-tuning runs' and its baselines (``suite``:
    the registry's suite, ``rows.SUITES``)."""
    _pretraining(parser, "run folder: data, pretraining, runs, benchmark.{json,md,png}")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="fine-tuning seeds")
    parser.add_argument(
        "--reference_seeds",
        type=int,
        nargs="+",
        default=None,
        help="seeds of the rows eegfm is compared with (scratch, the 10 %% rows, cbramod*, labram*); default: "
        "the first of --seeds (each such run costs about as much as an eegfm run)",
    )
    parser.add_argument(
        "--methods",
        nargs="+",
        default=methods,
        choices=list(METHODS),
        help="fine-tuning methods to run (each a network row; eegfm's also makes the recipe and stack rows)",
    )
    parser.add_argument(
        "--baselines",
        nargs="+",
        default=baseline_names(suite),
        choices=baseline_names(suite),
        help="baseline rows to fit beside eegfm's (eegnet also makes eegnet_stack and, with several seeds, "
        "eegnet_ensemble)",
    )
    parser.add_argument(
        "--shared_encoder",
        default=None,
        metavar="MODEL_DIR",
        help="the shared encoder (`... benchmark pretrain`'s OUT/pretrain/model): adds the eegfm_shared row, "
        "fine-tuned from it beside this benchmark's own pretraining (and, with --methods eegfm_adapted, the row "
        "fine-tuned from it pretrained further on this benchmark's windows)",
    )
    parser.add_argument(
        "--adapt_steps",
        type=int,
        default=None,
        help="eegfm_adapted's further pretraining steps of the shared encoder; None: a third of this benchmark's "
        "own pretraining's",
    )
    if suite == "labeled":  # EEGNet is a labeled corpus's baseline
        parser.add_argument(
            "--eegnet_max_epochs",
            type=int,
            default=30,
            help="the most epochs each EEGNet setting trains (early stopping on validation chooses the epoch)",
        )
    parser.add_argument(
        "--finetune_set", action="append", default=[], metavar="KEY=VALUE", help="fine-tuning config override"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="fine-tuning runs and EEGNet fits trained side by side, each with its share of the threads "
        "(default: one per thread this process may use, EEGFM_THREADS or its cores; 1: one after another)",
    )


def _export(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--export",
        default=None,
        metavar="DIR",
        help="write the row validation ranks first (the recipe, a baseline or a stack) as a model folder that "
        "eegfm-predict --model, eegfm-serve --model and eegfm-models accept; DIR is replaced",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="eegfm-benchmark",
        description=__doc__,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    suites = parser.add_subparsers(dest="suite", required=True)
    eegmat = suites.add_parser(
        "eegmat",
        help="rest vs mental arithmetic, published split (00-27 train, 28-31 val, 32-35 test)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    eegmat.add_argument("--data", required=True, help="folder of PhysioNet eegmat recordings (SubjectNN_1/2.edf)")
    _common(eegmat, list(EEGMAT_METHODS))
    _export(eegmat)
    folder = suites.add_parser(
        "folder",
        help="any folder of recordings with a CSV of file,subject,label[,split]: split by subject, 2+ classes",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    folder.add_argument("--data", required=True, help="folder of recordings (any format the pipeline reads)")
    folder.add_argument(
        "--labels",
        required=True,
        help="CSV with columns file (relative to --data), subject, label (a class name) and optionally split "
        "(train, val or test); other columns are ignored",
    )
    _export(folder)
    folder.add_argument(
        "--window_seconds", type=float, default=FolderOptions.window_seconds, help="window length, seconds"
    )
    folder.add_argument(
        "--classes",
        nargs="+",
        default=[],
        metavar="NAME",
        help="the CSV's class names in the order to index them (with two, the second is the positive class "
        "AUPRC scores); default: sorted",
    )
    folder.add_argument(
        "--split_seed",
        type=int,
        default=0,
        help="without a split column: the seed of the draw by subject (70/15/15 %%), written to split.csv",
    )
    _common(folder, list(EEGMAT_METHODS))
    shared = suites.add_parser(
        "pretrain",
        help="one encoder for every benchmark: pretraining over the real corpora, a simulated one and --unlabeled",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    shared.add_argument("--shared_data", default="../shared/data", help="folder of real corpora, one per subfolder")
    shared.add_argument(
        "--simulated_sites", type=int, default=6, help="sites of the simulated corpus pretraining reads (0: none)"
    )
    _pretraining(shared, "the encoder's folder: data, simulated, pretrain/model and encoder.json (what went into it)")
    simulated = suites.add_parser(
        "simulated",
        help="six-class expert votes on a generated multi-site corpus, leave-one-site-out",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    simulated.add_argument("--sites", type=int, default=6, help="simulated sites (>= 2), each one a fold")
    simulated.add_argument("--seed", type=int, default=0, help="the simulated corpus's seed")
    simulated.add_argument(
        "--subjects_per_site",
        type=int,
        default=10,
        help="people a site, one 6-minute recording each, in the labeled corpus and in the one pretraining reads "
        "(4 leave about 30 test windows a site: too few to tell methods apart)",
    )
    simulated.add_argument(
        "--layout",
        choices=LAYOUTS,
        default="edf",
        help="the labeled corpus's layout: edf (10 s windows, spectrograms computed from each) or hms "
        "(Kaggle's: 50 s windows at the label rows, each with its recording's 10-minute spectrogram file)",
    )
    _common(simulated, ["eegfm", "scratch"], "simulated")
    return parser


def suite_options(args: argparse.Namespace):
    """The suite's own typed options (``options``' dataclasses), checked before any work."""
    if args.suite == "folder":
        return FolderOptions(
            Path(args.data), Path(args.labels), args.window_seconds, tuple(args.classes), args.split_seed
        )
    if args.suite == "eegmat":
        return Path(args.data)
    if args.suite == "simulated":
        return SimulatedOptions(args.sites, args.seed, args.subjects_per_site, args.layout)
    return SharedOptions(Path(args.shared_data), args.simulated_sites)


def report_times(times: stopwatch.PartTimes, output: Path) -> None:
    """Where the run's time went: a table on stdout and ``OUT/timing.json`` (kept out of
    ``benchmark.json``, which a rerun reproduces byte for byte)."""
    print(times.table())
    (output / "timing.json").write_text(json.dumps(times.as_dict(), indent=2) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    fair_threads()  # before any work: core/threads.py
    keep_freed_memory()  # a training step's freed tensors stay for the next: core/allocator.py
    args = build_parser().parse_args(argv)
    setup_logging("INFO")
    from eegfm.evaluation.comparison import eegmat, folder, shared, simulated  # torch, Beam: not for --help

    suites = {"eegmat": eegmat, "folder": folder, "pretrain": shared, "simulated": simulated}
    try:
        options, corpus = BenchmarkOptions.from_args(args), suite_options(args)
        with stopwatch.recording() as times:
            suites[args.suite].run(options, corpus)
        report_times(times, options.output)
    except (ConfigError, ValueError, FileNotFoundError) as err:
        print(f"benchmark: {err}", file=sys.stderr)
        return 2
    return 0
