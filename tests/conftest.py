"""Session-wide test set-up: quiet, reproducible numerics and the path to the shared real EEG."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
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


# `make test` runs the suite's modules side by side (pytest-xdist's `-n auto`, `--dist loadscope`:
# a module and its fixtures stay in one process). Each process builds its own session fixtures and
# many tests start workers of their own, so a large machine gets a few processes, not one a core.
MAX_TEST_PROCESSES = 4


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """`-n auto`: the cores this process may use (affinity and cgroup quota, as every eegfm
    command counts them), at most :data:`MAX_TEST_PROCESSES`."""
    from eegfm.core.machine import Cpus

    return max(1, min(Cpus.here().usable, MAX_TEST_PROCESSES))


def free_port() -> int:
    """A TCP port free on localhost now: for a test's process-group rendezvous, or, with nothing
    started on it, a port that refuses connections."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def one_thread(monkeypatch) -> Iterator[None]:
    """In-process runs use one intra-op thread, as the subprocesses do (OMP_NUM_THREADS=1, which
    the commands keep over the machine's cores): on a busy two-core machine two threads made a
    training step 30x slower, not faster."""
    import torch  # not every test module needs it

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real recordings in ../shared/data (see its README). CI always has them beside the repo."""
    if not (SHARED_DATA / "README.md").exists():
        pytest.fail(f"real test data not found at {SHARED_DATA}: clone eegfm next to shared/ or set EEGFM_SHARED_DATA")
    return SHARED_DATA


@pytest.fixture(scope="session")
def pipeline_output(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The output folder of ``pipelines.job.preprocess`` on a 2-site simulated corpus (about 15 s).

    2 sites x 2 subjects x one 2-minute EDF recording, written as 2 shards per site (4 files).
    The ``emu`` site keeps its labels (50 s HMS sub-windows of 12800 samples with expert votes,
    task ``hms6``); the ``icu`` site's recordings are preprocessed without labels.csv, so they
    become unlabeled 10 s windows (2560 samples, task ``""``, label -1). Two window lengths and
    labeled plus unlabeled windows in one output exercise bucketing and filters. Read-only.
    """
    import shutil

    from eegfm.pipelines.job.preprocess import run as preprocess
    from eegfm.simulate.cli import main as simulate

    root = tmp_path_factory.mktemp("pipeline")
    corpus, unlabeled, out = root / "corpus", root / "unlabeled", root / "tfrecords"
    assert (
        simulate(
            [
                "--output",
                str(corpus),
                "--sites",
                "2",
                "--subjects-per-site",
                "2",
                "--recordings-per-subject",
                "1",
                "--minutes",
                "2",
                "--format",
                "edf",
                "--seed",
                "0",
                "--quiet",
            ]
        )
        == 0
    )
    unlabeled.mkdir()
    shutil.move(str(corpus / "edf" / "icu"), str(unlabeled / "icu"))
    key = root / "pseudonym.key"
    key.write_bytes(b"conftest pipeline_output key 0001\n")  # fixed: the same subjects and split every run
    preprocess(
        [
            "--input",
            str(corpus / "edf"),
            "--input",
            str(unlabeled),
            "--output",
            str(out),
            "--pseudonym_key_file",
            str(key),
            "--num_shards",
            "2",
            "--runner",
            "DirectRunner",
            "--direct_running_mode",
            "in_memory",
        ]
    )
    return out


# eegmat recordings as a background folder: subjects 00-02 of the corpus's train split (00 at rest
# and at arithmetic) and 28 of its dev split (held-out people); 62 s each, 182 s at rest.
BACKGROUND_RECORDINGS = ("Subject00_1.edf", "Subject00_2.edf", "Subject01_2.edf", "Subject02_2.edf", "Subject28_2.edf")
BACKGROUND_KEY = b"conftest background key 0001"  # as the pipeline reads it: stripped


