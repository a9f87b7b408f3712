"""``eegfm-finetune --background DIR``: real recordings the pipeline labeled Other (``preprocess
--background hms6``) join six-class fine-tuning beside ``--data``, their people in train or
validation, never both, and none of the corpus's held-out people read; a folder without such
windows is refused by name."""

import json

import pytest

from eegfm.core.tasks import HMS_CLASSES
from eegfm.pipelines.privacy.deid import pseudonym
from eegfm.training import finetune
from eegfm.training.config import ConfigError, load_config
from eegfm.training.data import scan_windows
from eegfm.training.finetune.cli import build_parser
from eegfm.training.finetune.plan import plan_data, split_filter
from eegfm.training.splits import SPLITS
from tests.conftest import BACKGROUND_KEY
from tests.training.conftest import preprocess_corpus

OTHER = HMS_CLASSES.index("Other")
PEOPLE = {n: pseudonym(BACKGROUND_KEY, "subject", f"eegmat-{n}") for n in ("00", "01", "02", "28")}

pytestmark = pytest.mark.usefixtures("one_thread")


def _from(folder, windows) -> list:
    return [w for w in windows if w["path"].startswith(f"{folder}/")]


def test_background_people_train_or_validate_and_the_corpus_held_out_ones_neither(pipeline_output, eegmat_background):
    background, _ = eegmat_background
    cfg = load_config("cpu-tiny", "finetune", ["two_stage_min_votes=10"])
    plan = plan_data(str(pipeline_output), cfg, "hms6", background=[str(background)])
    sides = {n: [name for name in SPLITS if person in plan.split.of(name)] for n, person in PEOPLE.items()}
    # 28 is in eegmat's dev split (held-out people, background_exclude_corpus_splits); 00-02 are split
    # on their own, val_fraction 0.2 of 3 people giving 1
    assert sides.pop("28") == [] and plan.held_out == [PEOPLE["28"]]
    assert sorted(side for found in sides.values() for side in found) == ["train", "train", "val"]
    folders = [str(pipeline_output), str(background)]
    for name in ("train", "val"):
        read = scan_windows(folders, split_filter(plan, name))
        assert len(read) == plan.windows[name]
        mine = _from(background, read)
        assert len(mine) == plan.background[name] > 0 and len(read) > len(mine)  # beside the simulator's
        assert {w["subject_id"] for w in mine} == {PEOPLE[n] for n, found in sides.items() if found == [name]}
        assert all((w["label"], w["votes"].argmax(), w["votes"].sum()) == (OTHER, OTHER, 20) for w in mine)
    # all of their votes: every background training window is in the second stage (>= 10 votes) too
    stage2 = scan_windows(folders, split_filter(plan, "train", min_votes=10))
    assert len(_from(background, stage2)) == plan.background["train"] and plan.stage2_windows >= len(stage2)
    assert plan.class_counts[OTHER] >= plan.background["train"]

    everyone = plan_data(
        str(pipeline_output),
        load_config("cpu-tiny", "finetune", ["background_exclude_corpus_splits=[]"]),
        "hms6",
        background=[str(background)],
    )
    assert everyone.held_out == [] and any(PEOPLE["28"] in everyone.split.of(name) for name in SPLITS)
    with pytest.raises(ConfigError, match=r"background_exclude_corpus_splits: expected one of 'train', 'dev', 'eval'"):
        load_config("cpu-tiny", "finetune", ["background_exclude_corpus_splits=[test]"])


def test_a_folder_without_background_windows_is_refused_by_name(
    shared_data, pipeline_output, eegmat_background, tmp_path, capsys
):
    corpus = tmp_path / "eegmat"
    corpus.mkdir()
    (corpus / "Subject03_2.edf").symlink_to(shared_data / "eegmat" / "Subject03_2.edf")
    plain = tmp_path / "plain"
    preprocess_corpus(corpus, plain)  # without --background: eegmat's own rest/task labels
    cfg = load_config("cpu-tiny", "finetune", [])
    with pytest.raises(ConfigError) as refused:
        plan_data(str(pipeline_output), cfg, "hms6", background=[str(plain)])
    said = str(refused.value)
    assert said.startswith(f"--background {plain}: no labeled windows for task 'hms6'")
    assert "the data holds {'eegmat_rest_task': 6}" in said and "--background hms6" in said

    # on the command line: exit 2 with that line, before a model is built
    command = ["--architecture", "eeg_cnn_gru", "--data", str(pipeline_output), "--wandb", "disabled"]
    assert finetune.main([*command, "--background", str(plain), "--output", str(tmp_path / "run")]) == 2
    assert f"--background {plain}: no labeled windows for task 'hms6'" in capsys.readouterr().err
    assert not (tmp_path / "run" / "checkpoints").exists()
    assert "--background DIR" in build_parser().format_help()
    twice = [*command, "--background", str(pipeline_output), "--output", str(tmp_path / "a")]
    assert finetune.main(twice) == 2 and f"{pipeline_output} is given twice" in capsys.readouterr().err
    # background windows are Other of hms6, no class of another task
    background, _ = eegmat_background
    other_task = [*command, "--task", "eegmat", "--background", str(background), "--output", str(tmp_path / "b")]
    assert finetune.main(other_task) == 2
    assert "background windows are labeled for task 'hms6'" in capsys.readouterr().err


def test_a_run_with_background_trains_on_them_and_says_so(pipeline_output, eegmat_background, tmp_path):
    background, _ = eegmat_background
    run = tmp_path / "run"
    command = [
        *("--architecture", "eeg_cnn_gru", "--data", str(pipeline_output), "--background", str(background)),
        *("--output", str(run), "--wandb", "disabled", "--set", "optim.max_steps=2", "--set", "epochs=1"),
        *("--set", "optim.warmup_steps=0", "--set", "temperature_scaling=false"),
        # children's and some adults' amplitudes: the documented gain range (docs/training.md)
        *("--set", "loader.augment.amplitude_scale=[1, 5]"),
    ]
    assert finetune.main(command) == 0
    told = json.loads((run / "run.json").read_text())
    assert told["background"] == [str(background)] and told["data"] == [str(pipeline_output), str(background)]
    assert told["background_windows"]["train"] > 0 and told["background_windows"]["val"] > 0
    assert PEOPLE["28"] not in {p for name in SPLITS for p in told["split"][name]}
