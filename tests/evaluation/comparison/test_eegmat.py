"""The eegmat benchmark on real PhysioNet recordings: a tiny run end to end (2 subjects per
split, a few steps), its outputs, the band-power floor, and that no validation or test subject's
window reaches a training loader."""

from __future__ import annotations

import contextlib
import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from eegfm.evaluation.comparison.cli import main
from eegfm.evaluation.comparison.labeled import metrics_of
from eegfm.evaluation.comparison.rows import ROWS
from eegfm.evaluation.comparison.windows import load_windows
from eegfm.model.fused import FusedModel, Part
from eegfm.training.data import EEGLoader, scan_windows

SUBJECTS = ("00", "01", "28", "29")  # two training, two validation subjects of the published split


def place(source: Path, target: Path) -> Path:
    """A copy of the shared recording ``source`` at ``target``: the benchmark refuses a table's file
    that links to outside ``--data``, as a link into ../shared/data would."""
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    return target


def eegmat_subset(shared: Path, folder: Path, subjects=SUBJECTS) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for subject in subjects:
        for part in (1, 2):
            name = f"Subject{subject}_{part}.edf"
            place(shared / "eegmat" / name, folder / name)
    place(shared / "eegmat" / "subject-info.csv", folder / "subject-info.csv")
    return folder


@contextlib.contextmanager
def loader_batches():
    """Every batch the training loaders yield meanwhile, as ``(infinite, subject ids)``: an
    infinite loader trains (pretraining, fine-tuning), a finite one evaluates."""
    seen: list[tuple[bool, list[str]]] = []
    original = EEGLoader.__iter__

    def recording_iter(self):
        for batch in original(self):
            seen.append((self.infinite, list(batch["subject_id"])))
            yield batch

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(EEGLoader, "__iter__", recording_iter)
        yield seen


@pytest.fixture(scope="module")
def tiny_run(shared_data, tmp_path_factory):
    """One tiny benchmark run; every training loader's subjects recorded on the way."""
    base = tmp_path_factory.mktemp("eegmat-benchmark")
    data = eegmat_subset(shared_data, base / "recordings")
    with loader_batches() as seen:
        argv = ["eegmat", "--data", str(data), "--output", str(base / "out"), "--config", "cpu-tiny"]
        argv += ["--seeds", "0", "--methods", "eegfm", "scratch", "--pretrain_steps", "4", "--eegnet_max_epochs", "2"]
        argv += ["--finetune_set", "epochs=1", "--pretrain_set", "val_fraction=0"]
        argv += ["--workers", "1"]  # every loader in this process, where loader_batches sees it
        assert main(argv) == 0
    return base / "out", seen


def test_outputs_name_method_split_metric(tiny_run):
    output, _ = tiny_run
    report = json.loads((output / "benchmark.json").read_text())
    for method in ("class_prior", "band_power_lr", "tangent_space_lr", "eegfm", "eegfm_model", "scratch"):
        for metric in ("balanced_accuracy", "auroc", "auprc"):
            summary = report[f"{method}.val.{metric}"]
            assert set(summary) == {"mean", "std", "runs"} and 0.0 <= summary["mean"] <= 1.0
    assert not any(key.split(".")[1] == "test" for key in report if key != "run")  # subjects 32-35 are absent
    assert report["run"]["windows"] == {"train": 2, "dev": 2, "eval": 0}
    table = (output / "benchmark.md").read_text()
    assert f"| {ROWS['band_power_lr'].description} (`band_power_lr`) |" in table
    assert "NeurIPT" not in table and "published numbers are on the corpus's test split" in table  # theirs is test
    assert "validation only" in table
    assert (output / "benchmark.png").stat().st_size > 10_000


def test_the_eegfm_model_row_is_the_probe_unless_full_fine_tuning_validates_better_beyond_its_people(tiny_run):
    output, _ = tiny_run
    report = json.loads((output / "benchmark.json").read_text())
    (record,) = report["run"]["eegfm_model.chosen"]
    chosen = record["run"]
    assert (record["own"], record["against"], record["people"]) == ("eegfm", "linear_probe", 2)
    assert "linear_probe.val.auroc" not in report  # not asked for
    low, high = record["interval_80"]
    assert low <= high and (chosen == "eegfm") == (low > 0)  # full fine-tuning only where it wins on most draws
    runs = {
        name: json.loads((output / "runs" / name / "corpus" / "seed0" / "eval.json").read_text())["val"]
        for name in ("eegfm", "linear_probe")
    }
    for metric in ("balanced_accuracy", "auroc", "auprc"):
        assert report[f"eegfm_model.val.{metric}"]["runs"] == [pytest.approx(runs[chosen][metric])]
        assert report[f"eegfm_model_full.val.{metric}"]["runs"] == [pytest.approx(runs["eegfm"][metric])]


def test_every_eegfm_run_has_a_head_that_reads_band_powers_and_covariances_and_starts_as_a_fitted_probe(tiny_run):
    output, _ = tiny_run
    for name in ("eegfm", "linear_probe", "scratch"):
        run = output / "runs" / name / "corpus" / "seed0"
        record = json.loads((run / "run.json").read_text())
        assert record["config"]["head_init"] == "probe" and record["probe_head"]["people"] == 2
        overrides, saved = record["config"]["model_overrides"], json.loads((run / "model" / "config.json").read_text())
        assert overrides["head_band_powers"] is overrides["head_covariances"] is True
        assert saved["head_band_powers"] is saved["head_covariances"] is True
        assert record["probe_head"]["inputs"][:2] == ["embedding", "band_powers"]  # covariances: CV's choice
        steps = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
        assert steps[0]["step"] == 0 and "val/metric" in steps[0]  # the fitted head is validated first
        trained = [line for line in steps if any(key.startswith("train/") for key in line)]
        assert bool(trained) == (name != "linear_probe")  # the probe is the fit alone


