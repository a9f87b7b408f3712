"""The options of ``eegfm-predict --explain`` (serving.explain.cli), apart from the code that explains:
the command's --help builds its parser without importing torch."""

from __future__ import annotations

import argparse


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer; got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer; got {value}")
    return value


def add_explain_options(parser: argparse.ArgumentParser) -> None:
    """The ``explanations`` option group of eegfm-predict."""
    group = parser.add_argument_group(
        "explanations",
        "integrated gradients per class with class-specificity and model-randomisation checks (docs/serving.md)",
    )
    group.add_argument(
        "--explain",
        action="store_true",
        help="explain each recording's most confident windows: explanations/NNN_<name>_w<k>.png and .json, "
        "and explanation_reliable per explained window in recordings.json (CPU: ~30 s per 50 s window "
        "of a six-class tiny model)",
    )
    group.add_argument(
        "--explain_max_windows",
        type=_positive_int,
        default=4,
        help="windows explained per recording: those with the highest predicted-class probability (default 4)",
    )
    group.add_argument(
        "--explain_steps",
        type=_positive_int,
        default=8,
        help="integrated-gradient points per piece of the path (7 pieces, a decade each; default 8: "
        "completeness errors under 1%% on the models tried; each JSON reports its own)",
    )
