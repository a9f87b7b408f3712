"""Gzipped recordings stop expanding at a cap, and inputs no reader can trust end at ``read``, not
``unexpected``: each quarantined by name while the good files beside them are processed."""

import gzip
import hashlib
import io
import json
import os
import re
import tempfile

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from eegfm.core.config import ConfigError
from eegfm.pipelines.job.options import build_parser, config_from_args
from eegfm.pipelines.job.preprocess import run
from eegfm.pipelines.job.process_io import PreprocessConfig, StageError
from eegfm.pipelines.privacy.deid import load_key
from eegfm.pipelines.privacy.redact import PathRedactor
from eegfm.pipelines.readers.local_copy import RATIO_FLOOR, DecompressLimit, _copy, localized
from tests.pipelines.readers.test_sampling_rate_range import write_rate_edf

BOMB_BYTES = 200 << 20


@pytest.fixture(scope="module")
def bomb(tmp_path_factory):
    """An EDF header and then 200 MiB of zeros, gzipped to a few hundred KB."""
    path = tmp_path_factory.mktemp("bomb") / "bomb.edf.gz"
    zeros = bytes(1 << 20)
    with gzip.open(path, "wb", compresslevel=1) as packed:
        packed.write(b"0".ljust(256, b" "))
        for _ in range(BOMB_BYTES >> 20):
            packed.write(zeros)
    return path


@pytest.fixture
def temp_folder(tmp_path, monkeypatch):
    """The folder `tempfile` (and so `localized`) works in, for this test alone."""
    folder = tmp_path / "temp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def _stopped_after(reason: str) -> int:
    return int(re.search(r"stopped after (\d+) bytes", reason).group(1))


def test_a_gzip_bomb_stops_at_the_ratio_cap_and_leaves_nothing_in_the_temp_folder(bomb, temp_folder, tmp_path):
    small = tmp_path / "small.edf.gz"
    small.write_bytes(gzip.compress(b"0" * 4096))
    with localized(str(small)) as (local, _):  # where the bomb is decompressed too
        assert local.startswith(str(temp_folder)) and os.path.getsize(local) == 4096
    stored = os.path.getsize(bomb)
    assert BOMB_BYTES > 50 * stored  # a bomb by the default ratio
    with pytest.raises(StageError) as caught, localized(str(bomb)):
        pass
    assert caught.value.stage == "read"
    assert caught.value.reason.startswith(
        f"decompressed size: over 50x the {stored} bytes stored (the max_decompressed_ratio cap)"
    )
    assert "raise --max_decompressed_ratio" in caught.value.reason
    assert _stopped_after(caught.value.reason) <= max(RATIO_FLOOR, 50 * stored)
    assert os.listdir(temp_folder) == []


def test_the_absolute_cap_is_never_passed_on_disk(bomb):
    cap = DecompressLimit(ratio=1e6, gb=0.02).cap(os.path.getsize(bomb))
    assert cap[0] == 20_000_000
    written = io.BytesIO()
    with open(bomb, "rb") as src, pytest.raises(StageError) as caught:
        _copy(src, written, hashlib.sha256(), gzipped=True, cap=cap)
    assert 19_000_000 < len(written.getvalue()) <= 20_000_000
    assert caught.value.reason == (
        "decompressed size: over the 0.02 GB cap (max_decompressed_gb); if the recording is this large, "
        f"raise --max_decompressed_gb; stopped after {len(written.getvalue())} bytes"
    )


def test_the_caps_are_options_validated_by_name():
    args = build_parser().parse_args(
        ["--input", "x", "--output", "y", "--max_decompressed_ratio", "8", "--max_decompressed_gb", "0.5"]
    )
    config = config_from_args(args)
    assert (config.max_decompressed_ratio, config.max_decompressed_gb) == (8.0, 0.5)
    with pytest.raises(ConfigError, match=r"max_decompressed_ratio: expected a value in \[1.0, 1000000.0\]; got 0.5"):
        PreprocessConfig(max_decompressed_ratio=0.5)
    with pytest.raises(ConfigError, match=r"max_decompressed_gb: expected a value in \(0.0, 1000000.0\]; got 0"):
        PreprocessConfig(max_decompressed_gb=0)


def _typed_parquet(source, path, column: str, values: pa.Array) -> None:
    table = pq.read_table(source)
    pq.write_table(table.set_column(table.schema.get_field_index(column), column, values), path)


IDENTIFIER = "DOE_JOHN_MRN1234567_1960-01-01"


