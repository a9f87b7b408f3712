"""Choosing between fine-tuning recipes on validation (``runs.run_methods``' alternatives):
the row takes, per fold and seed, the run with the best validation metrics, never the test's; and
a pretraining or run folder is reused while its fingerprint is the same, made anew otherwise."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from eegfm.core.config import ConfigError
from eegfm.evaluation.comparison import fingerprint, pretrainings, runs
from eegfm.evaluation.comparison.cli import build_parser
from eegfm.evaluation.comparison.options import BenchmarkOptions
from eegfm.evaluation.comparison.runs import METHODS, RecipeOptions, choose_runs, validation_score


def _report(val: float, test: float) -> dict:
    return {"val": {"balanced_accuracy": val, "auroc": val, "auprc": val}, "test": {"auroc": test}, "run": f"r{val}"}


def test_validation_chooses_per_seed_and_test_never_does():
    reports = {
        "eegfm": {"corpus": [_report(0.9, 0.5), _report(0.6, 0.99)]},
        "linear_probe": {"corpus": [_report(0.8, 0.99), _report(0.7, 0.1)]},
    }
    found = choose_runs(reports, {"eegfm": ("linear_probe",)}, asked=["eegfm"])
    assert list(found) == ["eegfm", "eegfm_full"]  # the probe was not asked for: no row of its own
    first, second = found["eegfm"]["corpus"]
    assert (first["chosen"], first["test"]["auroc"]) == ("eegfm", 0.5)
    assert (second["chosen"], second["test"]["auroc"]) == ("linear_probe", 0.1)
    assert [r["val"]["auroc"] for r in found["eegfm_full"]["corpus"]] == [0.9, 0.6]


def test_a_tie_keeps_the_method_s_own_run_and_a_run_without_metrics_scores_lowest():
    own, other = _report(0.7, 0.0), _report(0.7, 1.0)
    found = choose_runs(
        {"eegfm": {"f": [own]}, "linear_probe": {"f": [other]}}, {"eegfm": ("linear_probe",)}, ["eegfm"]
    )
    assert found["eegfm"]["f"][0]["chosen"] == "eegfm"
    assert validation_score({"val": {}}) == float("-inf") and validation_score(own) == pytest.approx(0.7)


def test_reference_rows_run_the_first_seed_unless_reference_seeds_says_otherwise():
    folder = ["folder", "--data", "d", "--labels", "l.csv", "--output", "o"]
    args = build_parser().parse_args(folder)
    default = RecipeOptions.from_options(BenchmarkOptions.from_args(args), "binary")
    for own in ("eegfm", "linear_probe", "eegfm_shared", "eegfm_fusion", "spectrogram_cnn", "ensemble"):
        assert not METHODS[own].reference and default.seeds_of(METHODS[own], args.seeds) == [0, 1, 2]
    for reference in ("scratch", "eegfm_10pct", "scratch_10pct", "cbramod", "labram", "cbramod_pretrained"):
        assert METHODS[reference].reference and default.seeds_of(METHODS[reference], args.seeds) == [0]
    args = build_parser().parse_args([*folder, "--seeds", "3", "4", "--reference_seeds", "4", "5"])
    chosen = RecipeOptions.from_options(BenchmarkOptions.from_args(args), "binary")
    assert chosen.seeds_of(METHODS["cbramod"], args.seeds) == [4, 5]
    assert chosen.seeds_of(METHODS["labram_probe"], args.seeds) == [4, 5]
    assert chosen.seeds_of(METHODS["eegfm"], args.seeds) == [3, 4]


def test_the_labeled_suites_pretrained_eegfm_runs_keep_the_last_epoch_and_from_scratch_ones_validations():
    opts = RecipeOptions(
        config="cpu-tiny",
        task="eegmat",
        eegfm_settings=runs.EEGFM_SETTINGS,
        pretrained_settings=runs.PRETRAINED_SETTINGS,
    )
    chosen_by = {m: opts.finetune_config(0, {}, METHODS[m]).epochs_chosen_by for m in METHODS if m != "ensemble"}
    assert {m for m, rule in chosen_by.items() if rule == "none"} == {
        "eegfm", "eegfm_shared", "eegfm_adapted", "linear_probe", "eegfm_10pct", "eegfm_fusion",
    }  # fmt: skip
    assert chosen_by["scratch"] == chosen_by["cbramod_pretrained"] == "validation"  # another architecture's own
    given = dataclasses.replace(opts, finetune_set=("epochs_chosen_by=validation",))
    assert given.finetune_config(0, {}, METHODS["eegfm"]).epochs_chosen_by == "validation"  # the user's word wins
    recorded = {m: runs.run_fields("d", METHODS[m], 0, opts, {})["settings"]["eegfm"] for m in ("eegfm", "scratch")}
    assert ["epochs_chosen_by", "none"] in recorded["eegfm"] and ["epochs_chosen_by", "none"] not in recorded["scratch"]


def _fake(monkeypatch, module, name: str, marker: str) -> list:
    """``module.<name>`` (a typed job: config, then the job) replaced by one that writes ``marker``
    under the job's output folder: the calls."""
    calls = []

    def job(cfg, spec, **_):
        calls.append((cfg, spec))
        run = getattr(spec, "run", spec)
        path = Path(run.output) / marker
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text('{"val": {}}')
        return 0

    monkeypatch.setattr(module, name, job)
    return calls


