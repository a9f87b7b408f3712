"""Simulated patterns planted on real backgrounds: a six-class training corpus from real recordings.

``python -m eegfm.simulate.planted --background DIR --output OUT --seed N`` (``eegfm-planted``)
cuts each real recording under DIR (any format MNE reads, 10-20 electrode names) into up to
``--per-recording`` stretches of 50 s (one HMS labeled window each) spread over the recording.
Most get one of the five patterns (Seizure, LPD, GPD, LRDA, GRDA), drawn by
:func:`~simulate.patterns.draw_episode` and added in µV to the recording's own canonical
electrodes at the pattern's own amplitude (:func:`~simulate.planting.plant_episode`); a share
(``--other-fraction``) stays as recorded, Other. A share of every class
(``--eye-artifact-fraction``) also gets the simulator's blinks and eye movements, as with the eyes
open. Each stretch, background and pattern alike, is then multiplied by a gain drawn
log-uniformly from ``--gain-range`` (children have 2-5x an adult's
amplitude). Each stretch's window gets expert votes from :mod:`~simulate.votes` (the episode's
strength, a drawn rater count), so the label noise is the simulator's.

Layout of OUT (``eegfm-preprocess --input OUT`` reads it with the generic adapter)::

    OUT/
      labels.csv        path, patient_id, eeg_label_offset_seconds (0), HMS's six vote columns,
                        expert_consensus: one 50 s hms6 window per stretch
      <site>/r<NNNN>_s<KK>_raw.fif   stretch KK of input recording NNNN: float32, a fresh header
                        (channel names, types and rate; no person, date or annotation of the source)
      truth.json        a list, one stretch a line: what was planted (class, strength, hemisphere,
                        focus, the episode's parameters), the gain, the eye artifacts' counts,
                        the votes, where in its source it was cut (JSON, not JSON lines: the
                        pipeline passes .json by as a sidecar)
      planted.json      seed, options, counts: recordings, skipped by reason, stretches by class

Names: ``r<NNNN>`` numbers the recordings under DIR in sorted path order from 0 (``ls`` finds a
skipped one), ``p<NNNN>`` the people; no file name, path or header field of a source reaches OUT or
the log. People: every stretch of a recording keeps its person (``patient_id``: the pipeline's
subject, so a split by person holds), and ``--person REGEX`` makes the recordings whose paths give
the same first group one person (eegmat: ``'Subject(\\d+)_'``); without it each recording is its
own person. Held-out people: ``--exclude GLOB`` leaves their recordings out (eegmat's validation
and test subjects: ``--exclude 'Subject2[89]*' --exclude 'Subject3*'``).

The same arguments and inputs give byte-identical output: each stretch's draws come from a stream
keyed by (seed, recording number, stretch number) (:mod:`~simulate.rng`).
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
from pathlib import Path

# Only what the parser needs: --help and a usage error load no MNE or scipy (tests/test_commands.py);
# the planting is ``planted_corpus``, imported by main() once the options are checked.
from eegfm.core.threads import fair_threads
from eegfm.simulate.cli import OneLineParser  # one-line errors naming the flag, as eegfm-simulate's


@dataclasses.dataclass(frozen=True)
class PlantOptions:
    """What the command's options set (see ``--help``)."""

    seed: int = 0
    per_recording: int = 4
    gain_range: tuple[float, float] = (1.0, 1.0)
    strength_range: tuple[float, float] = (0.3, 1.0)  # the simulator's sites' default
    other_fraction: float = 0.2
    eye_artifact_fraction: float = 0.0


# ---------------------------------------------------------------- command line


def _number(cast, low: float, high: float, what: str):
    """An argparse type: ``cast(text)`` within [low, high], or an error saying ``what`` is expected."""

    def parse(text: str):
        try:
            value = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}; got {text!r}") from None
        if not low <= value <= high:  # also refuses nan
            raise argparse.ArgumentTypeError(f"expected {what}; got {text}")
        return value

    return parse


