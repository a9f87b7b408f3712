"""The corpora the training benchmarks read: a simulated one preprocessed, or one linked many times.

``simulate_and_preprocess`` runs ``eegfm.simulate`` and the preprocessing pipeline (DirectRunner)
in subprocesses; ``link_corpus`` makes a pipeline output hold its site folders several times
(symbolic links and a manifest listing them), so every loader worker gets many batches an epoch.
Used by ``benchmarks/train.py``, ``train_loader.py``, ``train_loop.py`` and ``gpu_steps/loader.py``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from eegfm.contract import layout

REPO = Path(__file__).resolve().parents[1]


def simulate_and_preprocess(root: Path, shards_per_site: int = 0, subjects: int = 2, minutes: float = 6) -> Path:
    """The simulated corpus (3 sites x ``subjects`` x ``minutes``), preprocessed;
    ``shards_per_site`` > 0 splits each site's windows over that many files (a loader with more
    workers than files reads each file on several workers)."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    corpus, out, key = root / "corpus", root / "tfrecords", root / "key"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "eegfm.simulate",
            "--output",
            str(corpus),
            "--sites",
            "3",
            "--subjects-per-site",
            str(subjects),
            "--recordings-per-subject",
            "1",
            "--minutes",
            str(minutes),
            "--format",
            "edf",
            "--seed",
            "0",
            "--quiet",
        ],
        check=True,
        cwd=REPO,
        env=env,
    )
    key.write_text(os.urandom(32).hex())
    # No labels.csv: pretraining data are unlabeled 10 s windows.
    (corpus / "edf" / "labels.csv").unlink(missing_ok=True)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "eegfm.pipelines.job.preprocess",
            "--input",
            str(corpus / "edf"),
            "--output",
            str(out),
            "--pseudonym_key_file",
            str(key),
            "--runner",
            "DirectRunner",
            "--direct_running_mode",
            "in_memory",
            "--num_shards",
            str(shards_per_site),
        ],
        check=True,
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return out


def link_corpus(data: Path, copies: int, target: Path) -> int:
    """``target`` as a pipeline output holding ``data``'s site folders ``copies`` times (symbolic
    links named ``<site>-c<i>``) and its manifest, listing the linked shards; returns the number
    of windows it holds."""
    # training.data's catalog loads torch (2 s): not for simulate_and_preprocess's callers.
    from eegfm.training.data import describe, list_files

    if copies < 1:
        raise ValueError(f"copies: expected an integer >= 1; got {copies}")
    sites = sorted({Path(path).parent for path in list_files(os.fspath(data))})
    target.mkdir(parents=True, exist_ok=True)
    if (data / layout.ARTIFACT_MODEL).exists():
        shutil.copy(data / layout.ARTIFACT_MODEL, target / layout.ARTIFACT_MODEL)
    for copy in range(copies):
        for site in sites:
            (target / f"{site.name}-c{copy}").symlink_to(site.resolve(), target_is_directory=True)
    manifest = json.loads((data / layout.MANIFEST).read_text())
    # Training checks the shards against the manifest: it lists the linked names.
    linked = {site.name for site in sites}
    listed = [name for name in manifest.get("shards", ()) if name.split("/")[-2] in linked]
    renamed = {f"{n.split('/')[-2]}-c{c}/{n.split('/')[-1]}": n for c in range(copies) for n in listed}
    manifest["shards"] = sorted(renamed)
    for key in ("shard_records", "shard_bytes"):
        if key in manifest:
            manifest[key] = {new: manifest[key][old] for new, old in sorted(renamed.items())}
    (target / layout.MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
    return int(describe(data).counts.get("windows", 0)) * copies