def test_a_bad_input_corpus_is_quarantined_at_read_naming_file_and_field_and_leaks_no_identifier(
    shared_data, key_file, bomb, temp_folder, tmp_path, caplog
):
    """Untrustworthy inputs beside good ones, under clinic-style names, with default options: each bad one is
    quarantined at read naming its (tokenized) file and the field, the good ones are processed, the temp folder
    is left empty, and the name, record number and birth date reach no output or log."""
    hms, ward = tmp_path / "in" / "hms" / "train_eegs", tmp_path / "in" / IDENTIFIER
    hms.mkdir(parents=True)
    ward.mkdir(parents=True)
    good_parquet = shared_data / "hms" / "train_eegs" / "1000913311.parquet"
    (hms / "1000913311.parquet").symlink_to(good_parquet)
    n = pq.ParquetFile(good_parquet).metadata.num_rows
    _typed_parquet(good_parquet, hms / "1.parquet", "Cz", pa.array(np.arange(n) % 2 == 0))
    _typed_parquet(good_parquet, hms / "2.parquet", "F3", pa.array(np.arange(n).astype("datetime64[ms]")))
    _typed_parquet(good_parquet, hms / "3.parquet", "EKG", pa.array([str(v) for v in range(n)]))
    (ward / f"{IDENTIFIER}_bomb.edf.gz").symlink_to(bomb)
    good_edf = (shared_data / "eegmat" / "Subject00_2.edf").read_bytes()
    (ward / f"{IDENTIFIER}_good.edf.gz").write_bytes(gzip.compress(good_edf, 1))
    write_rate_edf(ward / f"{IDENTIFIER}_fast.edf", 0.000001, 500)
    (ward / f"{IDENTIFIER}_gone.edf").symlink_to(tmp_path / "nowhere.edf")
    with caplog.at_level("INFO"):
        manifest = run(
            [
                *("--input", str(tmp_path / "in"), "--output", str(tmp_path / "out")),
                *("--pseudonym_key_file", key_file, "--no_artifact_model"),
                *("--max_decompressed_gb", "0.05", "--max_decompressed_ratio", "10000"),
                *("--runner", "DirectRunner", "--direct_running_mode", "in_memory"),
            ]
        )
    token = PathRedactor(load_key(key_file)).name
    found = {os.path.basename(entry["source"]): entry for entry in manifest["inputs"]}
    assert (
        found[token("1000913311.parquet")]["status"]
        == found[token(f"{IDENTIFIER}_good.edf.gz")]["status"]
        == "processed"
    )
    expected = {
        token("1.parquet"): "column Cz: expected numbers (an integer or floating-point type); got type bool",
        token("2.parquet"): "column F3: expected numbers (an integer or floating-point type); got type timestamp[ms]",
        token("3.parquet"): "column EKG: expected numbers (an integer or floating-point type); got type string",
        token(f"{IDENTIFIER}_bomb.edf.gz"): "decompressed size: over the 0.05 GB cap (max_decompressed_gb); if the "
        "recording is this large, raise --max_decompressed_gb; stopped after ",
        token(f"{IDENTIFIER}_fast.edf"): "header fields duration of a data record (1e-06 s) and samples per record "
        "(500) give a sampling rate of 5e+08 Hz; expected 1 to 100000 Hz",
        token(f"{IDENTIFIER}_gone.edf"): "dangling symbolic link",
    }
    for name, reason in expected.items():
        assert (found[name]["status"], found[name]["stage"]) == ("quarantined", "read"), found[name]
        assert found[name]["reason"].startswith(f"{name}: {reason}"), found[name]["reason"]
    assert _stopped_after(found[token(f"{IDENTIFIER}_bomb.edf.gz")]["reason"]) <= 50_000_000
    lines = [json.loads(line) for line in open(tmp_path / "out" / "quarantine.jsonl")]
    quarantined = {os.path.basename(q["path"]): q for q in lines if q["kind"] == "input"}
    assert set(quarantined) == set(expected)
    assert all(quarantined[name]["reason"] == found[name]["reason"] for name in expected)
    assert [p for p in os.listdir(temp_folder) if p.startswith("eegfm-")] == []
    outputs = [p for p in (tmp_path / "out").rglob("*") if p.is_file()]
    texts = [caplog.text] + [p.read_text() for p in outputs if p.suffix in (".json", ".jsonl", ".csv", ".txt", ".md")]
    for part in ("DOE", "JOHN", "MRN1234567", "1960"):
        assert not any(part in text for text in texts), part
        assert not any(part in str(p) for p in outputs), part
