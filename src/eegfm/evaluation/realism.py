"""``eegfm-simulate``: the simulator's command with its realism report (``--realism``,
:mod:`eegfm.evaluation.realism_report`).

The report reads real corpora through the pipeline, so it sits above both the simulator and the
pipeline, and this module installs the command: without ``--realism`` it is
:func:`eegfm.simulate.cli.run`, with it :func:`report_command`. The report's modules are imported
only once ``--realism``'s arguments pass, so ``--help`` and corpus runs start as fast as before.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from tqdm import tqdm

from eegfm.core.logs import setup_logging
from eegfm.simulate import cli as simulator
from eegfm.simulate.cli import PROG, REALISM_DEFAULTS, OneLineParser


def report_command(args: argparse.Namespace, parser: OneLineParser) -> int:
    """The realism report (``--realism``); one-line errors naming the flag."""
    if not args.against:
        parser.error("argument --against: at least one real corpus is required with --realism")
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
    return simulator.run(argv, realism=report_command)


if __name__ == "__main__":
    sys.exit(main())
