"""Shared set-up for the training tests: one real pipeline run on a tiny simulated corpus."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import pytest

from pipelines.deid import create_key
from pipelines.preprocess import run as preprocess
from pipelines.simulate.cli import main as simulate


@pytest.fixture(scope="session")
def pipeline_output(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The output folder of ``pipelines.preprocess`` on a 2-site simulated corpus (about 15 s).

    2 sites x 2 subjects x one 2-minute EDF recording, written as 2 shards per site (4 files).
    The ``emu`` site keeps its labels (50 s HMS sub-windows of 12800 samples with expert votes,
    task ``hms6``); the ``icu`` site's recordings are preprocessed without labels.csv, so they
    become unlabeled 10 s windows (2560 samples, task ``""``, label -1). Two window lengths and
    labeled plus unlabeled windows in one output exercise bucketing and filters. Read-only.
    """
    root = tmp_path_factory.mktemp("pipeline")
    corpus, unlabeled, out = root / "corpus", root / "unlabeled", root / "tfrecords"
    assert simulate(["--output", str(corpus), "--sites", "2", "--subjects-per-site", "2",
                     "--recordings-per-subject", "1", "--minutes", "2", "--format", "edf",
                     "--seed", "0", "--quiet"]) == 0
    unlabeled.mkdir()
    shutil.move(str(corpus / "edf" / "icu"), str(unlabeled / "icu"))
    key = root / "pseudonym.key"
    create_key(str(key))
    preprocess(["--input", str(corpus / "edf"), "--input", str(unlabeled), "--output", str(out),
                "--pseudonym_key_file", str(key), "--num_shards", "2",
                "--runner", "DirectRunner", "--direct_running_mode", "in_memory"])
    return out


def free_port() -> int:
    """A TCP port free on localhost now, for a test's process-group rendezvous."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]

