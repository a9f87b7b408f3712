"""De-identification: keyed pseudonyms and the few clinical fields allowed out of a reader.

A whitelist: a reader returns only a `ClinicalInfo` (age in whole years capped at 90, as HIPAA's
safe harbour requires, and sex); identifiers become HMAC-SHA256 pseudonyms under a secret key,
stable wherever the key is shared and irreversible without it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import hmac
import logging
import os
import secrets
from pathlib import Path

MIN_KEY_BYTES = 16
AGE_CAP_YEARS = 90.0
_PREFIXES = {"site": "site", "subject": "sub", "session": "ses", "recording": "rec"}
PSEUDONYM_KINDS = tuple(_PREFIXES)
# Every command's key unless told otherwise (eegfm-preprocess, eegfm-predict, eegfm-redact): one key per
# user, outside any output folder (outputs get shared; the key must not travel with them), so the same
# file gets the same token in every run and eegfm-redact maps them all back.
DEFAULT_KEY_FILE = os.path.join(os.path.expanduser("~"), ".config", "eegfm", "pseudonym.key")


class PseudonymKeyError(ValueError):
    """The pseudonym key file is missing, unreadable or too short."""


def load_key(path: str | os.PathLike) -> bytes:
    """Read a pseudonym key (raw bytes, whitespace stripped), local or on an object store; raises PseudonymKeyError."""
    if "://" in str(path):
        # Beam and core.stores (google-api-core, ~180 modules) only for a key on an object store:
        # the readers, which import this module, run without them.
        from apache_beam.io.filesystems import FileSystems

        from eegfm.core.stores import STORE_ERRORS, storage_error

        try:
            with FileSystems.open(str(path)) as fh:
                key = fh.read().strip()
        except STORE_ERRORS as err:
            raise PseudonymKeyError(f"--pseudonym_key_file {path}: cannot read it ({storage_error(err)})") from None
    else:
        try:
            key = Path(path).read_bytes().strip()
        except OSError as err:
            raise PseudonymKeyError(f"--pseudonym_key_file {path}: cannot read ({err.strerror})") from err
    if len(key) < MIN_KEY_BYTES:
        raise PseudonymKeyError(
            f"--pseudonym_key_file {path}: expected at least {MIN_KEY_BYTES} bytes of secret; got {len(key)}"
        )
    return key


def warn_if_shared(path: str | os.PathLike) -> None:
    """Warn where a local key file is open to others: the key links pseudonyms to the identifiers tried."""
    mode = Path(path).stat().st_mode & 0o777
    if mode & 0o077:
        logging.getLogger("eegfm.deid").warning(
            "--pseudonym_key_file %s: readable or writable by others (mode %04o); only its owner should read "
            "it: chmod 600 %s",
            path,
            mode,
            path,
        )


def create_key(path: str | os.PathLike) -> bytes:
    """Write a new random 32-byte key (hex) readable only by its owner; refuse to overwrite."""
    path = Path(path)
    key = secrets.token_hex(32).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as fh:
        fh.write(key + b"\n")
    return key


def ensure_key(path: str | os.PathLike, create: bool = False) -> None:
    """A new key file at a missing local ``path`` that is the default or ``create``; PseudonymKeyError
    elsewhere (a mistyped path would otherwise make a new key whose tokens match no earlier run)."""
    path = str(path)
    if "://" in path or os.path.exists(path):  # an object store's key is made by its owner
        return
    if path != DEFAULT_KEY_FILE and not create:
        raise PseudonymKeyError(
            f"--pseudonym_key_file {path}: no such file; for a first run pass --create_key_file to create a "
            f"new key there (a new key gives new pseudonyms), or leave the flag out to use {DEFAULT_KEY_FILE}"
        )
    create_key(path)
    logging.getLogger("eegfm.deid").info("created a new pseudonym key at %s (keep it for stable pseudonyms)", path)


def keyed_hex(key: bytes, kind: str, value: str) -> str:
    """HMAC-SHA256 of ``value`` under ``key``, domain-separated by its ``kind``, in hex. A file name
    that is not UTF-8 (a Latin-1 export's ``M\\xfcller.edf``, which Python spells with a surrogate
    escape) is hashed as its bytes on disk, so it gets a token like any other name."""
    return hmac.new(key, f"{kind}\x00{value}".encode("utf-8", "surrogateescape"), hashlib.sha256).hexdigest()


def pseudonym(key: bytes, kind: str, value: str, *, length: int = 16) -> str:
    """`<kind-prefix>-<hex>`: HMAC-SHA256 of the identifier, domain-separated by its kind."""
    if kind not in PSEUDONYM_KINDS:
        raise ValueError(f"kind: expected one of {', '.join(PSEUDONYM_KINDS)}; got {kind!r}")
    return f"{_PREFIXES[kind]}-{keyed_hex(key, kind, value)[:length]}"


@dataclasses.dataclass(frozen=True)
class ClinicalInfo:
    """The only patient facts that leave a reader."""

    age: float | None = None  # whole years, capped at 90
    sex: str = ""  # 'F', 'M' or '' when unknown

    def __post_init__(self) -> None:
        if self.sex not in ("F", "M", ""):
            raise ValueError(f"sex: expected 'F', 'M' or ''; got {self.sex!r}")
        if self.age is not None and not 0 <= self.age <= AGE_CAP_YEARS:
            raise ValueError(f"age: expected 0..{AGE_CAP_YEARS:g} years or None; got {self.age!r}")


def safe_age(age_years: float | None) -> float | None:
    """Whole years, capped at 90; None for missing or impossible values."""
    if age_years is None or not (0 <= age_years < 150):
        return None
    return float(min(int(age_years), AGE_CAP_YEARS))


def age_from_dates(birth: dt.date | None, recorded: dt.date | None) -> float | None:
    """Age in whole years at recording time (the dates themselves are identifiers and stay here)."""
    if birth is None or recorded is None:
        return None
    years = recorded.year - birth.year - ((recorded.month, recorded.day) < (birth.month, birth.day))
    return safe_age(years)


def normalize_sex(value: object) -> str:
    """'F'/'M'/'' from the spellings headers and sidecars use (F, female, 2, M, male, 1 ...)."""
    text = str(value).strip().lower() if value is not None else ""
    if text in ("f", "female", "w", "woman", "2"):
        return "F"
    if text in ("m", "male", "man", "1"):
        return "M"
    return ""
