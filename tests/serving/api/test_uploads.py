"""A zip's members against the server's caps (``eegfm.serving.api.uploads``): counted before zipfile
parses the archive, each at least a block of the budget, extracted in time linear in their number,
and stopped at a checkpoint once the request is abandoned."""

from __future__ import annotations

import gzip
import io
import threading
import time
import zipfile

import pytest

from eegfm.serving.api import uploads
from eegfm.serving.api.stopping import CANCELLED, Abandoned
from eegfm.serving.api.uploads import MAX_ZIP_MEMBERS, ExpansionBudget, UploadError, check_zip_members, unpack_zip


def tiny_members(n: int, name: str = "m{:05d}.txt") -> bytes:
    """A zip of ``n`` one-byte stored members, made in memory (10,001 in about a second)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as zipped:
        for index in range(n):
            zipped.writestr(name.format(index), b"x")
    return buffer.getvalue()


def test_a_zip_past_the_member_cap_is_refused_before_it_is_parsed(tmp_path):
    at_cap, past = tmp_path / "at.zip", tmp_path / "past.zip"
    at_cap.write_bytes(tiny_members(MAX_ZIP_MEMBERS))
    past.write_bytes(tiny_members(MAX_ZIP_MEMBERS + 1))
    check_zip_members(at_cap)
    with pytest.raises(UploadError) as refused:
        unpack_zip(past, tmp_path / "files", ExpansionBudget(past.stat().st_size, 1 << 30))
    assert refused.value.status == 413 and f"more than {MAX_ZIP_MEMBERS} members" in refused.value.message
    assert not (tmp_path / "files").exists()
    # counted on the bytes, before zipfile reads them: a directory zipfile could not even parse
    unparsable = tmp_path / "bad.zip"
    unparsable.write_bytes(b"PK\x01\x02" * (MAX_ZIP_MEMBERS + 1))
    with pytest.raises(UploadError, match=f"more than {MAX_ZIP_MEMBERS} members"):
        unpack_zip(unparsable, tmp_path / "files", ExpansionBudget(unparsable.stat().st_size, 1 << 30))


def test_a_signature_split_between_blocks_is_counted_once(tmp_path, monkeypatch):
    monkeypatch.setattr(uploads, "MAX_ZIP_MEMBERS", 2)
    path = tmp_path / "a.zip"
    for at in range(uploads.CHUNK - 4, uploads.CHUNK + 1):  # each position across the first boundary
        data = bytearray(uploads.CHUNK * 2)
        data[at : at + 4] = b"PK\x01\x02"
        data[-8:-4] = b"PK\x01\x02"
        path.write_bytes(bytes(data))
        check_zip_members(path)  # two signatures: at the cap, not past it
        data[10:14] = b"PK\x01\x02"
        path.write_bytes(bytes(data))
        with pytest.raises(UploadError):
            check_zip_members(path)


def test_each_member_costs_the_budget_at_least_a_block(tmp_path):
    archive = tmp_path / "a.zip"
    archive.write_bytes(tiny_members(100))
    with pytest.raises(UploadError, match="the zip expands past this upload's budget"):
        unpack_zip(archive, tmp_path / "files", ExpansionBudget(archive.stat().st_size, 99 * uploads.MEMBER_BLOCK))
    assert (
        unpack_zip(archive, tmp_path / "ok", ExpansionBudget(archive.stat().st_size, 100 * uploads.MEMBER_BLOCK)) == []
    )
    assert len(list((tmp_path / "ok").iterdir())) == 100


def _unpack_seconds(tmp_path, archive: bytes, name: str) -> float:
    path = tmp_path / f"{name}.zip"
    path.write_bytes(archive)
    started = time.perf_counter()
    unpack_zip(path, tmp_path / name, ExpansionBudget(path.stat().st_size, 1 << 30))
    return time.perf_counter() - started


def test_unpacking_takes_time_linear_in_the_members(tmp_path):
    """Four times the members, about four times the time (quadratic would be 16x): best of two."""
    small, large = tiny_members(1000), tiny_members(4000)
    one = min(_unpack_seconds(tmp_path, small, f"s{k}") for k in range(2))
    four = min(_unpack_seconds(tmp_path, large, f"l{k}") for k in range(2))
    assert four < 8 * one, (one, four)


def test_an_abandoned_request_extracts_and_decompresses_nothing_more(tmp_path):
    archive = tmp_path / "a.zip"
    archive.write_bytes(tiny_members(50))
    packed = tmp_path / "r.edf.gz"
    packed.write_bytes(gzip.compress(bytes(4 << 20)))
    cancelled = threading.Event()
    cancelled.set()  # what the client's disconnect or the server's stop does
    token = CANCELLED.set(cancelled)
    try:
        with pytest.raises(Abandoned):
            unpack_zip(archive, tmp_path / "files", ExpansionBudget(archive.stat().st_size, 1 << 30))
        with pytest.raises(Abandoned):
            uploads.gunzip(packed, ExpansionBudget(packed.stat().st_size, 1 << 30))
    finally:
        CANCELLED.reset(token)
    assert list((tmp_path / "files").iterdir()) == []
    assert packed.exists()  # left for the request's folder to remove with the rest
