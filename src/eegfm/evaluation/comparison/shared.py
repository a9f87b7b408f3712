"""One encoder for every benchmark: one pretraining over every unlabeled window at hand, which
each suite then fine-tunes (``--shared_encoder``, the ``eegfm_shared`` row) beside its own
pretraining (``eegfm``) and the architecture from scratch (``scratch``).

What it reads:

- the real corpora under ``--shared_data`` (each top-level folder but ``formats/``, a set of
  file-format samples): eegmat through its own adapter, which marks subjects 28-35 as validation
  and test, so pretraining (``exclude_corpus_splits: [dev, eval]``) never sees them; the others
  (eegmmi, HMS ...) whole, as no benchmark holds them out;
- a simulated corpus of its own seed (``SIMULATED_SEED``): other patients than the simulated
  suite's, whose held-out sites it never sees;
- any ``--unlabeled`` folders of preprocessed windows.

``OUT/pretrain/model`` is the encoder; ``OUT/encoder.json`` says what went into it, with the
content hash (SHA-256 of the file's bytes; hashes only, never names) of every recording whose
windows pretraining read, so that a benchmark refuses to fine-tune it on a validation or test
recording it pretrained on (``benchmark.folder``). Publish it as a
versioned release with ``python -m eegfm.serving.models publish OUT/pretrain MODEL_URL``.
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

from eegfm.contract import layout
from eegfm.core.logs import get_logger
from eegfm.evaluation.comparison.options import BenchmarkOptions, SharedOptions
from eegfm.evaluation.comparison.preprocessing import (
    ENCODER_RECORDINGS,
    benchmark_key,
    preprocess_windows,
    pretraining_recordings,
)
from eegfm.evaluation.comparison.pretrainings import pretrain
from eegfm.evaluation.comparison.runs import RecipeOptions
from eegfm.evaluation.comparison.simulated import simulate_and_preprocess

log = get_logger(__name__)
SIMULATED_SEED = 1000  # not a seed of the simulated suite's corpora (0 and 1 by default)
NOT_CORPORA = ("formats",)  # file-format samples: a few seconds each, not a corpus


def real_corpora(shared_data: Path) -> list[Path]:
    """The corpus folders under ``shared_data``, sorted."""
    return sorted(p for p in shared_data.iterdir() if p.is_dir() and p.name not in NOT_CORPORA)


def preprocess_corpus(corpus: Path, output: Path, key: Path) -> str:
    """A real corpus's windows (5 s, rule-based artifact scores); eegmat through its own adapter
    (its split); an earlier complete output is reused."""
    return preprocess_windows([str(corpus)], output, key, "eegmat" if corpus.name == "eegmat" else "auto")


def _windows(data: str) -> dict[str, Any]:
    """The windows a preprocessed folder holds, and those pretraining may read (not dev or eval)."""
    counts = json.loads((Path(data) / layout.MANIFEST).read_text()).get("counts", {})
    total = int(counts.get("windows", 0))
    splits = counts.get("per_corpus_split", {}) or {}
    held = sum(int(v) for k, v in splits.items() if k in ("dev", "eval"))
    return {"windows": total, "pretraining_windows": total - held}


def run(options: BenchmarkOptions, corpora: SharedOptions) -> dict[str, Any]:
    """The shared encoder pretrained into ``options.output``; what went into it (``encoder.json``)."""
    output = options.output
    key = benchmark_key(output, options.pseudonym_key_file)
    data: dict[str, str] = {}
    for corpus in real_corpora(corpora.shared_data):
        data[corpus.name] = preprocess_corpus(corpus, output / "data" / corpus.name, key)
    if corpora.simulated_sites:
        sim = output / "simulated"
        data["simulated"] = simulate_and_preprocess(sim, corpora.simulated_sites, SIMULATED_SEED, str(key))
    opts = RecipeOptions.from_options(options, task="eegmat")  # the task is unused by pretraining
    model = pretrain(list(data.values()), output / "pretrain", opts)
    pretrained = [*data.values(), *opts.unlabeled]
    record = {
        "model": str(model.relative_to(output)),
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "config": options.config,
        "pretrain_steps": options.pretrain_steps,
        "corpora": {name: _windows(folder) for name, folder in data.items()},
        "unlabeled_folders": len(options.unlabeled),
        "held_out": "eegmat subjects 28-35 (validation and test); nothing else is any benchmark's test data",
        # a benchmark's leak check reads these: the same bytes under any name are the same recording
        ENCODER_RECORDINGS: sorted(set().union(*(pretraining_recordings(d, key) for d in pretrained))),
    }
    (output / "encoder.json").write_text(json.dumps(record, indent=2) + "\n")
    log.info(
        "the shared encoder: %s (%s)", model, ", ".join(f"{k} {v['windows']}" for k, v in record["corpora"].items())
    )
    return record
