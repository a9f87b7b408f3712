"""benchmarks/train_loop.py: the real pretraining loop on a linked corpus, against its bare step."""

from __future__ import annotations

import json

import pytest

from benchmarks.corpora import link_corpus
from benchmarks.train_loop import main, steady_state
from eegfm.training.data import check_shards, describe, list_files


def test_link_corpus_repeats_every_site_without_copying_data(pipeline_output, tmp_path):
    windows = link_corpus(pipeline_output, 3, tmp_path / "corpus")
    shards = list_files(str(tmp_path / "corpus"))
    assert len(shards) == 3 * len(list_files(str(pipeline_output)))
    assert windows == 3 * describe(pipeline_output).counts["windows"]
    assert all((tmp_path / "corpus" / site).is_symlink() for site in {p.split("/")[-2] for p in shards})
    assert describe(tmp_path / "corpus").channels == describe(pipeline_output).channels
    assert check_shards(tmp_path / "corpus") == []  # its manifest lists every linked shard: training reads it
    with pytest.raises(ValueError, match="copies: expected an integer >= 1; got 0"):
        link_corpus(pipeline_output, 0, tmp_path / "none")


def test_steady_state_is_the_median_after_the_skipped_steps():
    metrics = [
        {"step": s, "samples_per_s": v, "tokens_per_s": 10 * v, "data_wait_fraction": v / 1000}
        for s, v in ((10, 1.0), (20, 50.0), (30, 70.0), (40, 60.0))
    ]
    assert steady_state(metrics, 10) == {
        "from_step": 10,
        "intervals": 3,
        "samples_per_s": 60.0,
        "tokens_per_s": 600,
        "data_wait_fraction": 0.06,
    }
    with pytest.raises(ValueError, match="skip_steps: no logged interval ends after step 40"):
        steady_state(metrics, 40)


@pytest.mark.slow  # the benchmark's own harness under torchrun: 25 s
def test_the_loop_runs_under_torchrun_and_is_compared_with_its_step(pipeline_output, capsys):
    assert (
        main(
            [
                "--data",
                str(pipeline_output),
                "--config",
                "cpu-tiny",
                "--copies",
                "2",
                "--max-steps",
                "6",
                "--skip-steps",
                "2",
                "--log-every",
                "2",
                "--set",
                "loader.batch_size=4",
                "--compare-step",
            ]
        )
        == 0
    )
    result = json.loads(capsys.readouterr().out)
    assert result["windows"] == 2 * describe(pipeline_output).counts["windows"]
    assert [i["step"] for i in result["intervals"]] == [2, 4, 6] and result["device"] == "cpu"
    assert result["steady"]["intervals"] == 2 and result["steady"]["samples_per_s"] > 0
    assert 0 < result["steady"]["data_wait_fraction"] < 1
    assert all(0 < i["data_wait_fraction"] < 1 for i in result["intervals"])
    assert result["step"]["batch"] == 4 and result["loop_over_step"] > 0
    assert result["memory"]["memory/peak_rss_mb"] > 0


def test_bad_arguments_name_the_option(pipeline_output, capsys):
    with pytest.raises(SystemExit):
        main(["--data", str(pipeline_output), "--max-steps", "10", "--skip-steps", "10"])
    assert "--skip-steps: expected an integer in [0, --max-steps=10); got 10" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--data", str(pipeline_output), "--copies", "0"])
    assert "--copies: expected an integer >= 1; got 0" in capsys.readouterr().err
