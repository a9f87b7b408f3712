"""Beam's ``FileSystems`` for object stores (``gs://``, ``s3://``), ready to use in any process.

Three things Beam leaves to its callers:

- **Options.** Beam's S3 filesystem refuses to work without ``FileSystems.set_options``. Processes
  that run no pipeline (training, evaluation) call :func:`filesystems`, which sets empty options,
  so boto3 and google-auth find credentials and endpoints where they always look.
- **Empty files on S3.** Beam's ``S3Uploader`` (apache-beam 2.77) completes a multipart upload with
  no part for an empty file, which S3 refuses (400 MalformedXML). :func:`fix_s3_empty_uploads`
  makes it send one empty part first, as the AWS SDKs do.
- **An unreachable store.** Beam retries every request for minutes before failing;
  :func:`check_reachable` opens one TCP connection to the endpoint (or its proxy) and fails at once.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import logging
import os
import re
import shutil
import socket
import sys
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import IO, Any

_AWS_CREDENTIALS_FOUND = False  # once found, not looked up again (by every file a loader opens)
_GCP_CREDENTIALS_FOUND = False
_REACHABLE: set[tuple[str, int]] = set()  # endpoints connected to once; not checked again
CONNECT_TIMEOUT_S = 5.0
CONNECT_ATTEMPTS = 2


def patch_beam_once(module: str, owner: str, attribute: str, wrap: Callable[[Any], Any]) -> None:
    """Replace ``module.owner.attribute`` by ``wrap(original)`` once per process (idempotent; a
    no-op where the module cannot be imported, e.g. Beam without its AWS extra)."""
    try:
        target = getattr(importlib.import_module(module), owner)
    except ImportError:
        return
    original = getattr(target, attribute)
    if getattr(original, "eegfm_fixed", False):
        return
    replacement = wrap(original)
    replacement.eegfm_fixed = True
    setattr(target, attribute, replacement)


def fix_s3_empty_uploads() -> None:
    """Make Beam's S3 uploader write empty files (see the module doc)."""

    def wrap(finish: Any) -> Any:
        def finish_with_a_part(self: Any) -> None:
            if not self.parts and not self.buffer and self.last_error is None:
                self._write_to_s3(b"")
            finish(self)

        return finish_with_a_part

    patch_beam_once("apache_beam.io.aws.s3io", "S3Uploader", "finish", wrap)


# What a file-system call on an object store raises for the store's reasons (not the caller's):
# also google-cloud-storage's own errors, raised past Beam (a RetryError for an unreachable store).
try:
    from google.api_core.exceptions import GoogleAPIError

    STORE_ERRORS: tuple[type[BaseException], ...] = (OSError, GoogleAPIError)
except ImportError:
    STORE_ERRORS = (OSError,)


def read_errors() -> tuple[type[BaseException], ...]:
    """What reading a file raises for its own or its store's reasons: :data:`STORE_ERRORS` and, once
    Beam's S3 client is loaded, its ``S3ClientError`` (a 403 Forbidden, say), which is no OSError.
    Only a loaded client can raise it, so a local file is read without importing Beam (~1 s)."""
    messages = sys.modules.get("apache_beam.io.aws.clients.s3.messages")
    client_error = getattr(messages, "S3ClientError", None)
    return STORE_ERRORS if client_error is None else (*STORE_ERRORS, client_error)


def storage_error(err: BaseException) -> str:
    """One line for a failed file-system call: each path and what the store said of it (Beam's
    ``BeamIOError``s, a dict of causes per path, sometimes nested, unwrapped)."""
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
    credentials (Beam would retry for minutes). ``options``: the pipeline options, if any
    (``--s3_access_key_id`` counts as credentials)."""
    global _AWS_CREDENTIALS_FOUND
    remote = [p for p in paths if p.startswith("s3://")]
    if not remote or _AWS_CREDENTIALS_FOUND:
        return
    if options is not None:
        from apache_beam.options.pipeline_options import S3Options  # Beam: heavy, only where options were passed

        if options.view_as(S3Options).s3_access_key_id:
            return
    import boto3  # heavy: only where an s3:// path is used

    _AWS_CREDENTIALS_FOUND = boto3.session.Session().get_credentials() is not None
    if not _AWS_CREDENTIALS_FOUND:
        raise OSError(
            f"{remote[0]}: no AWS credentials found: pass --s3_access_key_id and "
            "--s3_secret_access_key (the preprocessing job), set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY, or configure a profile or role (~/.aws, instance metadata)"
        )


def check_gcs_credentials(paths: list[str]) -> None:
    """Fail at once, naming the path, where a ``gs://`` path to be written (or holding a secret)
    meets no google-auth credentials; Beam would retry for 25 s, then fail on the first write.
    Inputs are not checked: a public bucket can be read anonymously."""
    remote = [p for p in paths if p.startswith("gs://")]
    global _GCP_CREDENTIALS_FOUND
    if not remote or _GCP_CREDENTIALS_FOUND or os.environ.get("STORAGE_EMULATOR_HOST"):
        return
    # google-auth: heavy, only where a gs:// path is written
    import google.auth
    from google.auth.exceptions import DefaultCredentialsError

    try:
        google.auth.default()
    except DefaultCredentialsError:
        raise OSError(
            f"{remote[0]}: no Google Cloud credentials found: run `gcloud auth application-default "
            "login`, set GOOGLE_APPLICATION_CREDENTIALS to a service-account key file, or run where "
            "a service account is attached (a GCE VM, GKE with Workload Identity, Dataflow)"
        ) from None
    _GCP_CREDENTIALS_FOUND = True


class StoreUnreachableError(OSError):
    """An object store's endpoint took no connection (the message names the path and the host)."""


