"""Training refuses a pipeline output whose shards are not the ones its manifest lists (emptied, cut,
lost, foreign, or no manifest at all), naming the file; --allow_partial reads the rest and says what
is missing. On a real run of pipelines.job.preprocess over eegmat recordings."""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import pytest

from eegfm.contract.tfrecord import read_records
from eegfm.evaluation.comparison.windows import load_windows
from eegfm.evaluation.loso import main as loso_main
from eegfm.pipelines.job.preprocess import run as preprocess
from eegfm.training import pretrain
from eegfm.training.data import IncompleteDataError, check_data, check_shards, list_files, scan_windows
from eegfm.training.finetune import cli as finetune

TINY = ["--config", "cpu-tiny", "--wandb", "disabled", "--max_steps", "1", "--resume", "none"]
TINY += ["--set", "loader.batch_size=4", "--set", "optim.warmup_steps=0", "--set", "save_every=1000"]


@pytest.fixture(scope="module")
def eegmat_output(shared_data, tmp_path_factory) -> Path:
    """Two sites of one eegmat arithmetic recording (62 s) each, two shards per site: 4 files of
    about 3 ten-second windows, with their manifest."""
    root = tmp_path_factory.mktemp("shard-check")
    for site, subject in (("hospital0", "00"), ("hospital1", "01")):
        (root / "corpus" / site).mkdir(parents=True)
        (root / "corpus" / site / f"Subject{subject}_2.edf").symlink_to(
            shared_data / "eegmat" / f"Subject{subject}_2.edf"
        )
    key = root / "pseudonym.key"
    key.write_text("shard check key 0123456789abcdef\n")
    key.chmod(0o600)
    out = root / "tfrecords"
    options = ["--pseudonym_key_file", str(key), "--no_artifact_model", "--num_shards", "2"]
    options += ["--runner", "DirectRunner", "--direct_running_mode", "in_memory"]
    preprocess(["--input", str(root / "corpus"), "--output", str(out), *options])
    return out


@pytest.fixture
def copy(eegmat_output, tmp_path) -> Path:
    """A copy of the output that a test may damage."""
    return Path(shutil.copytree(eegmat_output, tmp_path / "data"))


def _manifest(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text())


def test_the_manifest_lists_each_shards_records_and_bytes(eegmat_output):
    manifest = _manifest(eegmat_output)
    assert len(manifest["shards"]) == 4 and sorted(manifest["shard_records"]) == manifest["shards"]
    for name in manifest["shards"]:
        path = eegmat_output / name
        assert manifest["shard_bytes"][name] == path.stat().st_size > 0
        assert manifest["shard_records"][name] == sum(1 for _ in read_records(str(path))) > 0
    assert sum(manifest["shard_records"].values()) == manifest["counts"]["windows"] == len(scan_windows(eegmat_output))
    assert check_shards(eegmat_output) == []
    assert check_data(str(eegmat_output)) == str(eegmat_output)


