"""The arguments of eegfm-preprocess that neither it nor Beam knows (``unrecognized``, ``describe``):
Beam only warns of those and runs without them, so a typo such as ``--windows_seconds 5`` would
silently run with 10 s windows.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence

from apache_beam.options.pipeline_options import PipelineOptions

from eegfm.pipelines.readers import s3_anonymous  # noqa: F401 - registers the --s3_anonymous pipeline option


def unrecognized(beam_args: Sequence[str]) -> list[str]:
    """The arguments of ``beam_args`` (values included, in order) that no registered Beam pipeline
    option takes."""
    found: list[str] = []

    def parse(parser) -> None:
        # Called with Beam's parser of every known option before it adds the unknown ones
        # (retain_unknown_options=True also keeps Beam from logging them).
        _, unknown = parser.parse_known_args(list(beam_args))
        found.extend(unknown)

    PipelineOptions(list(beam_args)).get_all_options(add_extra_args_fn=parse, retain_unknown_options=True)
    return found


def beam_option_names() -> list[str]:
    """Every registered Beam pipeline option, as ``--name``."""
    return sorted(f"--{name}" for name in PipelineOptions([]).get_all_options())


def describe(unknown: Sequence[str], own: Iterable[str], beam: Iterable[str]) -> str:
    """One clause per unrecognized argument: an unknown option (with its value) and the closest of
    the command's ``own`` names, else of ``beam``'s; or a value that follows no option."""
    own, beam = sorted(set(own)), sorted(set(beam) - set(own))
    parts, i = [], 0
    while i < len(unknown):
        arg = unknown[i]
        if arg.startswith("-"):
            name = arg.split("=", 1)[0]
            value = ""
            if "=" not in arg and i + 1 < len(unknown) and not unknown[i + 1].startswith("-"):
                value, i = f" {unknown[i + 1]}", i + 1
            # Beam has ~250 options: a looser match there mostly suggests unrelated ones.
            close = difflib.get_close_matches(name, own, n=3, cutoff=0.7) or difflib.get_close_matches(
                name, beam, n=3, cutoff=0.8
            )
            hint = f"; did you mean {' or '.join(close)}?" if close else " (--help lists eegfm's options)"
            parts.append(f"{arg}{value}: not an eegfm-preprocess option or an Apache Beam pipeline option{hint}")
        else:
            parts.append(
                f"{arg!r}: a value that follows no option (several inputs: --input A B ..., or --input repeated)"
            )
        i += 1
    return "unrecognized arguments: " + "; ".join(parts)
