"""python -m eegfm.simulate.planted: the simulator's patterns planted on REAL eegmat backgrounds, as
a six-class training corpus: what was planted is there (and only there), the votes are the
simulator's, unusable files are skipped and counted, no source name gets out, and the pipeline
makes hms6 windows of it carrying those votes."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import mne
import numpy as np
import pytest

from eegfm.contract import schema
from eegfm.contract.channels import CANONICAL_CHANNELS
from eegfm.contract.tfrecord import read_records
from eegfm.core.tasks import HMS_CLASSES, HMS_VOTE_COLUMNS
from eegfm.simulate import planted, planted_corpus
from eegfm.simulate.patterns import render_episodes
from eegfm.simulate.planting import load_stretch, plant_episode
from eegfm.simulate.rng import rng_for
from tests.simulate.measures import HEMISPHERE, band_power

# Sorted, these are recordings r0000 .. r0004: two real eegmat recordings (182 s at rest, 62 s at
# arithmetic), one too short, one MNE cannot read, one with 2 of the 19 electrodes.
REST, TASK = "Subject00_1.edf", "Subject01_2.edf"
SHORT, BROKEN, FEW = "Subject02_short_raw.fif", "Subject03_broken.edf", "data_resting_EO_200Hz_raw.fif"
# Small and fixed: 3 + 2 stretches, clear patterns (raters agree 85-95 %), Other and patterns both drawn.
ARGS = ("--seed", "1", "--per-recording", "3", "--strength-range", "0.8", "1", "--other-fraction", "0.4")
OPTIONS = planted.PlantOptions(seed=1, per_recording=3, strength_range=(0.8, 1.0), other_fraction=0.4)
NAMES = (b"subject", b"data_resting", b"eegmat")  # the sources' names and folder, the EDF's "Subject0"


@pytest.fixture(scope="module")
def sources(shared_data, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("real") / "eegmat"
    folder.mkdir()
    for name in (REST, TASK):
        (folder / name).symlink_to(shared_data / "eegmat" / name)
    short = mne.io.read_raw_edf(shared_data / "eegmat" / "Subject02_2.edf", verbose="error").crop(0.0, 30.0)
    short.load_data(verbose="error").save(folder / SHORT, verbose="error")
    (folder / BROKEN).write_bytes(b"0       not an EDF header")
    (folder / FEW).symlink_to(shared_data / "formats" / "fif" / FEW)
    return folder


@pytest.fixture(scope="module")
def corpus(sources, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("planted") / "out"
    assert planted.main(["--background", str(sources), "--output", str(out), *ARGS, "--person", r"Subject(\d+)_"]) == 0
    return out


def labels_of(out: Path) -> list[dict]:
    with open(out / "labels.csv", newline="") as f:
        return list(csv.DictReader(f))


def truth_of(out: Path) -> list[dict]:
    return json.loads((out / "truth.json").read_text())


def canonical(data: np.ndarray, ch_names: list[str]) -> np.ndarray:
    """(19, n) rows of ``data`` in canonical order (every eegmat recording has all 19)."""
    rows = planted_corpus.canonical_rows(ch_names)
    return np.stack([data[rows[c]] for c in CANONICAL_CHANNELS])


def test_other_stretches_are_the_source_and_planted_ones_add_exactly_the_pattern(corpus, sources):
    truth = truth_of(corpus)
    assert {t["class"] for t in truth} >= {"Other"} and len({t["class"] for t in truth}) >= 3
    raws = {f"r{i:04d}": mne.io.read_raw_edf(sources / name, verbose="error") for i, name in enumerate((REST, TASK))}
    for t in truth:
        made = mne.io.read_raw_fif(corpus / t["path"], verbose="error")
        raw = raws[t["recording"]]
        first = int(t["source_start_s"] * 500)
        source = raw.get_data(start=first, stop=first + 50 * 500)
        assert made.ch_names == raw.ch_names and made.get_data().shape == source.shape
        added = (made.get_data() - source) * 1e6  # µV
        if t["class"] == "Other":  # as recorded, to float32's precision
            np.testing.assert_allclose(made.get_data(), source, rtol=1e-6, atol=1e-12)
            continue
        # the same plan again gives the same episode: the file holds it, rendered, and nothing else
        number = int(t["recording"][1:])
        recorded = tuple(CANONICAL_CHANNELS)
        plan = planted_corpus.plan_stretches(OPTIONS, number, raw.n_times / 500, recorded)[t["stretch"]]
        pattern = render_episodes([plan.episode], np.arange(50 * 500) / 500)
        np.testing.assert_allclose(canonical(added, raw.ch_names), pattern, atol=1e-3)  # µV; float32 stored
        others = sorted(set(range(len(raw.ch_names))) - set(planted_corpus.canonical_rows(raw.ch_names).values()))
        assert len(others) == 2
        assert np.abs(added[others]).max() < 1e-3  # the ear derivation and ECG untouched
        assert np.ptp(pattern, axis=1).max() > 40.0  # the pattern's own amplitude, not a trace


@pytest.mark.parametrize("name", [REST, TASK])
def test_an_lrda_plant_raises_delta_on_its_focus_side(shared_data, name):
    stretch = load_stretch(shared_data / "eegmat" / name, 10.0, 50.0)
    episode = planted_corpus.draw_stretch_episode(rng_for(0, "test", "lrda"), "LRDA", 0.5, stretch.recorded)
    assert episode.side in ("left", "right") and episode.cls == "LRDA"
    planted_uv = plant_episode(stretch.data_uv, stretch.rows, episode, stretch.times)
    before = band_power(canonical(stretch.data_uv, stretch.ch_names), 500.0, 1.0, 3.0)
    after = band_power(canonical(planted_uv, stretch.ch_names), 500.0, 1.0, 3.0)
    focus, other = HEMISPHERE[episode.side], HEMISPHERE["left" if episode.side == "right" else "right"]
    at_focus = CANONICAL_CHANNELS.index(episode.focus)
    assert after[at_focus] > 4.0 * before[at_focus]  # well above the same stretch as recorded
    rise = after - before
    assert rise[focus].sum() > 3.0 * rise[other].sum()  # on the focus side (a contralateral field is <= 30 %)
    assert np.median(after[focus] / before[focus]) > 1.3 > np.median(after[other] / before[other])


def test_a_gain_multiplies_background_and_pattern_alike(shared_data):
    stretch = load_stretch(shared_data / "eegmat" / TASK, 0.0, 50.0)
    episode = planted_corpus.draw_stretch_episode(rng_for(0, "test", "gain"), "Seizure", 0.5, stretch.recorded)
    plain = plant_episode(stretch.data_uv, stretch.rows, episode, stretch.times)
    tripled = plant_episode(stretch.data_uv, stretch.rows, episode, stretch.times, gain=3.0)
    np.testing.assert_allclose(tripled, 3.0 * plain)
    np.testing.assert_array_equal(plant_episode(stretch.data_uv, stretch.rows, None, stretch.times), stretch.data_uv)


def test_votes_sum_to_the_raters_and_favour_the_planted_class(corpus):
    labels, truth = labels_of(corpus), truth_of(corpus)
    assert [row["path"] for row in labels] == [t["path"] for t in truth]
    total = np.zeros(len(HMS_CLASSES))
    for row, t in zip(labels, truth):
        votes = np.array([int(row[c]) for c in HMS_VOTE_COLUMNS])
        assert 1 <= votes.sum() == t["n_raters"] <= 20
        assert row["eeg_label_offset_seconds"] == "0" and row["patient_id"] == t["patient_id"]
        assert row["expert_consensus"] == HMS_CLASSES[int(np.argmax(votes))]
        total[HMS_CLASSES.index(t["class"])] += votes[HMS_CLASSES.index(t["class"])]
    assert total.sum() > 0.7 * sum(t["n_raters"] for t in truth)  # at strength 0.8-1, 85-95 % agree
    # every stretch of a recording keeps its person; --person made people of the names' numbers
    assert {t["recording"]: t["patient_id"] for t in truth} == {"r0000": "p0000", "r0001": "p0001"}


def test_unusable_files_are_skipped_counted_and_named_by_token_only(corpus, sources, tmp_path, caplog):
    summary = json.loads((corpus / "planted.json").read_text())
    assert summary["recordings"] == {
        "listed": 5,
        "excluded": 0,
        "planted": 2,
        "skipped": {"unreadable": 1, "too_short": 1, "too_few_electrodes": 1},
    }
    assert summary["stretches"] == 3 + 2 == sum(summary["stretches_by_class"].values())
    with caplog.at_level("WARNING"):
        assert planted.main(["--background", str(sources), "--output", str(tmp_path / "again"), *ARGS]) == 0
    said = caplog.text
    assert "r0002 skipped: 30.0 s long; expected at least 50 s" in said
    assert "r0003 skipped: MNE could not read it" in said
    assert "r0004 skipped: 2 of the 19 10-20 electrodes; expected at least 10" in said
    assert not any(name.decode() in said.lower() for name in NAMES)


def test_no_source_name_reaches_any_output_file(corpus):
    files = [f for f in corpus.rglob("*") if f.is_file()]
    assert len(files) == 3 + 5
    for f in files:
        assert not any(name in f.read_bytes().lower() for name in NAMES), f.name


def test_the_same_seed_gives_the_same_files_and_excluding_moves_no_token(corpus, sources, tmp_path):
    out = tmp_path / "without-rest"
    argv = ["--background", str(sources), "--output", str(out), *ARGS, "--person", r"Subject(\d+)_"]
    assert planted.main([*argv, "--exclude", "Subject00*"]) == 0
    kept = sorted(p.name for p in (out / "planted").iterdir())
    assert kept == ["r0001_s00_raw.fif", "r0001_s01_raw.fif"]
    for name in kept:
        assert (out / "planted" / name).read_bytes() == (corpus / "planted" / name).read_bytes()
    assert labels_of(out) == [row for row in labels_of(corpus) if "r0001" in row["path"]]
    assert json.loads((out / "planted.json").read_text())["recordings"]["excluded"] == 1


def test_the_corpus_goes_through_the_pipeline_into_hms6_windows_with_its_votes(corpus, tmp_path):
    from eegfm.pipelines.job.preprocess import run as preprocess

    (tmp_path / "key").write_bytes(b"test_planted key 0001")
    (tmp_path / "key").chmod(0o600)
    manifest = preprocess(
        [
            *("--input", str(corpus), "--output", str(tmp_path / "tf"), "--pseudonym_key_file", str(tmp_path / "key")),
            *("--no_artifact_model", "--runner", "DirectRunner", "--direct_running_mode", "in_memory", "--keep_paths"),
        ]
    )
    labels = {row["path"]: row for row in labels_of(corpus)}
    assert manifest["counts"]["quarantined"] == 0 and manifest["counts"]["windows"] == len(labels)
    assert manifest["counts"]["per_length_samples"] == {"12800": len(labels)}
    row_of = {
        d["source_sha256"]: labels[os.path.relpath(d["source"], corpus)]
        for d in manifest["inputs"]
        if d["status"] == "processed"
    }
    records = [
        schema.decode_example(raw)
        for shard in manifest["shards"]
        for raw in read_records(tmp_path / "tf" / shard, "SNAPPY")
    ]
    subjects: dict[str, set] = {}
    for record in records:
        row = row_of[record.source_sha256.decode()]
        assert record.task == b"hms6" and record.window_start_s == 0.0
        np.testing.assert_array_equal(record.votes, [float(row[c]) for c in HMS_VOTE_COLUMNS])
        subjects.setdefault(row["patient_id"], set()).add(record.subject_id)
    assert sorted(subjects) == ["p0000", "p0001"] and all(len(s) == 1 for s in subjects.values())
    assert subjects["p0000"] != subjects["p0001"]


def test_bad_options_are_refused_naming_the_flag(tmp_path, capsys):
    for argv, said in (
        (["--gain-range", "5", "1"], "--gain-range: expected LOW <= HIGH; got 5 1"),
        (["--other-fraction", "2"], "--other-fraction: expected a fraction in [0, 1]; got 2"),
        (["--per-recording", "0"], "--per-recording: expected an integer in [1, 1000]; got 0"),
    ):
        with pytest.raises(SystemExit) as stop:
            planted.main(["--background", str(tmp_path), "--output", str(tmp_path.parent / "o"), *argv])
        assert stop.value.code == 2 and said in capsys.readouterr().err
    with pytest.raises(SystemExit):
        planted.main(["--background", str(tmp_path / "none"), "--output", str(tmp_path / "o")])
    assert "--background: expected a folder of recordings" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        planted.main(["--background", str(tmp_path), "--output", str(tmp_path / "o")])
    assert "--output: expected a folder outside --background" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        planted.main(["--help"])
    usage = capsys.readouterr().out
    flags = ("--background", "--output", "--seed", "--per-recording", "--gain-range", "--strength-range")
    assert all(flag in usage for flag in (*flags, "--other-fraction", "--exclude", "--person", "--site"))
    assert not (tmp_path / "o").exists()


def test_eye_artifacts_add_frontal_blinks_to_every_class_alike_and_change_no_other_draw(corpus, sources, tmp_path):
    out = tmp_path / "eyes"
    argv = ["--background", str(sources), "--output", str(out), *ARGS, "--person", r"Subject(\d+)_"]
    assert planted.main([*argv, "--eye-artifact-fraction", "1"]) == 0
    plain, eyes = truth_of(corpus), truth_of(out)
    assert json.loads((out / "planted.json").read_text())["options"]["eye_artifact_fraction"] == 1.0
    drawn = ("class", "strength", "gain", "votes", "episode", "source_start_s")
    assert [{k: t[k] for k in drawn} for t in eyes] == [{k: t[k] for k in drawn} for t in plain]
    assert all(t["eye_artifacts"] is None for t in plain)
    assert all(t["eye_artifacts"]["blinks"] >= 4 for t in eyes)  # 10-25 a minute over 50 s
    for before, after in zip(plain, eyes):
        a = mne.io.read_raw_fif(corpus / before["path"], verbose="error")
        b = mne.io.read_raw_fif(out / after["path"], verbose="error")
        added = canonical(b.get_data(), b.ch_names) - canonical(a.get_data(), a.ch_names)
        size = np.ptp(added, axis=1) / after["gain"] * 1e6  # µV before the stretch's gain
        fp, occipital = size[CANONICAL_CHANNELS.index("Fp1")], size[CANONICAL_CHANNELS.index("O1")]
        assert fp > 40.0 and occipital < 0.1 * fp, (after["class"], fp, occipital)  # blinks: frontal, not occipital
