"""Session-wide test set-up: quiet, reproducible numerics and the path to the shared real EEG."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Set before TensorFlow/W&B can be imported by any test module.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("MNE_LOGGING_LEVEL", "WARNING")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("EEGFM_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real recordings in ../shared/data (see its README). CI always has them beside the repo."""
    if not (SHARED_DATA / "README.md").exists():
        pytest.fail(
            f"real test data not found at {SHARED_DATA}: clone eegfm next to shared/ "
            "or set EEGFM_SHARED_DATA"
        )
    return SHARED_DATA
