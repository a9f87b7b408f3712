"""``--s3_anonymous``: read public S3 buckets (``s3://openneuro.org``) without credentials.

Importing this module registers the Beam pipeline option; ``install_s3_anonymous`` makes Beam's S3
client in the calling process send unsigned requests (as ``aws s3 --no-sign-request``) where the
option is set: the launcher and every worker's reading DoFn call it. Unsigned requests cannot write.
"""

from __future__ import annotations

from typing import Any

from apache_beam.options.pipeline_options import PipelineOptions

from eegfm.core.stores import patch_beam_once


class AnonymousS3Options(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser: Any) -> None:
        parser.add_argument(
            "--s3_anonymous",
            action="store_true",
            default=False,
            help="read s3:// inputs with unsigned requests (public buckets, no credentials)",
        )


def is_anonymous(options: Any) -> bool:
    """Whether ``options`` (pipeline options, or the dict Beam passes in some paths) ask for it."""
    if isinstance(options, PipelineOptions):
        return bool(options.view_as(AnonymousS3Options).s3_anonymous)
    return bool(options.get("s3_anonymous")) if isinstance(options, dict) else False


def install_s3_anonymous() -> None:
    """Make this process's Beam S3 clients send unsigned requests where their options say ``--s3_anonymous``."""

    def wrap(init: Any) -> Any:
        def init_unsigned_when_anonymous(self: Any, options: Any) -> None:
            init(self, options)
            if is_anonymous(options):
                from botocore.handlers import disable_signing  # heavy: only where a client is anonymous

                self.client.meta.events.register("choose-signer.s3.*", disable_signing)

        return init_unsigned_when_anonymous

    patch_beam_once("apache_beam.io.aws.clients.s3.boto3_client", "Client", "__init__", wrap)
