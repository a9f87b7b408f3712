"""What each quality rule flags on whole corpora: ``python -m eegfm.pipelines.quality.survey``
(``eegfm-quality-survey``).

Every recording goes through the pipeline's own per-recording path; for each corpus the table gives
the windows kept and dropped, the share of kept windows on which each rule and sign fires, the share
whose rule score reaches 0.5 and, with ``--artifact_model``, the share the autoencoder flags
(``corpus_survey`` has the details). Corpora are named by the user; no path, file name or channel
label reaches the output.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

# Only what the parser needs: --help and a usage error load no scipy, readers or Beam
# (tests/test_commands.py); the survey is ``corpus_survey``, imported by main() once parsed.
from eegfm.core.config import add_corpus_argument
from eegfm.core.threads import fair_threads


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="eegfm-quality-survey",
        description="What each quality rule flags on whole corpora, through the pipeline's own per-recording path.",
    )
    add_corpus_argument(parser)
    parser.add_argument(
        "--artifact_model",
        type=Path,
        help="an artifact_ae.npz (eegfm-preprocess writes one) to score each recording's windows with too",
    )
    parser.add_argument("--output", type=Path, help="also write quality_survey.json and quality_survey.md here")
    return parser


def main(argv: list[str] | None = None) -> int:
    fair_threads()  # before any work: core/threads.py
    parser = build_parser()
    args = parser.parse_args(argv)
    from eegfm.pipelines.quality.corpus_survey import NoRecordings, markdown, survey_corpora  # scipy, readers

    try:
        report = survey_corpora(args.corpus, args.artifact_model)
    except NoRecordings as err:
        parser.error(str(err))
    table = markdown(report)
    print(table)
    if args.output:
        args.output.mkdir(parents=True, exist_ok=True)
        (args.output / "quality_survey.json").write_text(json.dumps(report, indent=2) + "\n")
        (args.output / "quality_survey.md").write_text(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