def test_pretraining_and_runs_are_made_anew_when_what_they_depend_on_changes(tmp_path, monkeypatch, caplog):
    pretrain_calls = _fake(monkeypatch, pretrainings.pretraining, "pretrain", "model/config.json")
    finetunings = _fake(monkeypatch, runs.finetuning, "finetune", "eval.json")
    data = tmp_path / "data"
    fingerprint.write(data, {"labels": "a", "window_seconds": 5.0})  # as preprocessing leaves it
    opts = RecipeOptions(config="cpu-tiny", task="binary", pretrain_steps=4)
    method, split = METHODS["eegfm"], {"corpus_split": True}

    def both(opts=opts, seed=0):
        encoder = pretrainings.pretrain([str(data)], tmp_path / "pretrain", opts)
        runs.finetune(str(data), encoder, tmp_path / "runs" / "eegfm" / "corpus" / "seed0", method, seed, opts, split)

    both()
    (tmp_path / "pretrain" / "leftover").write_text("from the first pretraining")
    both()
    assert (len(pretrain_calls), len(finetunings)) == (1, 1)  # the same inputs: both reused
    fingerprint.write(data, {"labels": "b", "window_seconds": 5.0})  # the labels table changed: new windows
    both()
    assert (len(pretrain_calls), len(finetunings)) == (2, 2)
    assert "pretrain: the data folder changed since it was made: recomputing it" in caplog.text
    assert not (tmp_path / "pretrain" / "leftover").exists()  # the stale folder was removed, not mixed in
    both(dataclasses.replace(opts, pretrain_steps=8))  # pretraining changed: so did the encoder of the run
    assert (len(pretrain_calls), len(finetunings)) == (3, 3)
    caplog.clear()
    both(dataclasses.replace(opts, pretrain_steps=8, finetune_set=("epochs=1",)), seed=1)
    assert (len(pretrain_calls), len(finetunings)) == (3, 4)
    assert "seed0: the seed, the overrides changed" in caplog.text and "(pretraining" not in caplog.text
    stored = json.loads((tmp_path / "runs" / "eegfm" / "corpus" / "seed0" / "fingerprint.json").read_text())
    assert {"data", "encoder", "method", "seed", "config", "settings"} <= set(stored["fields"])


def test_the_further_pretraining_of_the_shared_encoder_takes_a_third_of_the_steps_unless_given(tmp_path):
    opts = RecipeOptions(config="cpu-tiny", task="binary", pretrain_steps=9)
    assert opts.adapted_steps() == 3
    shared = tmp_path / "shared" / "model"
    cfg, _ = opts.pretrain_config("eegfm", shared)
    assert (cfg.init_from, cfg.optim.max_steps, cfg.exclude_corpus_splits) == (str(shared), 3, ["dev", "eval"])
    assert opts.pretrain_config("eegfm")[0].init_from is None  # its own pretraining starts from random weights
    given = dataclasses.replace(opts, adapt_steps=5)
    assert given.pretrain_config("eegfm", shared)[0].optim.max_steps == 5
    assert METHODS["eegfm_adapted"].pretraining == "eegfm-adapted" and METHODS["eegfm_shared"].pretraining is None
    with pytest.raises(ConfigError, match=r"--shared_encoder: eegfm_adapted start\(s\) from the shared encoder"):
        BenchmarkOptions(output=tmp_path, methods=("eegfm", "eegfm_adapted"))
    with pytest.raises(ConfigError, match="--adapt_steps: expected a positive number of steps; got 0"):
        BenchmarkOptions(output=tmp_path, adapt_steps=0)