def store_endpoint(path: str, options: Any = None) -> str | None:
    """The URL the store's client connects to for ``path`` (None for other file systems): GCS or
    ``STORAGE_EMULATOR_HOST``; for S3 what boto3 resolves from ``--s3_endpoint_url`` and
    ``--s3_region_name`` (``options``), ``AWS_ENDPOINT_URL`` or the configured region."""
    if path.startswith("gs://"):
        emulator = os.environ.get("STORAGE_EMULATOR_HOST")
        if not emulator:
            return "https://storage.googleapis.com"
        return emulator if "://" in emulator else f"http://{emulator}"
    if not path.startswith("s3://"):
        return None
    endpoint = region = None
    if options is not None:
        from apache_beam.options.pipeline_options import S3Options  # Beam: heavy, only where options were passed

        s3 = options.view_as(S3Options)
        endpoint, region = s3.s3_endpoint_url, s3.s3_region_name
    return endpoint or _default_s3_endpoint(region)


@functools.lru_cache(maxsize=8)
def _default_s3_endpoint(region: str | None) -> str:
    """boto3's endpoint (a client costs tens of milliseconds; a loader asks per file)."""
    import boto3  # heavy: only for an s3:// path

    return boto3.session.Session().client("s3", region_name=region).meta.endpoint_url


def _via_proxy(url: str) -> tuple[str, str, int]:
    """(what is connected to, host, port) for ``url``: its own host, or the proxy that carries it
    (``HTTPS_PROXY``/``HTTP_PROXY`` unless ``NO_PROXY`` names the host)."""
    parts = urllib.parse.urlsplit(url)
    host, port = parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)
    proxy = urllib.request.getproxies().get(parts.scheme)
    if proxy and not urllib.request.proxy_bypass(host):
        via = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        return f"the proxy {via.hostname}:{via.port or 80}", via.hostname or "", via.port or 80
    return f"{host}:{port}", host, port


def unreachable(url: str) -> tuple[str, str] | None:
    """None where a TCP connection to ``url``'s host (or the proxy that carries it) opens, else
    ``(what was tried, why it failed)``; a host that answered once is not tried again."""
    target, host, port = _via_proxy(url)
    if (host, port) in _REACHABLE:
        return None
    reason = ""
    for _ in range(CONNECT_ATTEMPTS):
        try:
            with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S):
                _REACHABLE.add((host, port))
                return None
        except socket.gaierror as err:
            reason = f"its name does not resolve: {err.strerror or err}"
        except TimeoutError:
            reason = f"no answer within {CONNECT_TIMEOUT_S:g} s"
        except OSError as err:
            reason = err.strerror or type(err).__name__
    return target, reason


def check_reachable(paths: list[str], options: Any = None) -> None:
    """Fail at once, naming the path, where an object-store path's endpoint takes no TCP
    connection (see the module doc); each endpoint is tried once per process."""
    for path in paths:
        url = store_endpoint(path, options)
        failed = None if url is None else unreachable(url)
        if failed is not None:
            target, reason = failed
            if path.startswith("s3://"):
                hint = (
                    " and the endpoint (--s3_endpoint_url, AWS_ENDPOINT_URL; else the region: "
                    "--s3_region_name, AWS_DEFAULT_REGION)"
                )
            else:
                hint = " and STORAGE_EMULATOR_HOST" if os.environ.get("STORAGE_EMULATOR_HOST") else ""
            raise StoreUnreachableError(
                f"{path}: cannot reach the store at {target} ({reason}); check the "
                f"network, a firewall or proxy (HTTPS_PROXY){hint}"
            )


def filesystems(*paths: str) -> Any:
    """Beam's ``FileSystems``, with options set where no pipeline set them (see the module doc),
    after :func:`check_s3_credentials` and :func:`check_reachable` for ``paths``."""
    # apache_beam: ~1 s to import; only where a file system is really used
    from apache_beam.io.filesystems import FileSystems
    from apache_beam.options.pipeline_options import PipelineOptions

    if getattr(FileSystems, "_pipeline_options", None) is None:
        FileSystems.set_options(PipelineOptions([]))
    fix_s3_empty_uploads()
    check_s3_credentials(list(paths), FileSystems._pipeline_options)
    check_reachable(list(paths), FileSystems._pipeline_options)
    return FileSystems


