"""``eegfm-models``: versioned models in an object store (or folder).

``python -m eegfm.serving.models publish RUN_DIR STORE/NAME`` publishes a fine-tuning run's
serving files (no checkpoints), or a fused model folder (``eegfm-benchmark ... --export DIR``:
every file in it), as a version of the model NAME; ``alias`` moves an alias, ``list`` lists the
versions (``inference.model_versions``); ``python -m eegfm.serving.models RUN_DIR URL`` copies
them to URL, unversioned. ``--model STORE/NAME@ALIAS`` serves one (``inference.model_store``).
"""

from __future__ import annotations

import argparse
import sys

from eegfm.core.config import ConfigError
from eegfm.core.logs import get_logger, setup_logging
from eegfm.core.threads import fair_threads
from eegfm.inference import model_versions as versions
from eegfm.inference.model_store import DIGEST_PREFIX, split_versioned

ALIAS_HELP = "a name matching [a-z][a-z0-9_-]*, e.g. staging, production"
log = get_logger(__name__)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="eegfm-models",
        description="Publish fine-tuning runs as versions of a model in an object store (or folder), "
        "move its aliases and list them; eegfm-predict / eegfm-serve --model STORE/NAME@ALIAS serve "
        "one. (The older form `RUN_DIR URL` copies a run to URL, unversioned.)",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="{publish,alias,list}")
    publish = commands.add_parser("publish", help="publish a run as a version (once per content)")
    publish.add_argument(
        "run", help="the training.finetune run folder (with model/), or an eegfm-benchmark --export folder"
    )
    publish.add_argument("model", help="the model's URL: s3://bucket/models/NAME, gs://..., or a local folder")
    publish.add_argument("--alias", type=str, help=f"then point this alias at the version ({ALIAS_HELP})")
    alias = commands.add_parser("alias", help="point an alias at a version (moving it if it exists)")
    alias.add_argument("version", help="STORE/NAME@sha256:DIGEST (or a unique prefix, or another alias)")
    alias.add_argument("alias", help=f"the alias to set ({ALIAS_HELP})")
    listing = commands.add_parser("list", help="the model's versions, oldest first, with dates and aliases")
    listing.add_argument("model", help="the model's URL: s3://bucket/models/NAME, gs://..., or a local folder")
    return parser


def _run_command(args: argparse.Namespace) -> None:
    if args.command == "publish":
        digest = versions.publish_version(args.run, args.model, args.alias)
        print(f"{args.model}@{DIGEST_PREFIX}{digest}")
    elif args.command == "alias":
        model_url, ref = split_versioned(args.version) or (args.version, "")
        if not ref:
            raise ConfigError(f"{args.version}: expected STORE/NAME@VERSION (sha256:DIGEST or an alias)")
        versions.set_alias(model_url, args.alias, ref)
    else:
        rows = versions.describe_versions(args.model)
        log.info("%s: %d versions", args.model, len(rows))
        for row in rows:
            print(f"{row['digest']}  {row['created']}  {' '.join(row['aliases'])}".rstrip())


def _publish_unversioned(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="eegfm-models",
        description="Copy a fine-tuning run's model to an object store (or folder), unversioned.",
    )
    parser.add_argument(
        "run", help="the training.finetune run folder (with model/), or an eegfm-benchmark --export folder"
    )
    parser.add_argument("url", help="where to: s3://bucket/runs/NAME, gs://..., or a local folder")
    args = parser.parse_args(argv)
    try:
        written = versions.publish_model(args.run, args.url)
    except (ConfigError, OSError) as err:
        parser.error(str(err))
    log.info("published %d files of %s to %s", len(written), args.run, args.url)
    return 0


def main(argv: list[str] | None = None) -> int:
    fair_threads()  # before any work: core/threads.py
    argv = sys.argv[1:] if argv is None else list(argv)
    setup_logging("INFO")
    if argv and not argv[0].startswith("-") and argv[0] not in ("publish", "alias", "list"):
        return _publish_unversioned(argv)
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        _run_command(args)
    except (ConfigError, OSError) as err:
        parser.error(str(err))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
