"""``eegfm-simulate`` / ``python -m eegfm.simulate``: write a simulated multi-site EEG corpus
(:func:`simulate`, what the project's own callers run), or with ``--pattern-realism`` measure the
simulated patterns against their reference ranges (:mod:`~simulate.pattern_realism`). The
realism report against real corpora is a command of its own, ``eegfm-realism``
(:mod:`eegfm.evaluation.realism`: it runs the pipeline), on this parser's corpus options.

Every argument is validated before anything is written; a bad one prints exactly one line,
``eegfm-simulate: error: --flag: what is allowed; got what``, and exits with status 2.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

import yaml
from tqdm import tqdm

from eegfm.core.config import ConfigError, user_file_path
from eegfm.core.logs import setup_logging
from eegfm.core.tasks import HMS_CLASSES
from eegfm.core.threads import fair_threads
from eegfm.simulate.output import check_output

PROG = "eegfm-simulate"
FORMAT_CHOICES = ("edf", "hms", "both")  # mirrors corpus.FORMATS (kept light: no heavy imports)
MONTAGE_CHOICES = ("site", "referential", "double_banana", "chbmit23")  # mirrors corpus.MONTAGE_CHOICES
MAX_MINUTES = 24 * 60  # mirrors corpus.MAX_MINUTES


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports errors as one line naming the flag (no usage dump)."""

    def error(self, message: str) -> NoReturn:
        if message.startswith("argument "):
            message = message[len("argument ") :]
            flag, _, rest = message.partition(": ")
            flag = flag.split("/")[-1]  # '-o/--output' -> '--output'
            message = f"{flag}: {rest}" if rest else flag
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())}\n")


def _number(cast: Callable[[str], Any], low: float, high: float | None, allowed: str) -> Callable[[str], Any]:
    """An argparse type: ``cast(text)`` within [low, high], or an error naming what is ``allowed``."""

    def parse(text: str) -> Any:
        try:
            value = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {allowed}; got {text!r}") from None
        if not (low <= value and (high is None or value <= high)):  # also rejects nan
            raise argparse.ArgumentTypeError(f"expected {allowed}; got {text if cast is float else value}")
        return value

    return parse


def _integer(low: int, high: int | None = None) -> Callable[[str], int]:
    allowed = f"an integer >= {low}" if high is None else f"an integer in [{low}, {high}]"
    return _number(lambda text: int(text, 10), low, high, allowed)


def _choice(choices: tuple[str, ...]) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in choices:
            raise argparse.ArgumentTypeError(f"expected one of {', '.join(choices)}; got {text!r}")
        return text

    return parse


# What the corpus holds: (flag, type, default, metavar, help), added in this order.
_CORPUS_OPTIONS = (
    (
        "--sites",
        _integer(1, 1000),
        4,
        "N",
        "number of recording sites (default: 4, the built-in archetypes: emu, icu, research, community); more "
        "sites cycle the archetypes with seeded perturbations",
    ),
    ("--subjects-per-site", _integer(1, 10_000), 3, "N", "patients per site (default: 3)"),
    ("--recordings-per-subject", _integer(1, 999), 2, "N", "recording sessions per patient (default: 2)"),
    (
        "--minutes",
        _number(float, 1, MAX_MINUTES, f"a number of minutes in [1, {MAX_MINUTES}] (one 50 s labeled window needs 1)"),
        5.0,
        "M",
        "length of every recording in minutes, >= 1, rounded to whole seconds (default: 5)",
    ),
    (
        "--seed",
        _integer(0),
        0,
        "S",
        "random seed; the corpus is a deterministic function of the arguments (default: 0)",
    ),
    (
        "--format",
        _choice(FORMAT_CHOICES),
        "both",
        "{edf,hms,both}",
        "edf: EDF/EDF+ files per site plus edf/labels.csv; hms: Kaggle HMS parquet layout (hms/train.csv, "
        "train_eegs/, train_spectrograms/); both (default)",
    ),
    (
        "--montage",
        _choice(MONTAGE_CHOICES),
        "site",
        "{" + ",".join(MONTAGE_CHOICES) + "}",
        "how the EDF files hold the EEG: site (default), each site's own (SiteProfile.montage: the built-in "
        "archetypes are referential, a quarter of the perturbed sites write chbmit23); referential, each "
        "electrode against the site's reference; double_banana, the 18 longitudinal bipolar derivations "
        "(Fp1-F7 ... Cz-Pz); chbmit23, CHB-MIT's 23 (the double banana, then P7-T7 and the T7-FT9-FT10-T8 "
        "bridge, T8-P8 twice). The HMS parquet files are referential whatever it says",
    ),
    (
        "--site-config",
        user_file_path,
        None,
        "YAML",
        "YAML file with a list of site profiles (SiteProfile fields) replacing the built-in archetypes "
        "(default: built-in)",
    ),
    (
        "--chunk-seconds",
        _integer(1, 3600),
        60,
        "S",
        "seconds rendered per step; bounds memory, never changes the output (default: 60)",
    ),
)
# CorpusConfig fields set from the flag of the same name (--site-config becomes site_profiles).
_CONFIG_FIELDS = tuple(flag[2:].replace("-", "_") for flag, *_ in _CORPUS_OPTIONS if flag != "--site-config")


