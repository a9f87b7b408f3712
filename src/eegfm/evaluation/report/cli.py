"""``python -m eegfm.evaluation.report RUN_DIR ... --output report.html``: the cross-site report.

Reads what the stages wrote below the RUN_DIRs (see ``discover``), scores the fine-tuned model and
each leave-one-site-out fold on their held-out windows, and writes one self-contained HTML file,
the same content as Markdown (its figures in ``<stem>_files/`` beside it) and every number as JSON.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path
from typing import Any

# Only what the parser and the writing need: --help, a usage error and shell completion import no
# torch (tests/test_commands.py); the scoring and the sections (assemble) are imported by run().
from eegfm.core.config import ConfigError, user_file_path, user_path
from eegfm.core.logs import get_logger, setup_logging
from eegfm.core.threads import fair_threads
from eegfm.evaluation.report.discover import discover
from eegfm.evaluation.report.document import Section, as_json
from eegfm.evaluation.report.render import to_html, to_markdown

log = get_logger(__name__)
TITLE = "eegfm cross-site report"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="eegfm-report",
        description="Gather a pipeline output, pretraining and fine-tuning runs, leave-one-site-out, robustness, "
        "benchmark, explanation, prediction and real-corpus outputs found below the RUN_DIRs into one report: a "
        "self-contained HTML file, the same as Markdown and every number as JSON. A section whose inputs are absent "
        "is left out; a line at the top names the command that fills it.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "run_dirs",
        nargs="+",
        type=user_file_path,
        metavar="RUN_DIR",
        help="folders searched (4 levels deep) for outputs",
    )
    parser.add_argument(
        "--output",
        type=user_file_path,
        default=Path("report.html"),
        help="the HTML file; report.md, report.json and report_files/ (the Markdown's figures) go beside it, "
        "named after its stem",
    )
    parser.add_argument(
        "--data",
        nargs="+",
        type=user_path,
        metavar="DIR",
        help="the pipeline output(s) the models were fine-tuned on, to score their held-out windows; default: "
        "those each run's run.json names, from here where they exist, else the pipeline output below the RUN_DIRs "
        "whose path ends the same",
    )
    parser.add_argument("--bootstrap", type=int, default=1000, help="subject resamples per confidence interval")
    parser.add_argument("--seed", type=int, default=0, help="seeds the bootstrap, the site probe's folds and t-SNE")
    parser.add_argument(
        "--projection", choices=["pca", "tsne"], default="pca", help="the 2-D projection of the embeddings"
    )
    parser.add_argument("--batch_size", type=int, default=32, help="windows per forward pass when scoring")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="auto: CUDA where available")
    parser.add_argument(
        "--no_scoring",
        action="store_true",
        help="do not run the models: leave out the per-site intervals, the embeddings and the domain shift",
    )
    return parser


def write_report(output: Path, sections: list[Section], meta: list[str], header: dict[str, Any]) -> dict[str, Path]:
    """The HTML, Markdown (figures in ``<stem>_files/``) and JSON, each written whole or not at all.
    A section without its inputs is no empty heading there: a line of ``meta`` says which command
    fills it; report.json keeps it, with what is missing."""
    output.parent.mkdir(parents=True, exist_ok=True)
    paths = {"html": output, "markdown": output.with_suffix(".md"), "json": output.with_suffix(".json")}
    shown = [s for s in sections if not s.missing]
    meta = [*meta, *(f"Not in this report: {s.title}. {s.missing}" for s in sections if s.missing)]
    texts = {
        "html": to_html(TITLE, meta, shown),
        "markdown": to_markdown(TITLE, meta, shown, output.parent / f"{output.stem}_files"),
        "json": json.dumps(as_json(sections, header), indent=2, allow_nan=False) + "\n",
    }
    for kind, path in paths.items():
        partial = path.with_name(f".{path.name}.partial")
        partial.write_text(texts[kind], encoding="utf-8")
        partial.replace(path)
    return paths


def run(argv: list[str] | None = None) -> dict[str, Path]:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging("INFO")
    if args.bootstrap < 100:
        parser.error(f"--bootstrap: expected an integer >= 100; got {args.bootstrap}")
    if args.batch_size < 1:
        parser.error(f"--batch_size: expected an integer >= 1; got {args.batch_size}")
    if args.output.suffix.lower() not in (".html", ".htm"):
        parser.error(f"--output: expected a file name ending in .html; got {args.output}")
    from eegfm.evaluation.report.assemble import build_sections

    try:
        found = discover(args.run_dirs)
        sections = build_sections(args, found)
    except ConfigError as err:
        parser.error(str(err))
    created = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    meta = [f"Created {created} from {', '.join(p.name or str(p) for p in args.run_dirs)}."]
    header = {
        "created": created,
        "run_dirs": [str(p) for p in args.run_dirs],
        "seed": args.seed,
        "bootstrap": args.bootstrap,
    }
    paths = write_report(args.output, sections, meta, header)
    log.info("wrote %s, %s and %s", *paths.values())
    return paths


def main(argv: list[str] | None = None) -> int:
    fair_threads()  # before any work: core/threads.py
    print(run(argv)["html"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
