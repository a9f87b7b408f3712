"""eegfm-serve's API keys: where they come from, what is refused, how they are compared, and how a
request's Authorization header is read (against a real server)."""

from __future__ import annotations

import pytest

from eegfm.serving.api.auth import ApiKeyError, key_is_known, load_api_keys
from tests.serving.serve_helpers import API_KEY

KEY = "a-key-of-twenty-four-chars"


def test_keys_come_from_the_file_and_the_environment(tmp_path):
    keys = tmp_path / "keys.txt"
    keys.write_text(f"# the ward's client\n{KEY}\n\n  second-key-0123456789  \n")
    found = load_api_keys(str(keys), {"EEGFM_API_KEYS": " third-key-0123456789abc, ,"})
    assert found == {KEY, "second-key-0123456789", "third-key-0123456789abc"}
    assert load_api_keys(None, {}) == frozenset()  # no keys: the server then needs --no-auth


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("short\n", "expected keys of at least 16 characters"),
        ("has a space in it 0123\n", "expected keys of at least 16 characters without spaces"),
        ("first-key-0123456789,second-key-0123456789\n", "without spaces or commas \\(a file has one per line"),
        ("# only a comment\n", "expected one key per line; found none"),
    ],
)
def test_unusable_key_files_are_refused_naming_the_file(tmp_path, text, message):
    keys = tmp_path / "keys.txt"
    keys.write_text(text)
    with pytest.raises(ApiKeyError, match=message) as refused:
        load_api_keys(str(keys), {})
    assert str(keys) in str(refused.value) and "short\n" not in str(refused.value)


def test_a_missing_file_and_a_short_environment_key_are_refused(tmp_path):
    with pytest.raises(ApiKeyError, match="--api_keys_file .*missing.txt: cannot read it"):
        load_api_keys(str(tmp_path / "missing.txt"), {})
    with pytest.raises(ApiKeyError, match="EEGFM_API_KEYS: expected keys of at least 16"):
        load_api_keys(None, {"EEGFM_API_KEYS": "tiny"})


def test_a_key_is_known_only_when_equal():
    keys = frozenset({KEY, "second-key-0123456789"})
    assert key_is_known(KEY, keys) and key_is_known("second-key-0123456789", keys)
    assert not key_is_known(KEY[:-1], keys) and not key_is_known(KEY + "x", keys) and not key_is_known("", keys)


@pytest.mark.parametrize(
    ("authorization", "status"),
    [
        (f"Bearer {API_KEY}", 200),
        (f"bearer {API_KEY}", 200),  # RFC 7235 section 2.1: the scheme is case-insensitive
        (f"BEARER {API_KEY}", 200),
        (f"Bearer  {API_KEY}", 200),  # 1*SP: one or more spaces before the token
        (f"Basic {API_KEY}", 401),
        (f"Bearer{API_KEY}", 401),
        (f"Bearer\t{API_KEY}", 401),
        ("Bearer ", 401),
        (f"Bearer {API_KEY}x", 401),
    ],
)
def test_the_bearer_scheme_is_read_as_rfc_7235_says(server, authorization, status):
    assert server.request("GET", "/v1/model", headers={"Authorization": authorization})[0] == status