def build_parser() -> OneLineParser:
    parser = OneLineParser(
        prog=PROG,
        description=(
            "Write a simulated multi-hospital clinical EEG corpus: EDF/EDF+ files in each site's "
            "conventions and/or Kaggle-HMS parquet files, six-class expert-vote labels, ground "
            "truth (truth.jsonl) and the fake identifiers planted in EDF headers "
            "(identifiers.json). Same arguments and seed give byte-identical files. The realism "
            "report against real corpora is eegfm-realism's."
        ),
        epilog="Layout of OUTPUT: see `python -c 'import eegfm.simulate as s; help(s)'`.",
    )
    parser.add_argument(
        "-o",
        "--output",
        required=True,
        type=user_file_path,
        metavar="DIR",
        help="directory to create (required); it must not exist or be empty unless --overwrite. "
        "Files are staged in a hidden sibling directory and moved into place at the end.",
    )
    add_corpus_options(parser)
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace OUTPUT if it exists and is not empty (the old corpus is removed only after "
        "the new one is complete)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar, log lines or summary on stdout")
    # a command line of the time --realism was this command's gets the command that has it
    parser.add_argument("--realism", action="store_true", help=argparse.SUPPRESS)
    _add_pattern_realism_options(parser)
    return parser


def add_corpus_options(parser: argparse.ArgumentParser) -> None:
    """What the corpus holds (``--sites`` ... ``--chunk-seconds``), each None unless given:
    :func:`resolve_corpus_defaults` fills them in."""
    for flag, parse, _default, metavar, help_text in _CORPUS_OPTIONS:
        parser.add_argument(flag, type=parse, default=None, metavar=metavar, help=help_text)


def resolve_corpus_defaults(args: argparse.Namespace, defaults: dict[str, Any] | None = None) -> None:
    """The corpus options not given set to ``defaults`` (by field name), else to their own."""
    for flag, _parse, default, *_ in _CORPUS_OPTIONS:
        name = flag[2:].replace("-", "_")
        if getattr(args, name, None) is None:
            setattr(args, name, (defaults or {}).get(name, default))


def _add_pattern_realism_options(parser: OneLineParser) -> None:
    group = parser.add_argument_group(
        "pattern realism",
        "--pattern-realism writes OUTPUT/pattern_realism.json and pattern_realism.md: statistics of the five "
        "patterns (seizure evolution, frequency and spread; PD rate, period, discharge shape, lateralization; "
        "RDA frequency and lateralization) measured on rendered episodes, each against a reference range "
        "(ACNS 2021 definitions, published seizure series) with its source. No real corpus is read.",
    )
    group.add_argument(
        "--pattern-realism",
        action="store_true",
        help="write the pattern realism report to OUTPUT instead of a corpus (OUTPUT may exist; the two "
        "report files are replaced); --seed applies",
    )
    group.add_argument(
        "--episodes",
        type=_integer(1, 1000),
        default=None,
        metavar="N",
        help="episodes per class for --pattern-realism (default: 20)",
    )


def _pattern_report(args: argparse.Namespace, parser: OneLineParser) -> int:
    """The pattern realism report (``--pattern-realism``)."""
    if args.output.exists() and not args.output.is_dir():
        parser.error(f"argument --output: expected a directory path; {args.output} is an existing file")
    from eegfm.simulate.pattern_realism_output import build_report, sample, write_report  # numpy: after the checks

    def progress(classes):
        return tqdm(classes, desc="pattern realism", unit="class", file=sys.stderr, disable=args.quiet, leave=False)

    report = build_report(sample(args.episodes or 20, args.seed, progress=progress), args.seed)
    write_report(report, args.output)
    if not args.quiet:
        judged = [e["inside"] for stats in report["classes"].values() for e in stats.values()]
        judged = [inside for inside in judged if inside is not None]
        print(
            f"Pattern realism report written to {args.output} (pattern_realism.json, pattern_realism.md): "
            f"{sum(judged)} of {len(judged)} statistics with a reference range inside it."
        )
    return 0


