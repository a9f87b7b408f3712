"""API keys: bearer tokens from a file (one per line) or ``EEGFM_API_KEYS`` (comma separated).

The header is read as RFC 7235 (section 2.1) says: the scheme in any case (``bearer``, ``BEARER``)
and one or more spaces before the key. Keys are compared in constant time and never logged: the
request log names a key by its fingerprint (``key_fingerprint``), so an audit can tell clients
apart without learning a key. A route needs a key when it depends on :func:`authorized`: the
probes, metrics, docs and the page do not (a kubelet and a Prometheus scraper have none, and they
reveal no recording; the page sends the key its user types). :func:`needs_key` reads it off a route.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from pathlib import Path
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

ENV_KEYS = "EEGFM_API_KEYS"
MIN_KEY_LENGTH = 16
bearer = HTTPBearer(auto_error=False, description="an API key of the server's --api_keys_file or EEGFM_API_KEYS")


class ApiKeyError(ValueError):
    """Keys that cannot be used; the message names the file or variable."""


def load_api_keys(keys_file: str | None, environ: dict[str, str] | None = None) -> frozenset[str]:
    """The keys of ``keys_file`` (blank lines and ``#`` comments skipped) and of ``EEGFM_API_KEYS``."""
    environ = os.environ if environ is None else environ
    keys: list[tuple[str, str]] = []
    if keys_file:
        try:
            lines = Path(keys_file).read_text().splitlines()
        except OSError as err:
            raise ApiKeyError(f"--api_keys_file {keys_file}: cannot read it ({err.strerror})") from None
        keys += [(f"--api_keys_file {keys_file}", line.strip()) for line in lines]
    keys += [(ENV_KEYS, key.strip()) for key in environ.get(ENV_KEYS, "").split(",")]
    kept = {key for _, key in keys if key and not key.startswith("#")}
    for source, key in keys:
        # a comma: a file written in the variable's comma-separated form, which would otherwise
        # load as one long key that no client sends
        if key in kept and (len(key) < MIN_KEY_LENGTH or any(c.isspace() or c == "," for c in key)):
            raise ApiKeyError(
                f"{source}: expected keys of at least {MIN_KEY_LENGTH} characters without spaces or commas "
                "(a file has one per line; python -c 'import secrets; print(secrets.token_urlsafe(32))' "
                "makes one); one is not"
            )
    if keys_file and not kept:
        raise ApiKeyError(f"--api_keys_file {keys_file}: expected one key per line; found none")
    return frozenset(kept)


def key_is_known(given: str, keys: frozenset[str]) -> bool:
    """Whether ``given`` is one of ``keys``, every key compared (no early exit on a match)."""
    found = False
    for key in keys:
        found |= hmac.compare_digest(given.encode(), key.encode())
    return found


def key_fingerprint(key: str) -> str:
    """``key-`` and the first 12 hex digits of the key's SHA-256 (``printf %s KEY | sha256sum``)."""
    return "key-" + hashlib.sha256(key.encode()).hexdigest()[:12]


def require_key(request: Request, credentials: HTTPAuthorizationCredentials | None) -> None:
    """HTTPException 401 (``WWW-Authenticate: Bearer``) unless the request carries a known key, or
    the server runs with ``--no-auth`` (``app.state.api_keys`` None)."""
    keys = request.app.state.api_keys
    if keys is None:
        return
    challenge = {"WWW-Authenticate": 'Bearer realm="eegfm"'}
    if credentials is None:
        raise HTTPException(401, "header Authorization: expected 'Bearer <API key>'", headers=challenge)
    if not key_is_known(credentials.credentials, keys):
        challenge["WWW-Authenticate"] += ', error="invalid_token"'
        raise HTTPException(401, "header Authorization: the bearer token is no key of this server", headers=challenge)
    request.state.api_key = key_fingerprint(credentials.credentials)  # for the request log


def authorized(request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> None:
    """The dependency of every route that needs a key (:func:`require_key`); a route without it needs none."""
    require_key(request, credentials)


def needs_key(route) -> bool:
    """Whether an app's route depends on :func:`authorized`."""
    return any(getattr(dep, "dependency", None) is authorized for dep in getattr(route, "dependencies", ()))
