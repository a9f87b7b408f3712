"""One small simulated corpus shared by the simulator tests (generating is the slow part)."""

import json
from pathlib import Path

import pytest

from eegfm.simulate.corpus import CorpusConfig, generate_corpus

# 4 sites x 1 patient x 1 recording x 5 min: every recording has >= 2 episodes, so the corpus has
# >= 8 and the class-coverage rule guarantees all six classes.
SMALL = CorpusConfig(sites=4, subjects_per_site=1, recordings_per_subject=1, minutes=5, seed=0)


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("simulated") / "corpus"
    generate_corpus(SMALL, root)
    return root


@pytest.fixture(scope="session")
def truth(corpus) -> list[dict]:
    return [json.loads(line) for line in (corpus / "truth.jsonl").read_text().splitlines()]
