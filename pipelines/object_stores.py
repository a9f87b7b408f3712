"""Beam's ``FileSystems`` for object stores (``gs://``, ``s3://``), ready to use in any process.

Two things Beam leaves to its callers:

- **Options.** Beam builds a filesystem per call from the options given to
  ``FileSystems.set_options``; its S3 filesystem refuses to work without them ("Must provide one
  of client or options"). The preprocessing job sets its own pipeline options (``--s3_endpoint_url``,
  ``--s3_access_key_id`` ...). Processes that run no pipeline (training, evaluation) call
  :func:`filesystems`, which sets empty options, so boto3 and google-auth find credentials and
  endpoints where they always look: ``AWS_ACCESS_KEY_ID``, ``AWS_ENDPOINT_URL``, ``~/.aws``,
  ``GOOGLE_APPLICATION_CREDENTIALS``, the VM's service account.
- **Empty files on S3.** Beam's ``S3Uploader`` (apache-beam 2.77) writes every file as a
  multipart upload and completes one that has no part when nothing was written. S3 refuses that
  (400 MalformedXML), so an empty ``quarantine.jsonl`` or an empty shard failed the job after all
  its work. :func:`fix_s3_empty_uploads` makes the uploader send one empty part first, which S3
  accepts (a multipart upload's last part has no minimum size), as the AWS SDKs' own uploaders do.
  Modules that write through ``FileSystems`` apply it when imported, so it holds in every worker.
"""

from __future__ import annotations

import os
from typing import Any

_AWS_CREDENTIALS_FOUND = False  # once found, not looked up again (by every file a loader opens)
_GCP_CREDENTIALS_FOUND = False


def fix_s3_empty_uploads() -> None:
    """Make Beam's S3 uploader write empty files (idempotent; a no-op without Beam's S3 module)."""
    try:
        from apache_beam.io.aws import s3io
    except ImportError:
        return
    finish = s3io.S3Uploader.finish
    if getattr(finish, "eegfm_fixed", False):
        return

    def finish_with_a_part(self: Any) -> None:
        if not self.parts and not self.buffer and self.last_error is None:
            self._write_to_s3(b"")
        finish(self)

    finish_with_a_part.eegfm_fixed = True
    s3io.S3Uploader.finish = finish_with_a_part


def _store_errors() -> tuple[type[BaseException], ...]:
    try:  # google-cloud-storage's own, raised past Beam (a RetryError when the store cannot be reached)
        from google.api_core.exceptions import GoogleAPIError
    except ImportError:
        return (OSError,)
    return (OSError, GoogleAPIError)


# What a file-system call on an object store raises for the store's reasons (not the caller's).
STORE_ERRORS = _store_errors()


def storage_error(err: BaseException) -> str:
    """One line for a failed file-system call: each path and what the store said of it.

    Beam wraps the store's exceptions per path, sometimes twice (a match that lists), in
    ``BeamIOError``s whose text is a dict repr; this unwraps them to the innermost causes.
    """
    details = getattr(err, "exception_details", None)
    if isinstance(details, dict) and details:
        parts = []
        for path, cause in details.items():
            inner = storage_error(cause)  # a wrapped BeamIOError names its own paths
            parts.append(inner if getattr(cause, "exception_details", None) else f"{path}: {inner}")
        return "; ".join(parts)
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def check_s3_credentials(paths: list[str], options: Any = None) -> None:
    """Fail at once, naming the path, where an ``s3://`` path is to be used and boto3 finds no
    credentials. Beam would retry each request with exponential backoff for many minutes,
    logging a traceback per attempt, before giving up. ``options``: the pipeline options
    (``--s3_access_key_id`` counts as credentials); None where no pipeline runs."""
    remote = [p for p in paths if p.startswith("s3://")]
    if not remote:
        return
    if options is not None:
        from apache_beam.options.pipeline_options import S3Options

        if options.view_as(S3Options).s3_access_key_id:
            return
    global _AWS_CREDENTIALS_FOUND
    if _AWS_CREDENTIALS_FOUND:
        return
    import boto3

    _AWS_CREDENTIALS_FOUND = boto3.session.Session().get_credentials() is not None
    if not _AWS_CREDENTIALS_FOUND:
        raise OSError(f"{remote[0]}: no AWS credentials found: pass --s3_access_key_id and "
                      "--s3_secret_access_key (the preprocessing job), set AWS_ACCESS_KEY_ID and "
                      "AWS_SECRET_ACCESS_KEY, or configure a profile or role (~/.aws, instance metadata)")


def check_gcs_credentials(paths: list[str]) -> None:
    """Fail at once, naming the path, where a ``gs://`` path is to be written or holds a secret
    and google-auth finds no credentials. Beam would first retry finding them with exponential
    backoff (about 25 s of tracebacks), then go on anonymously and fail on the first write.
    Inputs are not checked: a public bucket can be read anonymously."""
    remote = [p for p in paths if p.startswith("gs://")]
    global _GCP_CREDENTIALS_FOUND
    if not remote or _GCP_CREDENTIALS_FOUND or os.environ.get("STORAGE_EMULATOR_HOST"):
        return
    import google.auth
    from google.auth.exceptions import DefaultCredentialsError

    try:
        google.auth.default()
    except DefaultCredentialsError:
        raise OSError(f"{remote[0]}: no Google Cloud credentials found: run `gcloud auth application-default "
                      "login`, set GOOGLE_APPLICATION_CREDENTIALS to a service-account key file, or run where "
                      "a service account is attached (a GCE VM, GKE with Workload Identity, Dataflow)") from None
    _GCP_CREDENTIALS_FOUND = True


def filesystems(*paths: str) -> Any:
    """Beam's ``FileSystems``, with options set where no pipeline set them (see the module doc),
    after :func:`check_s3_credentials` for ``paths``."""
    from apache_beam.io.filesystems import FileSystems
    from apache_beam.options.pipeline_options import PipelineOptions

    if getattr(FileSystems, "_pipeline_options", None) is None:
        FileSystems.set_options(PipelineOptions([]))
    fix_s3_empty_uploads()
    check_s3_credentials(list(paths), FileSystems._pipeline_options)
    return FileSystems
