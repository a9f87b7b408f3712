"""How every benchmark runs eegfm's pipeline on its recordings: with one fixed pseudonym key for
public corpora (or the user's own), rule-based artifact scores, and an earlier complete output
reused."""

from __future__ import annotations

import hashlib
from pathlib import Path

from eegfm.contract import layout
from eegfm.pipelines import preprocess as pipeline

# The benchmarks read public corpora: one fixed key gives the same pseudonyms, and so the same
# pretraining hold-out and shuffles, on every run and machine (a clinic's data needs its own key).
BENCHMARK_KEY = hashlib.sha256(b"eegfm benchmarks: public corpora only").hexdigest()


def benchmark_key(folder: Path, own: str | None = None) -> Path:
    """``own`` key file, else the benchmark's fixed key written once into ``folder``."""
    if own is not None:
        return Path(own)
    path = folder / "pseudonym.key"
    if not path.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        path.write_text(BENCHMARK_KEY + "\n")
        path.chmod(0o600)  # as deid expects of any key file
    return path


def preprocess_windows(
    inputs: list[str],
    output: Path,
    key: Path,
    dataset: str = "auto",
    window_seconds: float = 5.0,
    shown_folders: list[str] | None = None,
) -> str:
    """eegfm's pipeline on the benchmark's recordings (rule-based artifact scores, so nothing is
    fitted across subjects), pseudonymized with ``key``; an earlier complete output is reused.
    ``shown_folders``: the pipeline's ``--shown_folders`` (default: the folder of each input)."""
    if not (output / layout.MANIFEST).is_file():
        argv = ["--input", *inputs, "--output", str(output), "--dataset", dataset]
        argv += ["--window_seconds", f"{window_seconds:g}", "--no_artifact_model"]
        argv += ["--shown_folders", *shown_folders] if shown_folders is not None else []
        pipeline.run([*argv, "--pseudonym_key_file", str(key), "--overwrite"])
    return str(output)