@pytest.fixture(scope="session")
def eegmat_background(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """``pipelines.job.preprocess --background hms6`` over real eegmat recordings (``BACKGROUND_RECORDINGS``,
    linked, about 10 s): its output folder and manifest. Its key is ``BACKGROUND_KEY``, so a test
    can work out the subjects' pseudonyms. Read-only."""
    from eegfm.pipelines.job.preprocess import run as preprocess

    root = tmp_path_factory.mktemp("background")
    (root / "eegmat").mkdir()
    for name in BACKGROUND_RECORDINGS:
        (root / "eegmat" / name).symlink_to(shared_data / "eegmat" / name)
    (root / "key").write_bytes(BACKGROUND_KEY)
    (root / "key").chmod(0o600)
    manifest = preprocess(
        [
            *("--input", str(root / "eegmat"), "--output", str(root / "tfrecords")),
            *("--pseudonym_key_file", str(root / "key"), "--background", "hms6", "--no_artifact_model"),
            *("--runner", "DirectRunner", "--direct_running_mode", "in_memory", "--keep_paths"),
        ]
    )
    return root / "tfrecords", manifest


@contextlib.contextmanager
def run_lock_held_elsewhere(folder: str | os.PathLike[str]) -> Iterator[subprocess.Popen]:
    """Another process (another job's launcher, mid-run) holding ``folder``'s run lock; killed
    (SIGKILL) on leaving."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time; from eegfm.core.run_lock import hold_run_lock; "
            f"assert hold_run_lock({str(folder)!r}) is None; print('held', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO_ROOT,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        yield holder
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()


def run_lock_free_elsewhere(folder: str | os.PathLike[str]) -> bool:
    """Whether another process can take ``folder``'s run lock now."""
    take = (
        f"import sys; from eegfm.core.run_lock import hold_run_lock; "
        f"sys.exit(hold_run_lock({str(folder)!r}) is not None)"
    )
    return subprocess.run([sys.executable, "-c", take], cwd=REPO_ROOT).returncode == 0


@pytest.fixture(scope="session")
def three_sites(shared_data, tmp_path_factory) -> Path:
    """eegmat subjects 00-05 at three hospitals (site folders), two each, both recordings, through
    the pipeline (10 s windows, fixed key, no artifact model); the corpus is beside it."""
    from tests.training.conftest import preprocess_corpus

    root = tmp_path_factory.mktemp("loso")
    for s in range(6):
        ward = root / "corpus" / f"hospital{s // 2}"
        ward.mkdir(parents=True, exist_ok=True)
        for k in (1, 2):
            (ward / f"Subject0{s}_{k}.edf").symlink_to(shared_data / "eegmat" / f"Subject0{s}_{k}.edf")
    preprocess_corpus(root / "corpus", root / "tfrecords")
    return root / "tfrecords"


@pytest.fixture(scope="session")
def encoder(tmp_path_factory) -> Path:
    """A pretraining model of the cpu-tiny preset in Hugging Face format (untrained: the folds'
    bookkeeping, not their accuracy, is under test)."""
    import torch

    from eegfm.model.modeling import EEGFMForPretraining
    from eegfm.training.config import load_config

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("encoder") / "model"
    EEGFMForPretraining(load_config("cpu-tiny", "pretrain").model_config()).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def finetuned(three_sites, encoder, tmp_path_factory) -> Path:
    """The cpu-tiny encoder fine-tuned briefly (2 steps) on eegmat at three sites: a run to serve."""
    from eegfm.training import finetune
    from tests.evaluation.conftest import QUICK

    run = tmp_path_factory.mktemp("serve") / "run"
    assert (
        finetune.main(
            [
                "--pretrained",
                str(encoder),
                "--data",
                str(three_sites),
                "--output",
                str(run),
                *QUICK,
                "--set",
                "val_fraction=0.34",
            ]
        )
        == 0
    )
    return run


@pytest.fixture(scope="session")
def raw_sites(three_sites) -> Path:
    """The raw recordings behind ``three_sites``: corpus/hospital<k>/SubjectNN_<1|2>.edf."""
    return three_sites.parent / "corpus"


@pytest.fixture(scope="session")
def split_fif(shared_data, tmp_path_factory):
    """One real recording (eegmat Subject00_1, its 19 10-20 channels, first 60 s) as MNE saves
    it split into parts (``split/rest_raw.fif``, ``rest_raw-1.fif`` ...) and whole
    (``whole/rest_raw.fif``); the root folder."""
    import mne

    root = tmp_path_factory.mktemp("fif")
    raw = mne.io.read_raw_edf(shared_data / "eegmat" / "Subject00_1.edf", preload=True, verbose="error")
    raw.pick([name for name in raw.ch_names if name.startswith("EEG ") and name != "EEG A2-A1"]).crop(0, 60)
    for folder, split in (("split", 1_850_000), ("whole", "2GB")):
        (root / folder).mkdir()
        raw.save(root / folder / "rest_raw.fif", split_size=split, verbose="error")
    assert len(list((root / "split").iterdir())) >= 3
    return root
