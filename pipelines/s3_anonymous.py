"""``--s3_anonymous``: read public S3 buckets (OpenNeuro's BIDS data sets, ``s3://openneuro.org``)
without an AWS account.

Beam's S3 client signs every request, and boto3 cannot sign without credentials, so a bucket that
anyone may read was unreadable without them. With this Beam pipeline option the job's S3 client
sends unsigned requests, as ``aws s3 ls --no-sign-request`` does; objects the bucket does not make
public answer 403, named in the quarantine like any unreadable file. Importing this module
registers the option; ``install_s3_anonymous`` changes Beam's S3 client in the calling process:
the launcher calls it where it parses the options, and the DoFn that reads the recordings in its
``setup`` on every worker. Unsigned requests cannot write, so outputs and the key file stay elsewhere.
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
                from botocore.handlers import disable_signing

                self.client.meta.events.register("choose-signer.s3.*", disable_signing)

        return init_unsigned_when_anonymous

    patch_beam_once("apache_beam.io.aws.clients.s3.boto3_client", "Client", "__init__", wrap)
