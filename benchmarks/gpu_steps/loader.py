"""The training loader's windows/s on the GPU machine, to set against what a GPU step consumes.

The GPU image has no Beam to preprocess a corpus, so this writes one without it
(``benchmarks/synthetic_corpus.py``: 1/f noise through the real record encoder and TFRecord writer)
and links it several times (``benchmarks/corpora.link_corpus``) so that each of the ``base``
preset's workers (``num_workers: auto`` on this machine) reads many batches an epoch. Then
``benchmarks/train_loader.loader_rate`` times ``training.data.EEGLoader`` in training mode with
float16 batches of the preset's size, as the GPU presets run it; the median of the rounds is
reported. ``benchmarks/gpu.py`` sets it against every pretraining run's windows/s.
"""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.gpu_steps.common import Record

WINDOWS, PER_FILE, COPIES = 2160, 144, 4  # 15 files of 144 windows (24 min each), linked 4 times: 60 files
DRY = {"windows": 12, "per_file": 2, "copies": 2, "batch": 2, "seconds": 0.3, "rounds": 1}


def plan() -> dict[str, Any]:
    return {
        "corpus": f"{WINDOWS} synthetic 10 s windows in files of {PER_FILE}, linked {COPIES} times "
        f"({WINDOWS * COPIES} windows, {WINDOWS // PER_FILE * COPIES} files)",
        "loader": "EEGLoader, training mode, float16 batches of the base preset's size, its num_workers: auto",
        "compared_with": "the windows/s of every pretraining run (target: >= 10x the hungriest)",
    }


def run(record: Record, *, dry_run: bool, **_: Any) -> None:
    # torch and eegfm only in the step's own process: the launcher imports this module without them.
    import torch

    from benchmarks.corpora import link_corpus
    from benchmarks.synthetic_corpus import write_corpus
    from benchmarks.train_loader import BASE_BATCH, loader_rate, preset_workers

    shape = DRY if dry_run else {"windows": WINDOWS, "per_file": PER_FILE, "copies": COPIES}
    batch = shape.get("batch", BASE_BATCH)
    torch.set_num_threads(1)  # one core per process, like a loader worker
    with tempfile.TemporaryDirectory() as tmp:
        source, data = Path(tmp) / "synthetic", Path(tmp) / "linked"
        write_corpus(source, shape["windows"], windows_per_file=shape["per_file"])
        link_corpus(source, shape["copies"], data)
        workers = preset_workers(data)
        record.set(
            "corpus",
            {"windows": shape["windows"] * shape["copies"], "files": len(list(data.glob("*/*.tfrecord")))},
        )
        record.set("preset_workers", workers)
        measured = 0 if dry_run else workers  # a dry run reads in this process: quick, no forks
        rates = []
        for _ in range(shape.get("rounds", 3)):
            rates.append(loader_rate(str(data), measured, "float16", batch, shape.get("seconds", 4.0)))
            record.add("rounds", {k: round(v, 3) for k, v in rates[-1].items()})
    record.set(
        "loader",
        {
            "workers": measured,
            "eeg_dtype": "float16",
            "batch_size": batch,
            "windows_per_s": round(statistics.median(r["per_s"] for r in rates), 1),
            "first_batch_s": round(statistics.median(r["first_batch_s"] for r in rates), 2),
            "cpu_us_per_window": round(statistics.median(r["cpu_us"] for r in rates)),
        },
    )
    record.set("status", "ok")
