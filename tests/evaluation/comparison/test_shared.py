"""The shared encoder: one pretraining over every real corpus at hand (tiny here: two eegmat
subjects and eegmmi), held-out subjects never read (nor listed among the recordings it read, by
content hash), then fine-tuned by a benchmark beside its own pretraining as the ``eegfm_shared``
row, and pretrained further on the benchmark's own training windows as the ``eegfm_adapted`` row:
its validation subjects were held out of the encoder, so the leak check lets it run."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from eegfm.evaluation.comparison import fingerprint
from eegfm.evaluation.comparison.cli import main
from eegfm.evaluation.comparison.fingerprint import file_digest
from eegfm.evaluation.comparison.preprocessing import ENCODER_RECORDINGS
from eegfm.model.modeling import EEGFMForPretraining
from eegfm.training.data import scan_windows
from eegfm.training.pretrain_setup import untrained_by_pretraining
from tests.evaluation.comparison.test_eegmat import eegmat_subset, loader_batches


@pytest.fixture(scope="module")
def shared_run(shared_data, tmp_path_factory):
    base = tmp_path_factory.mktemp("shared-encoder")
    corpora = base / "corpora"
    eegmat_subset(shared_data, corpora / "eegmat", ("00", "28"))  # a training and a validation subject
    (corpora / "eegmmi").symlink_to(shared_data / "eegmmi")
    (corpora / "formats").symlink_to(shared_data / "formats")  # file-format samples: not read
    with loader_batches() as seen:
        argv = ["pretrain", "--shared_data", str(corpora), "--output", str(base / "shared"), "--config", "cpu-tiny"]
        argv += ["--pretrain_steps", "4", "--simulated_sites", "0", "--pretrain_set", "val_fraction=0"]
        assert main(argv) == 0
    return base, seen


def test_the_encoder_reads_every_corpus_but_held_out_subjects(shared_run, shared_data):
    base, seen = shared_run
    record = json.loads((base / "shared" / "encoder.json").read_text())
    assert sorted(record["corpora"]) == ["eegmat", "eegmmi"]
    eegmat = record["corpora"]["eegmat"]
    assert 0 < eegmat["pretraining_windows"] < eegmat["windows"]  # subject 28's windows are held out
    assert record["corpora"]["eegmmi"]["pretraining_windows"] == record["corpora"]["eegmmi"]["windows"] > 0
    split_of = {w["subject_id"]: w["corpus_split"] for w in scan_windows(str(base / "shared" / "data" / "eegmat"))}
    read = {subject for _, batch in seen for subject in batch}
    assert read and not any(split_of.get(subject) in ("dev", "eval") for subject in read)
    assert (base / "shared" / "pretrain" / "model" / "config.json").is_file()
    # the recordings it read, by content hash (a benchmark's leak check): subject 00's, not 28's
    read = set(record[ENCODER_RECORDINGS])
    assert {file_digest(shared_data / "eegmat" / f"Subject00_{part}.edf") for part in (1, 2)} <= read
    assert not {file_digest(shared_data / "eegmat" / f"Subject28_{part}.edf") for part in (1, 2)} & read
    assert len(read) > 2 and "Subject" not in (base / "shared" / "encoder.json").read_text()


def test_a_benchmark_fine_tunes_the_shared_encoder_as_it_is_and_pretrained_further_beside_its_own(
    shared_run, shared_data
):
    base, _ = shared_run
    shared = base / "shared" / "pretrain" / "model"
    data = eegmat_subset(shared_data, base / "bench-recordings", ("00", "01", "28", "29"))
    argv = ["eegmat", "--data", str(data), "--output", str(base / "bench"), "--config", "cpu-tiny", "--seeds", "0"]
    argv += ["--methods", "eegfm", "eegfm_adapted", "--pretrain_steps", "6", "--finetune_set", "epochs=1"]
    argv += ["--pretrain_set", "val_fraction=0", "--shared_encoder", str(shared)]
    assert main(argv) == 0
    report = json.loads((base / "bench" / "benchmark.json").read_text())
    assert {"eegfm.val.auroc", "eegfm_shared.val.auroc", "eegfm_adapted.val.auroc"} <= set(report)
    text = (base / "bench" / "benchmark.md").read_text()
    assert "shared pretrained encoder" in text and "pretrained further on this benchmark's windows" in text
    # The further pretraining: from the shared encoder's weights, a third of the own pretraining's
    # steps, on the benchmark's training windows; its encoder is what eegfm_adapted fine-tuned.
    adapted = base / "bench" / "pretrain-eegfm-adapted"
    run = json.loads((adapted / "run.json").read_text())
    assert run["config"]["init_from"] == str(shared) and run["config"]["optim"]["max_steps"] == 2
    assert run["config"]["exclude_corpus_splits"] == ["dev", "eval"]
    start, further = (load_file(folder / "model.safetensors") for folder in (shared, adapted / "model"))
    moved = {k for k in start if not torch.equal(start[k], further[k])}
    # trained further; the parameters pretraining never trains (its lr-0 group) kept the shared values
    frozen = untrained_by_pretraining(EEGFMForPretraining.from_pretrained(shared))
    assert moved and frozen and not moved & frozen
    run_encoder = json.loads(
        (base / "bench" / "runs" / "eegfm_adapted" / "corpus" / "seed0" / "fingerprint.json").read_text()
    )
    assert run_encoder["fields"]["encoder"] == fingerprint.digest(fingerprint.identity(adapted / "model"))