def _add_stretch_options(p: argparse.ArgumentParser) -> None:
    """What goes into each stretch: gain, the patterns' strength, the share left Other, eye artifacts."""
    p.add_argument(
        "--gain-range",
        nargs=2,
        type=_number(float, 0.01, 100.0, "a factor in [0.01, 100]"),
        default=(1.0, 1.0),
        metavar=("LOW", "HIGH"),
        help="each stretch, background and pattern alike, times a gain drawn "
        "log-uniformly from LOW..HIGH (children: 2-5x an adult's amplitude; default: 1 1, none)",
    )
    p.add_argument(
        "--strength-range",
        nargs=2,
        type=_number(float, 0.0, 1.0, "a strength in [0, 1]"),
        default=(0.3, 1.0),
        metavar=("LOW", "HIGH"),
        help="the patterns' strength, drawn uniformly: amplitude and the raters' "
        "agreement grow with it (default: 0.3 1, the simulator's)",
    )
    p.add_argument(
        "--other-fraction",
        type=_number(float, 0.0, 1.0, "a fraction in [0, 1]"),
        default=0.2,
        metavar="F",
        help="share of stretches left as recorded, labelled Other (default: 0.2); the rest get one of "
        "the five patterns, equally often",
    )
    p.add_argument(
        "--eye-artifact-fraction",
        type=_number(float, 0.0, 1.0, "a fraction in [0, 1]"),
        default=0.0,
        metavar="F",
        help="share of stretches, of every class alike, that get the simulator's blinks and lateral eye "
        "movements as with the eyes open (10-25 blinks a minute; default: 0)",
    )


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="eegfm-planted", description=__doc__.split("\n\n")[0].replace("``", ""))
    p.add_argument(
        "--background",
        type=Path,
        required=True,
        help="folder of real recordings (any format MNE reads, 10-20 electrode names), searched recursively",
    )
    p.add_argument("--output", type=Path, required=True, help="folder to write the corpus into (new or empty)")
    p.add_argument(
        "--seed",
        type=_number(int, 0, 2**32 - 1, "an integer >= 0"),
        default=0,
        help="seed of every draw (default: 0); the same seed, the same files",
    )
    p.add_argument(
        "--per-recording",
        type=_number(int, 1, 1000, "an integer in [1, 1000]"),
        default=4,
        metavar="K",
        help="stretches of 50 s per recording, spread over it at least 10 s apart (a short recording "
        "gives fewer; default: 4)",
    )
    _add_stretch_options(p)
    p.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="GLOB",
        help="leave out recordings whose path "
        "under DIR or name matches GLOB (repeatable): held-out people, e.g. eegmat's validation and "
        "test subjects, --exclude 'Subject2[89]*' --exclude 'Subject3*'",
    )
    p.add_argument(
        "--person",
        metavar="REGEX",
        help="recordings whose path under DIR gives the same first group "
        "(or match) are one person, e.g. 'Subject(\\d+)_' for eegmat; default: each recording its own",
    )
    p.add_argument(
        "--site",
        default="planted",
        help="the folder under OUT holding the stretches, the pipeline's site "
        "(letters, digits, - and _; default: planted)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty OUTPUT")
    return p


def _options(parser: argparse.ArgumentParser, args: argparse.Namespace) -> PlantOptions:
    """The checked options; every refusal names its flag."""
    if not args.background.is_dir():
        parser.error(f"--background: expected a folder of recordings; {args.background} is not a folder")
    if args.output.resolve().is_relative_to(args.background.resolve()):  # its stretches would be read next time
        parser.error(f"--output: expected a folder outside --background; {args.output} is inside it")
    for flag, (low, high) in (("--gain-range", args.gain_range), ("--strength-range", args.strength_range)):
        if low > high:
            parser.error(f"{flag}: expected LOW <= HIGH; got {low:g} {high:g}")
    if not re.fullmatch(r"[A-Za-z0-9_-]+", args.site):
        parser.error(f"--site: expected letters, digits, - and _; got {args.site!r}")
    if args.person:
        try:
            re.compile(args.person)
        except re.error as err:
            parser.error(f"--person: expected a regular expression; {err}")
    return PlantOptions(
        args.seed,
        args.per_recording,
        tuple(args.gain_range),
        tuple(args.strength_range),
        args.other_fraction,
        args.eye_artifact_fraction,
    )


def main(argv: list[str] | None = None) -> int:
    fair_threads()  # before any work: core/threads.py
    parser = build_parser()
    args = parser.parse_args(argv)
    options = _options(parser, args)
    from eegfm.simulate.planted_corpus import Refused, plant_command  # MNE, scipy: not for --help

    try:
        return plant_command(args, options)
    except Refused as err:
        parser.error(str(err))


if __name__ == "__main__":
    sys.exit(main())