def _damage(folder: Path, how: str) -> tuple[str, str]:
    """Damage ``folder`` as ``how`` says; the shard concerned (``<site>/<file>``) and the start of
    what the refusal says of it."""
    manifest = _manifest(folder)
    name = manifest["shards"][1]
    path, records, size = folder / name, manifest["shard_records"][name], manifest["shard_bytes"][name]
    listed = f"manifest.json lists {records} records, {size} bytes"
    if how == "empty":
        path.write_bytes(b"")
        return name, f"{path}: empty (0 bytes); {listed}"
    if how == "cut":
        path.write_bytes(path.read_bytes()[: size // 2])
        return name, f"{path}: short ({size // 2} bytes); {listed}"
    if how == "missing":
        path.unlink()
        return name, f"{path}: missing; {listed}"
    if how == "extra":
        extra = path.with_name("part-00002-of-00003.tfrecord")  # as a run with another shard count leaves
        shutil.copy(path, extra)
        return str(extra.relative_to(folder)), f"{extra}: not among the shards manifest.json lists"
    # A run stopped while renaming its shards: some are there, the manifest is not.
    (folder / "manifest.json").unlink()
    path.unlink()
    return "manifest.json", f"{folder / 'manifest.json'}: missing beside 3 shards; expected the manifest a finished"


@pytest.mark.parametrize("how", ["empty", "cut", "missing", "extra", "no manifest"])
def test_a_damaged_output_is_refused_naming_the_file_and_what_was_expected(copy, how):
    _, said = _damage(copy, how)
    with pytest.raises(IncompleteDataError) as err:
        check_data(str(copy))
    assert said in str(err.value) and "--allow_partial" in str(err.value)
    assert str(err.value).startswith(f"--data {copy}: 1 problem with its shards: ")


@pytest.mark.parametrize("how", ["empty", "missing", "extra", "no manifest"])
def test_allow_partial_reads_what_is_there_and_warns_of_what_is_missing(copy, how, caplog):
    whole, before = len(scan_windows(copy)), _manifest(copy)
    shard, said = _damage(copy, how)
    gone = before["shard_records"][before["shards"][1]] if how != "extra" else 0
    with caplog.at_level(logging.WARNING, logger="eegfm"):
        assert check_data(str(copy), allow_partial=True) == str(copy)
    [warning] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warning.startswith("--allow_partial: training on what is there (") and said in warning
    if how in ("empty", "missing"):
        assert f"(1 shard missing or empty, {gone} windows the manifest lists not read)" in warning
    if how == "no manifest":
        assert "(1 folder without a manifest, its shards unchecked)" in warning
    extra = sum(1 for _ in read_records(str(copy / shard))) if how == "extra" else 0
    assert len(scan_windows(copy)) == whole - gone + extra  # the rest, read


def test_a_folder_that_is_not_there_or_holds_no_shards_is_named_as_such(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"data_dir: {tmp_path / 'nowhere'} is not a directory"):
        check_data(str(tmp_path / "nowhere"), allow_partial=True)
    with pytest.raises(FileNotFoundError, match=f"data_dir: no TFRecord shards in {tmp_path}"):
        check_data(str(tmp_path))


def test_allow_partial_still_refuses_a_cut_shard_no_reader_gets_through(copy):
    _, said = _damage(copy, "cut")
    with pytest.raises(IncompleteDataError, match="remove the cut file") as err:
        check_data(str(copy), allow_partial=True)
    assert said in str(err.value)


def test_pretraining_and_fine_tuning_exit_2_naming_the_shard_and_allow_partial_trains(copy, encoder, tmp_path, capsys):
    name, said = _damage(copy, "empty")
    assert pretrain.main(["--data", str(copy), "--output", str(tmp_path / "refused"), *TINY]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith(f"pretrain: --data {copy}: 1 problem with its shards: ") and said in last
    assert not (tmp_path / "refused" / "checkpoints").exists()
    tune = ["--pretrained", str(encoder), "--data", str(copy), "--output", str(tmp_path / "tuned"), "--task", "eegmat"]
    assert finetune.main([*tune, "--config", "cpu-tiny", "--wandb", "disabled"]) == 2
    assert said in capsys.readouterr().err.strip().splitlines()[-1]

    assert pretrain.main(["--data", str(copy), "--output", str(tmp_path / "partial"), *TINY, "--allow_partial"]) == 0
    err = capsys.readouterr().err
    assert "WARNING" in err and f"{copy / name}: empty (0 bytes)" in err
    assert (tmp_path / "partial" / "model" / "config.json").is_file()
    assert json.loads((tmp_path / "partial" / "run.json").read_text())["config"]["allow_partial"] is True
    assert len(list_files(copy)) == 3 and os.path.getsize(copy / name) == 0


def test_evaluation_refuses_a_damaged_output_by_name(copy, encoder, tmp_path, capsys):
    _, said = _damage(copy, "missing")
    loso = ["--pretrained", str(encoder), "--data", str(copy), "--output", str(tmp_path / "loso"), "--task", "eegmat"]
    assert loso_main([*loso, "--config", "cpu-tiny", "--wandb", "disabled"]) == 2
    assert said in capsys.readouterr().err
    assert not (tmp_path / "loso").exists()
    with pytest.raises(IncompleteDataError, match="missing; manifest.json lists"):
        load_windows(str(copy), "eegmat_rest_task")
