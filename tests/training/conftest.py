"""Shared helpers for the training tests: the pipeline output they read is ``tests/conftest.py``'s
``pipeline_output``, and ``tests.conftest.free_port`` gives rendezvous ports."""

from pathlib import Path

import pytest

from eegfm.contract.schema import decode_example
from eegfm.contract.tfrecord import read_records
from eegfm.training.data import list_files


def preprocess_corpus(corpus: Path, out: Path) -> dict:
    """The pipeline's run over ``corpus`` into ``out`` with a fixed key (the same pseudonyms and
    split every run), without the artifact model; its manifest."""
    from eegfm.pipelines.job.preprocess import run as preprocess

    key = out.parent / f"{out.name}.key"
    key.write_text("0123456789abcdef" * 4 + "\n")
    key.chmod(0o600)
    return preprocess(
        [
            "--input",
            str(corpus),
            "--output",
            str(out),
            "--pseudonym_key_file",
            str(key),
            "--no_artifact_model",
            "--runner",
            "DirectRunner",
            "--direct_running_mode",
            "in_memory",
            "--keep_paths",  # the tests find recordings by name in the manifest
        ]
    )


@pytest.fixture(scope="module")
def records(pipeline_output) -> list:
    """The window records of ``pipeline_output``, decoded (``contract.schema.decode_example``)."""
    return [decode_example(raw) for path in list_files(pipeline_output) for raw in read_records(path)]


@pytest.fixture(scope="session")
def tuev_output(shared_data, tmp_path_factory) -> tuple[dict, Path]:
    """TUH EEG Events' layout (edf/train/<patient>/<patient>_<n>.edf and
    edf/eval/<n>/<class>_<n>_<s>_.edf, each with its .rec of per-channel events; here over eegmat
    recordings: 4 train and 2 eval patients, six events each) through the pipeline: its manifest
    and output folder (36 windows of 5 s, 24 of the corpus's train split, 12 of its eval)."""
    root = tmp_path_factory.mktemp("tuev")
    corpus = root / "tuev" / "edf"
    recordings = [
        ("train", "aaaaaaar", "aaaaaaar_00000001"),
        ("train", "aaaaabdn", "aaaaabdn_00000001"),
        ("train", "aaaaacjb", "aaaaacjb_00000002"),
        ("train", "aaaaadxx", "aaaaadxx_00000001"),
        ("eval", "032", "spsw_032_a_"),
        ("eval", "045", "bckg_045_a_"),
    ]
    for k, (part, patient, name) in enumerate(recordings):
        folder = corpus / part / patient
        folder.mkdir(parents=True)
        (folder / f"{name}.edf").symlink_to(shared_data / "eegmat" / f"Subject0{k}_2.edf")
        # six events 8 s apart, every class once, on two channels each (one window apiece)
        (folder / f"{name}.rec").write_text(
            "".join(f"{c},{5 + 8 * e}.0,{6 + 8 * e}.0,{(e + k) % 6 + 1}\n" for e in range(6) for c in (3, 9))
        )
    out = root / "tfrecords"
    return preprocess_corpus(root / "tuev", out), out
