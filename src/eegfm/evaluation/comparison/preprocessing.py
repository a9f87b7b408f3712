"""How every benchmark runs eegfm's pipeline on its recordings: with one fixed pseudonym key for
public corpora (or the user's own), rule-based artifact scores, and an earlier complete output
reused (where the caller gives a fingerprint, only while it is the same: ``benchmark.fingerprint``).
Also which recordings of a preprocessed folder a benchmark's pretraining may read, by content hash
(:func:`pretraining_recordings`): the leak check of ``--unlabeled`` and ``--shared_encoder``."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from eegfm.contract import layout
from eegfm.core import stopwatch
from eegfm.core.logs import get_logger
from eegfm.evaluation.comparison import fingerprint
from eegfm.evaluation.comparison.options import BENCHMARK_WINDOW_SECONDS
from eegfm.evaluation.comparison.runs import HELD_OUT_SPLITS  # the splits every benchmark's pretraining leaves out
from eegfm.pipelines.job import launcher as pipeline
from eegfm.pipelines.job.process_io import PreprocessConfig
from eegfm.pipelines.job.spec import JobSpec, LaunchOptions

log = get_logger(__name__)
# encoder.json's list of the content hashes of the recordings the shared encoder pretrained on
ENCODER_RECORDINGS = "pretraining_recordings_sha256"

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
    window_seconds: float = BENCHMARK_WINDOW_SECONDS,
    shown_folders: list[str] | None = None,
    fields: Mapping[str, Any] | None = None,
) -> str:
    """eegfm's pipeline on the benchmark's recordings (rule-based artifact scores, so nothing is
    fitted across subjects), pseudonymized with ``key``, in windows of ``window_seconds``; an earlier
    complete output is reused.
    ``shown_folders``: the pipeline's ``--shown_folders`` (default: the folder of each input).
    ``fields``: what the windows depend on (``fingerprint.of``); given, the output's
    ``fingerprint.json`` says so once complete, and an earlier output of other fields (or of none)
    is made anew, with a warning naming what changed."""
    complete = (output / layout.MANIFEST).is_file()
    if complete and fields is not None and (changed := fingerprint.changes(output, fields)):
        log.warning("%s: %s changed since it was made: preprocessing again", output, ", ".join(changed))
        (output / fingerprint.FILE).unlink(missing_ok=True)  # gone before --overwrite clears the rest
        complete = False
    if not complete:
        with stopwatch.part("pipeline"):
            run_pipeline(inputs, output, key, PreprocessConfig(window_seconds=window_seconds), dataset, shown_folders)
        if fields is not None:  # written once the output is complete: it vouches for a whole folder
            fingerprint.write(output, fields)
    return str(output)


def run_pipeline(
    inputs: Sequence[str],
    output: Path,
    key: Path,
    config: PreprocessConfig,
    dataset: str = "auto",
    shown_folders: Sequence[str] | None = None,
) -> dict:
    """The pipeline's job on ``inputs`` into ``output`` (an earlier run's outputs there replaced) with
    rule-based artifact scores and ``key``'s pseudonyms; its manifest."""
    spec = JobSpec(
        inputs=tuple(map(str, inputs)),
        output=str(output),
        pseudonym_key_file=str(key),
        shown_folders=None if shown_folders is None else tuple(shown_folders),
        use_artifact_model=False,
    )
    return pipeline.preprocess(spec, config, LaunchOptions(dataset=dataset, overwrite=True))


def pretraining_recordings(folder: str | Path, key: Path) -> set[str]:
    """The content SHA-256 (the manifest's ``source_sha256``) of each recording of a preprocessed
    ``folder`` whose windows a benchmark's pretraining may read: every processed input but those
    whose every window is of a :data:`HELD_OUT_SPLITS` corpus split. Those are told by their
    recording pseudonym under ``key``; in a folder made with another key none is told, so all count
    (the check errs on the side of refusing)."""
    manifest = json.loads((Path(folder) / layout.MANIFEST).read_text(encoding="utf-8"))
    digests = {
        row["source_sha256"]
        for row in manifest.get("inputs", [])
        if row.get("status") == "processed" and row.get("source_sha256")
    }
    splits = manifest.get("counts", {}).get("per_corpus_split", {}) or {}
    if not any(splits.get(split) for split in HELD_OUT_SPLITS):
        return digests
    from eegfm.pipelines.privacy.deid import load_key, pseudonym

    held = _held_out_recordings(str(folder))
    secret = load_key(key)
    read = {sha for sha in digests if pseudonym(secret, "recording", sha) not in held}
    if held and len(read) == len(digests):
        log.warning(
            "a preprocessed folder's held-out (dev, eval) recordings are pseudonymized with another key than "
            "this run's: the leak check counts them as pretraining data (pass its --pseudonym_key_file)"
        )
    return read


def _held_out_recordings(folder: str) -> set[str]:
    """The recording pseudonyms whose every window in ``folder`` is of a held-out corpus split."""
    from eegfm.contract.tfrecord import read_records
    from eegfm.contract.windows import Window
    from eegfm.training.data.catalog import list_files, open_source

    held, read = set(), set()
    for path in list_files(folder):
        with open_source(path) as source:
            for index, raw in enumerate(read_records(source, "SNAPPY")):
                window = Window(raw, path, index)
                recording = window.text("recording_id")
                (held if window.text("corpus_split") in HELD_OUT_SPLITS else read).add(recording)
    return held - read