def test_band_power_floor_beats_chance_on_validation_subjects(tiny_run):
    output, _ = tiny_run
    report = json.loads((output / "benchmark.json").read_text())
    assert report["class_prior.val.balanced_accuracy"]["mean"] == pytest.approx(0.5)
    assert report["band_power_lr.val.auroc"]["mean"] > 0.75
    assert report["band_power_lr.val.balanced_accuracy"]["mean"] > 0.6


def test_no_validation_or_test_window_reaches_a_training_loader(tiny_run):
    output, seen = tiny_run
    split_of = {w["subject_id"]: w["corpus_split"] for w in scan_windows(str(output / "data"))}
    assert sorted(set(split_of.values())) == ["dev", "train"]
    trained = {subject for infinite, subjects in seen if infinite for subject in subjects}
    evaluated = {subject for infinite, subjects in seen if not infinite for subject in subjects}
    assert trained and {split_of[s] for s in trained} == {"train"}
    assert {split_of[s] for s in evaluated} >= {"dev"}  # the validation subjects were read, but only to evaluate


def test_the_suite_is_the_folder_suite_on_eegmat_s_own_table(tiny_run):
    """eegmat's table (file,subject,label,split) is written beside the run, with the published
    split and rest before arithmetic; the windows carry its labels."""
    output, _ = tiny_run
    with (output / "eegmat_labels.csv").open(newline="") as fh:
        rows = [(r["file"], r["subject"], r["label"], r["split"]) for r in csv.DictReader(fh)]
    split = {"00": "train", "01": "train", "28": "val", "29": "val"}
    assert rows == [
        (f"Subject{s}_{part}.edf", f"eegmat-{s}", ("rest", "arithmetic")[part - 1], split[s])
        for s in SUBJECTS
        for part in (1, 2)
    ]
    report = json.loads((output / "benchmark.json").read_text())["run"]
    assert report["classes"] == ["rest", "arithmetic"] and report["dropped_lines"] == []
    windows = load_windows(str(output / "data"), "eegmat_rest_task")
    assert set(windows.label.tolist()) == {0, 1} and 0.1 < windows.label.mean() < 0.4  # 62 s of task to 182 s of rest


def test_a_fused_model_of_one_network_scores_what_its_run_reported(tiny_run):
    """A row's model re-predicts the saved network's windows: the same numbers as fine-tuning's eval.json."""
    output, _ = tiny_run
    run = output / "runs" / "eegfm" / "corpus" / "seed0"
    held = load_windows(str(output / "data"), "eegmat_rest_task").of_split("dev")
    model = FusedModel(("rest", "arithmetic"), [Part("network", 1.0, folders=[run / "model"])], 5.0)
    found = metrics_of(model.probabilities(held.eeg, held.channel_mask), held.label, np.array([0.5, 0.5]))
    reported = json.loads((run / "eval.json").read_text())["val"]
    for metric in ("balanced_accuracy", "auroc", "auprc"):
        assert found[metric] == pytest.approx(reported[metric], abs=1e-6)


def tiny_data(tmp_path: Path, shared: Path, subjects=("00",)) -> Path:
    """The pipeline's 5 s windows of ``subjects`` (by default one training subject, a few seconds)."""
    from eegfm.pipelines.job import preprocess

    data = eegmat_subset(shared, tmp_path / "recordings", subjects)
    out = tmp_path / "data"
    preprocess.run(
        ["--input", str(data), "--output", str(out), "--dataset", "eegmat", "--window_seconds", "5"]
        + ["--no_artifact_model", "--pseudonym_key_file", str(tmp_path / "key"), "--create_key_file"]
    )
    return out


@pytest.mark.slow
@pytest.mark.timeout(2400)  # the whole default run, cold: about 15-20 minutes on two cores
def test_the_default_run_on_every_shared_subject(shared_data, tmp_path):
    """The documented command as a user runs it (every default method, the cpu-small recipe; eegfm's
    rows over seeds 0 1 2, the rows it is compared with over seed 0)."""
    assert main(["eegmat", "--data", str(shared_data / "eegmat"), "--output", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "benchmark.json").read_text())
    assert report["run"]["windows"] == {"train": 28, "dev": 4, "eval": 0}
    for method in ("eegfm", "eegfm_model", "linear_probe"):
        assert len(report[f"{method}.val.auroc"]["runs"]) == 3
    for method in ("scratch", "eegfm_10pct", "scratch_10pct", "cbramod", "labram"):  # --reference_seeds: seed 0
        assert len(report[f"{method}.val.auroc"]["runs"]) == 1
    assert {"eegfm_ensemble.val.auroc", "eegfm_model_ensemble.val.auroc"} <= set(report)
    assert report["band_power_lr.val.auroc"]["mean"] > 0.85
    # What docs/model-quality.md claims: pretraining beats the same network from scratch on every
    # metric, the recipe (the mean over seeds) beats every baseline on every metric, and its seed
    # ensemble beats them on AUROC and AUPRC.
    for metric in ("balanced_accuracy", "auroc", "auprc"):
        assert report[f"eegfm_model.val.{metric}"]["mean"] > report[f"scratch.val.{metric}"]["mean"], metric
        for baseline in ("band_power_lr", "tangent_space_lr", "eegnet"):
            assert report[f"eegfm.val.{metric}"]["mean"] > report[f"{baseline}.val.{metric}"]["mean"], metric
            if metric != "balanced_accuracy":
                assert report[f"eegfm_ensemble.val.{metric}"]["mean"] > report[f"{baseline}.val.{metric}"]["mean"]
