"""A fine-tuned run to serve: the cpu-tiny encoder fine-tuned briefly on eegmat at three sites."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.evaluation.conftest import QUICK, one_thread  # noqa: F401 - one torch thread here too (autouse)
from training import finetune


@pytest.fixture(scope="session")
def finetuned(three_sites, encoder, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("serve") / "run"
    assert finetune.main(["--pretrained", str(encoder), "--data", str(three_sites), "--output", str(run), *QUICK,
                          "--set", "val_fraction=0.34"]) == 0
    return run


@pytest.fixture(scope="session")
def corpus(three_sites) -> Path:
    """The raw recordings behind ``three_sites``: corpus/hospital<k>/SubjectNN_<1|2>.edf."""
    return three_sites.parent / "corpus"
