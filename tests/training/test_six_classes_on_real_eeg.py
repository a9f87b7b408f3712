"""Six-class fine-tuning with real EEG in it (the demo's recipe, small): what the model says of
real people it never trained on.

The recipe: a small simulated corpus, the five patterns planted into eegmat people 00-13 at 1-5x
amplitude (``eegfm-planted``), people 14-27 whole as Other (``eegfm-preprocess --background hms6``,
``eegfm-finetune --background``), amplitude augmentation of 1-5x on every window. The checks read
eegmat people 28-31 (the corpus's validation split: never trained on) at rest with eyes closed,
where every healthy adult has posterior alpha, which a model that learned the simulator calls GPD
or LPD; and seizures planted into those people's rest at adult and child amplitudes, which it
must rank above the 10 s before them. The encoder is untrained (cpu-tiny): pretraining is the
demo's, and the checks are about what six-class training on real backgrounds teaches.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eegfm.evaluation import corpus_check, planted_seizures
from eegfm.pipelines.job.preprocess import run as preprocess
from eegfm.simulate import planted
from eegfm.simulate.cli import main as simulate
from eegfm.training import finetune

# The demo's six-class recipe (scripts/demo.sh, step 4).
RECIPE = ("--task", "hms6", "--config", "cpu-tiny", "--wandb", "disabled")
RECIPE_SETTINGS = ("epochs=30", "early_stopping_patience=6", "loader.augment.amplitude_scale=[1, 5]")
PLANTED_PEOPLE = range(0, 14)
BACKGROUND_PEOPLE = range(14, 28)
HELD_OUT_REST = [f"Subject{n}_1.edf" for n in (28, 29, 30, 31)]  # eegmat's validation people, eyes closed
GAINS = (1, 3, 5)


def _link(shared_data: Path, folder: Path, people: range) -> Path:
    folder.mkdir(parents=True)
    for n in people:
        for k in (1, 2):
            (folder / f"Subject{n:02d}_{k}.edf").symlink_to(shared_data / "eegmat" / f"Subject{n:02d}_{k}.edf")
    return folder


def _pipeline(inputs: Path, output: Path, key: Path, *extra: str) -> Path:
    mode = ("--runner", "DirectRunner", "--direct_running_mode", "in_memory", "--no_artifact_model")
    preprocess(["--input", str(inputs), "--output", str(output), "--pseudonym_key_file", str(key), *mode, *extra])
    return output


def sources(shared_data: Path, root: Path) -> dict[str, Path]:
    """The recipe's recordings, independent of the key: a simulated corpus (2 sites, 8 people, 4 min
    each), the patterns planted into eegmat people 00-13, and people 14-27 as they are."""
    simulate(
        ["--output", str(root / "sim"), "--sites", "2", "--subjects-per-site", "4"]
        + ["--recordings-per-subject", "1", "--minutes", "4", "--seed", "0", "--format", "edf", "--quiet"]
    )
    into = _link(shared_data, root / "plant_into", PLANTED_PEOPLE)
    planted.main(
        ["--background", str(into), "--output", str(root / "planted"), "--seed", "0"]
        + ["--per-recording", "4", "--gain-range", "1", "5", "--person", r"Subject(\d+)_"]
    )
    return {
        "sim": root / "sim" / "edf",
        "planted": root / "planted",
        "background": _link(shared_data, root / "background", BACKGROUND_PEOPLE),
    }


def train(recordings: dict[str, Path], root: Path, key: bytes, seeds: tuple[int, ...]) -> list[Path]:
    """The pipeline under ``key`` (whose pseudonyms decide the split by person), then one fine-tuned
    run per seed (initialisation and data order)."""
    (root / "key").write_bytes(key)
    (root / "key").chmod(0o600)
    data = [_pipeline(recordings[name], root / name, root / "key") for name in ("sim", "planted")]
    background = _pipeline(
        recordings["background"], root / "background", root / "key", "--background", "hms6", "--window_seconds", "50"
    )
    encoder = root / "encoder"
    if not encoder.exists():
        import torch

        from eegfm.model.modeling import EEGFMForPretraining
        from eegfm.training.config import load_config

        torch.manual_seed(0)
        EEGFMForPretraining(load_config("cpu-tiny", "pretrain").model_config()).save_pretrained(encoder)
    runs = []
    for seed in seeds:
        run = root / f"seed{seed}"
        settings = [arg for s in (*RECIPE_SETTINGS, f"seed={seed}", f"loader.seed={seed}") for arg in ("--set", s)]
        argv = ["--pretrained", str(encoder), "--data", *map(str, data), "--background", str(background)]
        assert finetune.main([*argv, "--output", str(run), *RECIPE, *settings]) == 0
        runs.append(run)
    return runs


def rest_summary(shared_data: Path, run: Path) -> dict:
    """corpus_check's summary of the held-out people's eyes-closed rest."""
    named = [f"rest={shared_data / 'eegmat' / name}" for name in HELD_OUT_REST]
    assert (
        corpus_check.main(
            ["--model", str(run), "--output", str(run / "check")]
            + [arg for spec in named for arg in ("--corpus", spec)]
        )
        == 0
    )
    return json.loads((run / "check" / "corpus_check.json").read_text())["rest"]


def planted_auroc(shared_data: Path, run: Path, gain: int) -> dict:
    out = run / f"planted_gain{gain}"
    data = [str(shared_data / "eegmat" / name) for name in HELD_OUT_REST]
    argv = ["--model", str(run), "--recordings", "16", "--gain", str(gain), "--data", *data]
    assert planted_seizures.main([*argv, "--offset_s", "20", "60", "100", "140", "--output", str(out)]) == 0
    return json.loads((out / "planted_seizures.json").read_text())


@pytest.fixture(scope="module")
def recordings(shared_data, tmp_path_factory) -> dict[str, Path]:
    return sources(shared_data, tmp_path_factory.mktemp("six_classes_sources"))


@pytest.fixture(scope="module")
def six_class_run(recordings, tmp_path_factory) -> Path:
    return train(recordings, tmp_path_factory.mktemp("six_classes"), b"six classes on real eeg 0", (0,))[0]


def test_eyes_closed_rest_of_people_it_never_saw_is_not_read_as_periodic_discharges(shared_data, six_class_run):
    rest = rest_summary(shared_data, six_class_run)
    assert rest["recordings"] == 4 and rest["windows"] >= 60 and rest["quarantined"] == 0
    # P(GPD) < 0.1 and P(LPD) < 0.1 on at least 90 % of windows; most of them called Other
    assert rest["clear_share"]["GPD"] >= 0.9 and rest["clear_share"]["LPD"] >= 0.9, rest
    assert rest["normal_share"] >= 0.9, rest


@pytest.mark.parametrize("gain", GAINS)
def test_seizures_planted_in_held_out_people_rank_above_the_seconds_before(shared_data, six_class_run, gain):
    report = planted_auroc(shared_data, six_class_run, gain)
    # four stretches from each of the four rests, where the recording is long enough: 14
    assert report["recordings"] >= 12 and report["ictal_windows_scored"] == report["recordings"], report
    assert report["auroc"] >= 0.9 and report["p_seizure_ictal"] > report["p_seizure_before"], report


@pytest.mark.slow
def test_other_on_real_rest_varies_little_across_keys_and_seeds(shared_data, recordings, tmp_path_factory):
    """Three pseudonym keys (three splits by person) times three seeds: nine models."""
    shares = []
    for k in range(3):
        runs = train(recordings, tmp_path_factory.mktemp(f"key{k}"), f"six classes key {k}".encode(), (0, 1, 2))
        shares += [rest_summary(shared_data, run)["normal_share"] for run in runs]
    assert max(shares) - min(shares) <= 0.05, shares
