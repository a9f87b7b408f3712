"""``eegfm-simulate`` / ``python -m eegfm.pipelines.simulate``: write a simulated multi-site EEG corpus.

Every argument is validated before anything is written; a bad one prints exactly one line,
``eegfm-simulate: error: --flag: what is allowed; got what``, and exits with status 2.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from eegfm.core.config import ConfigError, user_file_path
from eegfm.core.logs import setup_logging
from eegfm.core.tasks import HMS_CLASSES
from eegfm.pipelines.simulate.output import check_output

PROG = "eegfm-simulate"
FORMAT_CHOICES = ("edf", "hms", "both")  # mirrors corpus.FORMATS (kept light: no heavy imports)
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


def _integer(low: int, high: int | None = None) -> Callable[[str], int]:
    def parse(text: str) -> int:
        allowed = f"an integer >= {low}" if high is None else f"an integer in [{low}, {high}]"
        try:
            value = int(text, 10)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {allowed}; got {text!r}") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"expected {allowed}; got {value}")
        return value

    return parse


def _minutes(text: str) -> float:
    allowed = f"a number of minutes in [1, {MAX_MINUTES}] (one 50 s labeled window needs 1)"
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {allowed}; got {text!r}") from None
    if not 1 <= value <= MAX_MINUTES:  # also rejects nan
        raise argparse.ArgumentTypeError(f"expected {allowed}; got {text}")
    return value


def _format(text: str) -> str:
    if text not in FORMAT_CHOICES:
        raise argparse.ArgumentTypeError(f"expected one of {', '.join(FORMAT_CHOICES)}; got {text!r}")
    return text


def build_parser() -> OneLineParser:
    parser = OneLineParser(
        prog=PROG,
        description=(
            "Write a simulated multi-hospital clinical EEG corpus: EDF/EDF+ files in each site's "
            "conventions and/or Kaggle-HMS parquet files, six-class expert-vote labels, ground "
            "truth (truth.jsonl) and the fake identifiers planted in EDF headers "
            "(identifiers.json). Same arguments and seed give byte-identical files."
        ),
        epilog="Layout of OUTPUT: see `python -c 'import eegfm.pipelines.simulate as s; help(s)'`.",
    )
    add = parser.add_argument
    add(
        "-o",
        "--output",
        required=True,
        type=user_file_path,
        metavar="DIR",
        help="directory to create (required); it must not exist or be empty unless --overwrite. "
        "Files are staged in a hidden sibling directory and moved into place at the end.",
    )
    _add_corpus_options(parser)
    add(
        "--chunk-seconds",
        type=_integer(1, 3600),
        default=60,
        metavar="S",
        help="seconds rendered per step; bounds memory, never changes the output (default: 60)",
    )
    add(
        "--overwrite",
        action="store_true",
        help="replace OUTPUT if it exists and is not empty (the old corpus is removed only after "
        "the new one is complete)",
    )
    add("--quiet", action="store_true", help="no progress bar, log lines or summary on stdout")
    return parser


def _add_corpus_options(parser: OneLineParser) -> None:
    """The options that say what the corpus holds: sites, patients, recordings, their length, the
    seed, the file formats and the site profiles."""
    add = parser.add_argument
    add(
        "--sites",
        type=_integer(1, 1000),
        default=4,
        metavar="N",
        help="number of recording sites (default: 4, the built-in archetypes: emu, icu, research, "
        "community); more sites cycle the archetypes with seeded perturbations",
    )
    add("--subjects-per-site", type=_integer(1, 10_000), default=3, metavar="N", help="patients per site (default: 3)")
    add(
        "--recordings-per-subject",
        type=_integer(1, 999),
        default=2,
        metavar="N",
        help="recording sessions per patient (default: 2)",
    )
    add(
        "--minutes",
        type=_minutes,
        default=5.0,
        metavar="M",
        help="length of every recording in minutes, >= 1, rounded to whole seconds (default: 5)",
    )
    add(
        "--seed",
        type=_integer(0),
        default=0,
        metavar="S",
        help="random seed; the corpus is a deterministic function of the arguments (default: 0)",
    )
    add(
        "--format",
        type=_format,
        default="both",
        metavar="{edf,hms,both}",
        help="edf: EDF/EDF+ files per site plus edf/labels.csv; hms: Kaggle HMS parquet layout "
        "(hms/train.csv, train_eegs/, train_spectrograms/); both (default)",
    )
    add(
        "--site-config",
        type=user_file_path,
        default=None,
        metavar="YAML",
        help="YAML file with a list of site profiles (SiteProfile fields) replacing the built-in "
        "archetypes (default: built-in)",
    )


def _load_site_profiles(path: Path | None, parser: OneLineParser) -> tuple:
    if path is None:
        return ()
    import yaml

    from eegfm.pipelines.simulate.sites import SiteProfile

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


class _LazyProgress:
    """A tqdm bar created on the first update, so nothing reaches stderr before validation ends."""

    def __init__(self, total_minutes: float, quiet: bool) -> None:
        self.total = total_minutes
        self.disable = quiet or not sys.stderr.isatty()
        self._bar = None

    def __call__(self, seconds: float) -> None:
        if self.disable:
            return
        if self._bar is None:
            from tqdm import tqdm

            width = shutil.get_terminal_size(fallback=(100, 24)).columns or 100  # 0 on some ptys
            self._bar = tqdm(
                total=self.total,
                unit="EEG-min",
                file=sys.stderr,
                ncols=min(width, 120),
                bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} EEG-min [{elapsed}<{remaining}]",
            )
        self._bar.update(seconds / 60.0)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


_FLAGS = {
    "output": "--output",
    "format": "--format",
    "minutes": "--minutes",
    "seed": "--seed",
    "sites": "--sites",
    "subjects_per_site": "--subjects-per-site",
    "recordings_per_subject": "--recordings-per-subject",
    "chunk_seconds": "--chunk-seconds",
}


def _config_error(parser: OneLineParser, err: ConfigError) -> NoReturn:
    """Report a ConfigError under the flag it concerns (site profile errors: --site-config)."""
    field, _, rest = str(err).partition(": ")
    flag = _FLAGS.get(field)
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
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        check_output(args.output, args.overwrite)  # cheap checks first: no numerical imports
    except ConfigError as err:
        _config_error(parser, err)
    profiles = _load_site_profiles(args.site_config, parser)
    from eegfm.pipelines.simulate.corpus import CorpusConfig, generate_corpus

    try:
        config = CorpusConfig(
            sites=args.sites,
            subjects_per_site=args.subjects_per_site,
            recordings_per_subject=args.recordings_per_subject,
            minutes=args.minutes,
            seed=args.seed,
            format=args.format,
            chunk_seconds=args.chunk_seconds,
            site_profiles=profiles,
        )
    except ConfigError as err:
        _config_error(parser, err)
    setup_logging("WARNING")  # progress and the summary are the user-facing output
    total = config.duration_s * config.sites * config.subjects_per_site * config.recordings_per_subject
    progress = _LazyProgress(total / 60.0, args.quiet)
    try:
        result = generate_corpus(config, args.output, overwrite=args.overwrite, progress=progress)
    except ConfigError as err:  # e.g. the staging directory could not be created
        progress.close()
        _config_error(parser, err)
    except KeyboardInterrupt:
        progress.close()
        print(f"{PROG}: interrupted; nothing was written to {args.output}", file=sys.stderr)
        return 130
    progress.close()
    if not args.quiet:
        print(_summary(result, config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