def is_remote(path: str) -> bool:
    """An object-store URL (``gs://``, ``s3://`` ...) rather than a local path."""
    return "://" in path


def join_path(directory: str, *parts: str) -> str:
    return "/".join([directory.rstrip("/"), *parts]) if is_remote(directory) else os.path.join(directory, *parts)


def open_binary(path: str) -> IO[bytes]:
    """``path`` opened for reading bytes: a local file, or an object through Beam's FileSystems."""
    if not is_remote(path):
        return open(path, "rb")
    from apache_beam.io.filesystem import CompressionTypes  # Beam: heavy, only for a remote path

    return filesystems(path).open(path, compression_type=CompressionTypes.UNCOMPRESSED)


# What Beam's (and glob's) patterns read as wildcards or character classes.
_PATTERN_CHARS = re.compile(r"[*?\[\]]")


def match_below(folder: str, pattern: str = "*", limit: int | None = None) -> list:
    """Beam ``FileMetadata`` of the files matching ``pattern`` below ``folder``, whose own name is
    taken literally: wildcard characters in it (``EEG [2019]``) become "?" and the matches are
    filtered to those really below ``folder``."""
    from apache_beam.io.filesystems import FileSystems  # apache_beam: ~1 s to import; not at module load

    folder = folder.rstrip("/")
    special = _PATTERN_CHARS.search(folder) is not None
    wild = _PATTERN_CHARS.sub("?", folder)
    found = FileSystems.match([FileSystems.join(wild, pattern)], limits=[None if special else limit])
    kept = [m for m in found[0].metadata_list if not special or m.path.startswith(folder + "/")]
    return kept[:limit] if limit is not None else kept


@dataclass(frozen=True)
class LocalFileMetadata:
    """What Beam's ``FileMetadata`` says of a local file (its fields, its equality), without
    importing Beam (~1 s) where a command names one local file."""

    path: str
    size_in_bytes: int
    last_updated_in_seconds: float


def exists(path: str) -> bool:
    """``FileSystems.exists``: for a local path Beam's answer is ``os.path.exists``, asked here
    without importing Beam."""
    if not is_remote(path):
        return os.path.exists(path)
    from apache_beam.io.filesystems import FileSystems  # apache_beam: ~1 s to import; only for a remote path

    return FileSystems.exists(path)


def match_path(path: str) -> list:
    """Beam ``FileMetadata`` of the file ``path`` itself ([] if it is not there), whatever
    characters its name holds (``match_below``); for a local name without wildcard characters,
    the same fields as :class:`LocalFileMetadata`, as Beam's local file system finds them."""
    if not is_remote(path) and _PATTERN_CHARS.search(path) is None and not path.endswith(("/", "\\")):
        if not os.path.exists(path):
            return []
        return [LocalFileMetadata(path, os.path.getsize(path), os.path.getmtime(path))]
    from apache_beam.io.filesystems import FileSystems  # apache_beam: ~1 s to import; not at module load

    if _PATTERN_CHARS.search(path) is None:  # Beam asks for the one file's metadata
        return [m for m in FileSystems.match([path])[0].metadata_list if m.path == path]
    folder, _, name = path.rstrip("/").rpartition("/")
    return [m for m in match_below(folder or ".", _PATTERN_CHARS.sub("?", name)) if m.path == path]


def delete(paths: list[str]) -> None:
    """Delete these files (or folders, with their contents) exactly: Beam's local file system
    takes the paths as patterns, so a file in ``out [x]/`` was "not found"."""
    from apache_beam.io.filesystems import FileSystems  # apache_beam: ~1 s to import; not at module load

    local = [p for p in paths if not is_remote(p)]
    for path in local:
        with contextlib.suppress(FileNotFoundError):  # gone already: what a delete is for
            shutil.rmtree(path) if os.path.isdir(path) and not os.path.islink(path) else os.remove(path)
    remote = [p for p in paths if is_remote(p)]
    if remote:
        FileSystems.delete(remote)


def remove_folder(path: str) -> None:
    """Delete the files in ``path`` (a flat folder: a run's spill files or unfinished shards), then
    the folder itself where the file system has folders (an object store has only the objects)."""
    from apache_beam.io.filesystems import FileSystems  # apache_beam: ~1 s to import; not at module load

    files = [m.path for m in match_below(path)]
    if files:
        delete(files)
    if FileSystems.get_filesystem(path).has_dirs() and FileSystems.exists(path):
        delete([path])


def discard_folders(paths: Iterable[str]) -> None:
    """``remove_folder`` for temporary folders whose leftovers are only clutter: a folder that
    cannot be deleted is named in a warning, not raised."""
    for path in paths:
        try:
            remove_folder(path)
        except OSError as err:
            logging.getLogger("eegfm.object_stores").warning("could not delete the temporary folder %s: %s", path, err)
