"""``eegfm-realism``: the realism report (:mod:`eegfm.evaluation.realism_report`): the simulated
background against real corpora, on statistics of the pipeline's own preprocessed windows.

The report reads real corpora through the pipeline, so it sits above both the simulator and the
pipeline; it takes the simulator's corpus options (``simulate.cli.add_corpus_options``: the corpus
it simulates, small unless they are given). The report's modules are imported only once the
arguments pass, so ``--help`` starts as fast as the simulator's.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from tqdm import tqdm

from eegfm.core.config import user_file_path
from eegfm.core.logs import setup_logging
from eegfm.core.threads import fair_threads
from eegfm.simulate.cli import OneLineParser, add_corpus_options, resolve_corpus_defaults

PROG = "eegfm-realism"
# The simulated corpus is small unless these flags are given.
REALISM_DEFAULTS = {"sites": 4, "subjects_per_site": 2, "minutes": 3.0}


def build_parser() -> OneLineParser:
    parser = OneLineParser(
        prog=PROG,
        description="Write OUTPUT/realism.json, realism.md and realism.png: the simulated background (windows "
        "inside 'Other' episodes; eyes state from truth.jsonl) against each real corpus, on statistics of the "
        "pipeline's own preprocessed 10 s windows. Real corpora are named by NAME and their files only counted. "
        "Without --simulated it simulates a small background corpus (default --sites 4 --subjects-per-site 2 "
        "--minutes 3, --seed applies).",
    )
    parser.add_argument(
        "-o",
        "--output",
        required=True,
        type=user_file_path,
        metavar="DIR",
        help="the report's folder (it may exist; the three report files are replaced)",
    )
    parser.add_argument(
        "--against",
        action="append",
        default=[],
        metavar="NAME=DIR[:STATE[:GLOB]]",
        help="a real corpus (repeat for several; at least one): NAME labels it in the "
        "report (letters, digits, - and _); DIR is searched recursively for .edf/.bdf/.parquet/.fif/"
        ".set/.vhdr/.cnt files, or only for GLOB relative to DIR (e.g. 'Subject*_1.edf', "
        "'train_eegs/*.parquet'); STATE is the eyes state of all its recordings: closed, open or "
        "unknown (default; counts for the state-free statistics only). "
        "Example: --against eegmat_rest=../shared/data/eegmat:closed:Subject*_1.edf",
    )
    parser.add_argument(
        "--simulated",
        type=user_file_path,
        default=None,
        metavar="DIR",
        help="an existing simulated corpus (with truth.jsonl and edf/) to compare instead of simulating one",
    )
    add_corpus_options(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress bar or summary on stdout")
    return parser


def report_command(args: argparse.Namespace, parser: OneLineParser) -> int:
    """The realism report; one-line errors naming the flag."""
    if not args.against:
        parser.error("argument --against: at least one real corpus is required")
    if args.output.exists() and not args.output.is_dir():
        parser.error(f"argument --output: expected a directory path; {args.output} is an existing file")
    if args.simulated is not None and not (args.simulated / "truth.jsonl").is_file():
        parser.error(
            f"argument --simulated: expected a simulated corpus directory with truth.jsonl; got {args.simulated}"
        )
    # scipy and the pipeline (3 s) only once the arguments pass: --help and a bad flag answer at once.
    from eegfm.evaluation.realism_report import run_report
    from eegfm.simulate.realism import SpecError, parse_spec

    try:
        specs = [parse_spec(text) for text in args.against]
        for spec in specs:
            spec.files()
    except SpecError as err:
        parser.error(f"argument --against: {err}")
    if len({s.name for s in specs}) != len(specs):
        parser.error(f"argument --against: corpus names must be unique; got {[s.name for s in specs]}")
    setup_logging("ERROR")
    options = {name: getattr(args, name) for name in REALISM_DEFAULTS}

    def progress(items, desc):
        items = list(items)
        return tqdm(items, desc=desc, unit="file", file=sys.stderr, disable=args.quiet, leave=False)

    try:
        report = run_report(
            specs, args.output, simulated=args.simulated, sim_options={**options, "seed": args.seed}, progress=progress
        )
    except SpecError as err:
        flag = "--simulated" if args.simulated is not None and "simulated" in str(err) else "--against"
        parser.error(f"argument {flag}: {err}")
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    if not args.quiet:
        inside = [c["inside"] for c in report["comparison"].values() if c["inside"] is not None]
        print(
            f"Realism report written to {args.output} (realism.json, realism.md, realism.png): "
            f"{sum(inside)} of {len(inside)} statistics of the simulated background inside the real range."
        )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    fair_threads()  # before any work: core/threads.py
    parser = build_parser()
    args = parser.parse_args(argv)
    resolve_corpus_defaults(args, REALISM_DEFAULTS)
    return report_command(args, parser)


if __name__ == "__main__":
    sys.exit(main())
