"""Shared fixtures of the evaluation tests: eegmat recordings at three hospitals through the
pipeline, and an untrained encoder of the cpu-tiny preset to fine-tune from."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.training.conftest import preprocess_corpus
from training.config import load_config

QUICK = ["--task", "eegmat", "--config", "cpu-tiny", "--wandb", "disabled", "--set", "deterministic=false",
         "--set", "optim.max_steps=2", "--set", "optim.warmup_steps=0", "--set", "epochs=1",
         "--set", "model_overrides={modalities: []}", "--set", "loader.augment={}"]


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def three_sites(shared_data, tmp_path_factory) -> Path:
    """eegmat subjects 00-05 at three hospitals (site folders), two each, both recordings."""
    root = tmp_path_factory.mktemp("loso")
    for s in range(6):
        ward = root / "corpus" / f"hospital{s // 2}"
        ward.mkdir(parents=True, exist_ok=True)
        for k in (1, 2):
            (ward / f"Subject0{s}_{k}.edf").symlink_to(shared_data / "eegmat" / f"Subject0{s}_{k}.edf")
    preprocess_corpus(root / "corpus", root / "tfrecords")
    return root / "tfrecords"


@pytest.fixture(scope="session")
def encoder(tmp_path_factory) -> Path:
    """A pretraining model of the cpu-tiny preset in Hugging Face format (untrained: the folds'
    bookkeeping, not their accuracy, is under test)."""
    from model.modeling import EEGFMForPretraining

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("encoder") / "model"
    EEGFMForPretraining(load_config("cpu-tiny", "pretrain").model_config()).save_pretrained(folder)
    return folder