def _load_site_profiles(path: Path | None, parser: OneLineParser) -> tuple:
    if path is None:
        return ()
    from eegfm.simulate.sites import SiteProfile  # numpy: not for --help or a bad argument

    try:
        data = yaml.safe_load(path.read_text())
    except OSError as err:
        parser.error(f"argument --site-config: cannot read {path} ({err.strerror})")
    except yaml.YAMLError as err:
        parser.error(f"argument --site-config: {path} is not valid YAML ({err})")
    if not isinstance(data, list) or not data:
        parser.error(
            f"argument --site-config: expected a non-empty YAML list of site profiles; got {type(data).__name__}"
        )
    try:
        return tuple(SiteProfile.from_dict(item) for item in data)
    except ConfigError as err:
        parser.error(f"argument --site-config: {path}: {err}")


def _progress_bar(total_minutes: float, quiet: bool) -> tqdm:
    """A bar on an interactive stderr. A ``delay`` (above the clock's resolution) keeps it silent
    until the first EEG is written, so a run that fails before that prints nothing."""
    width = shutil.get_terminal_size(fallback=(100, 24)).columns or 100  # 0 on some ptys
    return tqdm(
        total=total_minutes,
        unit="EEG-min",
        file=sys.stderr,
        ncols=min(width, 120),
        bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} EEG-min [{elapsed}<{remaining}]",
        disable=quiet or not sys.stderr.isatty(),
        delay=0.01,
    )


def _config_error(parser: OneLineParser, err: ConfigError) -> NoReturn:
    """Report a ConfigError under the flag it concerns (site profile errors: --site-config)."""
    field, _, rest = str(err).partition(": ")
    flag = "--" + field.replace("_", "-") if field in ("output", *_CONFIG_FIELDS) else None
    parser.error(f"argument {flag}: {rest}" if flag else f"argument --site-config: {err}")


def _summary(result, config) -> str:
    per_class = ", ".join(f"{cls} {result.consensus_counts.get(cls, 0)}" for cls in HMS_CLASSES)
    lines = [f"Simulated corpus written to {result.output}"]
    lines += [f"  {name:<17} {path}" for name, path in result.files.items()]
    lines.append(
        f"{result.n_recordings} recordings from {result.n_sites} sites and {result.n_patients} "
        f"patients ({result.eeg_hours:.2f} EEG-hours, format {config.format}, seed {config.seed}) "
        f"with {result.n_label_rows} labeled 50 s windows (expert consensus: {per_class}) in "
        f"{result.seconds:.1f} s ({result.eeg_hours / max(result.seconds, 1e-9):.2f} EEG-hours/s)."
    )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """The command: parse ``argv``, then a corpus (:func:`simulate`) or the pattern realism report."""
    fair_threads()  # before any work: core/threads.py
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)  # an old --realism command line's --against ... too
    resolve_corpus_defaults(args)
    if args.realism:
        parser.error(
            "argument --realism: the realism report runs the pipeline, so it is a command of its own: "
            "eegfm-realism (python -m eegfm.evaluation.realism), with the same corpus options"
        )
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if args.episodes is not None and not args.pattern_realism:
        parser.error("argument --episodes: needs --pattern-realism")
    if args.pattern_realism:
        return _pattern_report(args, parser)
    try:
        check_output(args.output, args.overwrite)  # cheap checks first: no numerical imports
    except ConfigError as err:
        _config_error(parser, err)
    profiles = _load_site_profiles(args.site_config, parser)
    from eegfm.simulate.corpus import CorpusConfig  # numpy: only once the arguments pass

    try:
        config = CorpusConfig(**{name: getattr(args, name) for name in _CONFIG_FIELDS}, site_profiles=profiles)
    except ConfigError as err:
        _config_error(parser, err)
    setup_logging("WARNING")  # progress and the summary are the user-facing output
    try:
        simulate(config, args.output, overwrite=args.overwrite, quiet=args.quiet)
    except ConfigError as err:  # e.g. the staging directory could not be created
        _config_error(parser, err)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; nothing was written to {args.output}", file=sys.stderr)
        return 130
    return 0


def simulate(config, output: Path, overwrite: bool = False, quiet: bool = False):
    """The corpus ``config`` (a :class:`~simulate.corpus.CorpusConfig`) describes, written to
    ``output`` (``corpus.generate_corpus``: staged, moved into place at the end; an existing
    non-empty ``output`` is a ConfigError unless ``overwrite``); a progress bar on an interactive
    stderr and the summary on stdout unless ``quiet``. Returns the corpus's ``CorpusResult``."""
    from eegfm.simulate.corpus import generate_corpus  # numpy: not for --help

    total = config.duration_s * config.sites * config.subjects_per_site * config.recordings_per_subject
    with _progress_bar(total / 60.0, quiet) as bar:
        result = generate_corpus(config, output, overwrite=overwrite, progress=lambda s: bar.update(s / 60.0))
    if not quiet:
        print(_summary(result, config))
    return result


if __name__ == "__main__":
    sys.exit(main())
