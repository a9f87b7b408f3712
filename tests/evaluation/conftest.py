"""Shared settings of the evaluation tests: a quick fine-tuning run's arguments, one torch thread.
The data (``three_sites``) and the encoder to fine-tune (``encoder``) are in ``tests/conftest.py``."""

from __future__ import annotations

import pytest

from tests.inference.conftest import hms6_run  # noqa: F401 - a six-class model for eegfm-planted-seizures

QUICK = [
    "--task",
    "eegmat",
    "--config",
    "cpu-tiny",
    "--wandb",
    "disabled",
    "--set",
    "deterministic=false",
    "--set",
    "optim.max_steps=2",
    "--set",
    "optim.warmup_steps=0",
    "--set",
    "epochs=1",
    "--set",
    "model_overrides={modalities: []}",
    "--set",
    "loader.augment={}",
]


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Every evaluation test runs in-process with one intra-op thread (``tests/conftest.py``)."""
