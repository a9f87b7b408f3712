"""Grouped splits: fine-tuning's train/val/test and pretraining's held-out subjects, on the real
pipeline output of ``tests/conftest.py`` (2 sites x 2 subjects)."""

from __future__ import annotations

import json
import logging
import shutil
from collections import Counter

import pytest

from eegfm.training.data import EEGLoader, LoaderConfig, RecordFilter, scan_windows
from eegfm.training.splits import Split, corpus_splits, group_counts, hold_out, site_splits, split_groups


def test_split_groups_is_deterministic_disjoint_and_independent_of_order():
    ids = [f"sub-{i:02d}" for i in range(20)]
    split = split_groups(ids, 0.2, seed=0, test_fraction=0.1)
    assert len(split.val) == 4 and len(split.test) == 2 and len(split.train) == 14
    assert set(split.train) | set(split.val) | set(split.test) == set(ids)
    train, val, test = set(split.train), set(split.val), set(split.test)
    assert not (train & val or train & test or val & test)
    assert split_groups(list(reversed(ids)) * 3, 0.2, seed=0, test_fraction=0.1) == split
    assert split_groups(ids, 0.2, seed=1, test_fraction=0.1) != split
    grown = split_groups(ids + ["sub-99"], 0.2, seed=0)  # round(0.2 * 21) = 4; no test split
    assert len(grown.val) == 4 and not grown.test
    assert split_groups(["a", "b"], 0.01, seed=0).val  # at least one validation group
    with pytest.raises(
        ValueError,
        match=r"split_group=subject: 2 subject\(s\) cannot give 1 validation, 1 test and "
        r"at least 1 training subject; the data needs more subjects$",
    ):
        split_groups(["a", "b"], 0.5, seed=0, test_fraction=0.3)
    with pytest.raises(ValueError, match=r"split_group=site: 1 site\(s\) .* more sites \(or split_group=subject\)"):
        split_groups(["a"], 0.2, seed=0, kind="site")


def test_site_splits_test_on_the_named_sites_subjects_and_split_the_others():
    windows = [("a", "s1"), ("b", "s1"), ("c", "s2"), ("d", "s2"), ("e", "s3"), ("f", "s3"), ("a", "s1")]
    inner = split_groups(["c", "d", "e", "f"], 0.25, seed=0)
    assert site_splits(windows, ["s1"], 0.25, seed=0) == Split(train=inner.train, val=inner.val, test=("a", "b"))
    assert site_splits(windows, ["s1", "s3"], 0.5, seed=0).test == ("a", "b", "e", "f")
    by_site = [(site, site) for _, site in windows]  # split_group site: the groups are the sites
    assert site_splits(by_site, ["s2"], 0.5, seed=0, kind="site").test == ("s2",)
    with pytest.raises(ValueError, match=r"^test_sites: s9 has no window of the task; expected some of s1, s2, s3$"):
        site_splits(windows, ["s9"], 0.25, seed=0)
    with pytest.raises(
        ValueError,
        match=r"^test_sites: subject a has windows in the test site s1 and in s2 \(1 such "
        r"subjects\)",
    ):
        site_splits(windows + [("a", "s2")], ["s1"], 0.25, seed=0)
    with pytest.raises(ValueError, match=r"^test_sites: every site \(s1, s2, s3\) is a test site"):
        site_splits(windows, ["s1", "s2", "s3"], 0.25, seed=0)


def test_corpus_splits_keep_the_corpus_eval_and_dev_subjects_and_validate_on_train_ones_without_dev():
    windows = [("a", "train"), ("a", "train"), ("b", "train"), ("c", "train"), ("d", "eval"), ("e", "dev")]
    assert corpus_splits(windows, 0.2, seed=0) == Split(train=("a", "b", "c"), val=("e",), test=("d",))
    no_dev = corpus_splits([w for w in windows if w[1] != "dev"], 0.34, seed=0)
    inner = split_groups(["a", "b", "c"], 0.34, seed=0)
    assert no_dev == Split(train=inner.train, val=inner.val, test=("d",)) and len(inner.val) == 1
    with pytest.raises(
        ValueError,
        match=r"^corpus_split: subject a has recordings in the corpus's eval and train "
        r"splits \(1 such subjects\); expected each subject in one$",
    ):
        corpus_splits(windows + [("a", "eval")], 0.2, seed=0)
    with pytest.raises(
        ValueError,
        match=r"^corpus_split: 1 of 6 subjects have windows with no corpus split "
        r"\(subject f, ...\)",
    ):
        corpus_splits(windows + [("f", "")], 0.2, seed=0)
    with pytest.raises(
        ValueError,
        match=r"^corpus_split: no subject in the corpus's train split \(found: dev 1, "
        r"eval 1\)",
    ):
        corpus_splits([("d", "eval"), ("e", "dev")], 0.2, seed=0)


@pytest.mark.parametrize("group, feature", [("subject", "subject_id"), ("site", "site_id")])
def test_group_counts_from_the_manifest_match_the_windows_and_a_manifest_without_them_is_scanned(
    pipeline_output, tmp_path, group, feature
):
    truth = Counter(w[feature] for w in scan_windows(pipeline_output))
    assert len(truth) == (4 if group == "subject" else 2)
    assert group_counts(str(pipeline_output), group) == dict(truth)
    # An output whose manifest lacks the counts (written by an older pipeline): one metadata pass.
    copy = tmp_path / "copy"
    shutil.copytree(pipeline_output, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    del manifest["counts"]["per_subject"], manifest["counts"]["per_site"]
    (copy / "manifest.json").write_text(json.dumps(manifest))
    assert group_counts(str(copy), group) == dict(truth)
    (copy / "manifest.json").unlink()  # shards alone, or one .tfrecord file: the same pass
    assert group_counts(str(copy), group) == dict(truth)
    one = sorted(copy.glob("*/*.tfrecord"))[0]
    assert group_counts(str(one), group) == dict(Counter(w[feature] for w in scan_windows(str(one))))
    with pytest.raises(FileNotFoundError, match=r"data_dir: .*missing is not a directory"):
        group_counts(str(tmp_path / "missing"), group)


def test_hold_out_leaves_the_validation_subjects_out_of_training_windows(pipeline_output):
    held = hold_out(str(pipeline_output), 0.1, "subject", seed=0)
    assert held is not None and held.group == "subject" and held.n_groups == 4
    assert len(held.val) == 1  # round(0.4) = 0, but at least one
    assert hold_out(str(pipeline_output), 0.1, "subject", seed=0) == held  # a function of the data and seed
    windows = scan_windows(pipeline_output)
    assert held.total_windows == len(windows)
    assert held.windows == sum(w["subject_id"] in held.val for w in windows) > 0

    def subjects(filters: RecordFilter) -> Counter:
        config = LoaderConfig(batch_size=4, num_workers=0, shuffle=False, filters=filters)
        loader = EEGLoader(str(pipeline_output), config, rank=0, world_size=1, infinite=False)
        return Counter(s for batch in loader for s in batch["subject_id"])

    train, val = subjects(held.train_filter()), subjects(held.val_filter())
    assert set(val) == set(held.val) and sum(val.values()) == held.windows
    assert not set(train) & set(held.val) and sum(train.values()) == held.total_windows - held.windows

    sites = hold_out(str(pipeline_output), 0.5, "site", seed=0)
    assert sites is not None and len(sites.val) == 1 and sites.n_groups == 2
    assert sites.train_filter() == RecordFilter(exclude_sites=sites.val)


def test_hold_out_counts_and_holds_out_no_window_of_an_excluded_corpus_split(tuev_output, tmp_path, caplog):
    """TUEV's layout (4 train and 2 eval patients): with the eval split excluded, only train
    patients are counted and held out, and neither filter lets an eval window through; an output
    whose manifest does not count windows by corpus split (written before it did) is scanned."""
    _, data = tuev_output
    windows = scan_windows(data)
    split_of = {w["subject_id"]: w["corpus_split"] for w in windows}
    held = hold_out(str(data), 0.25, "subject", seed=0, exclude_corpus_splits=("eval",))
    assert (held.n_groups, held.total_windows, held.windows) == (4, 24, 6)
    assert {split_of[s] for s in held.val} == {"train"}
    for filters, count in ((held.train_filter(), 18), (held.val_filter(), 6)):
        kept = scan_windows(data, filters)
        assert len(kept) == count and {w["corpus_split"] for w in kept} == {"train"}
    everything = hold_out(str(data), 0.25, "subject", seed=0)
    assert (everything.n_groups, everything.total_windows) == (6, 36)
    assert len(scan_windows(data, everything.train_filter())) == 36 - everything.windows

    older = tmp_path / "older"
    shutil.copytree(data, older)
    manifest = json.loads((data / "manifest.json").read_text())
    del manifest["counts"]["per_corpus_split"]
    (older / "manifest.json").write_text(json.dumps(manifest))
    with caplog.at_level(logging.INFO, logger="eegfm.training.splits"):
        assert hold_out(str(older), 0.25, "subject", seed=0, exclude_corpus_splits=("eval",)) == held
    assert (
        "its manifest does not count windows by corpus split, and those of eval are left out; reading the "
        "windows' subject_id (one pass over the data)"
    ) in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="eegfm.training.splits"):
        assert hold_out(str(data), 0.25, "subject", seed=0, exclude_corpus_splits=("eval",)) == held
    assert "its counts include 12 windows of the corpus split(s) eval, left out" in caplog.text
    assert group_counts(str(older), "subject") == group_counts(str(data), "subject")  # no exclusion: the manifest


def test_hold_out_is_off_at_zero_and_on_one_subject_data_with_a_warning(pipeline_output, tmp_path, caplog):
    assert hold_out(str(pipeline_output), 0.0, "subject", seed=0) is None
    one = tmp_path / "one-site"
    one.mkdir()
    manifest = json.loads((pipeline_output / "manifest.json").read_text())
    site = sorted(manifest["counts"]["per_site"])[0]
    shutil.copytree(pipeline_output / site, one / site)
    manifest["counts"]["per_site"] = {site: manifest["counts"]["per_site"][site]}
    (one / "manifest.json").write_text(json.dumps(manifest))
    with caplog.at_level(logging.WARNING, logger="eegfm.training.splits"):
        assert hold_out(str(one), 0.2, "site", seed=0) is None
    assert "validation off" in caplog.text and "holds 1 site(s)" in caplog.text


def test_pretraining_on_a_fraction_of_its_training_subjects_reads_only_theirs(pipeline_output):
    from eegfm.training.splits import fewer_groups, training_filter

    data = str(pipeline_output)
    held = hold_out(data, 0.25, "subject", seed=0)  # 1 of the 4 subjects validates
    everyone = training_filter(data, "subject", 1.0, 0, held)
    assert everyone == held.train_filter()
    half = training_filter(data, "subject", 0.5, 0, held)
    kept = set(half.subjects)
    assert len(kept) == 2 and not kept & set(held.val)  # round(0.5 * 3) of those not held out
    read = Counter(w["subject_id"] for w in scan_windows(data, half))
    counts = group_counts(data, "subject")
    assert read == {subject: counts[subject] for subject in kept}  # every window of theirs, no other
    assert kept == set(fewer_groups(set(counts) - set(held.val), 0.5, 0))  # seeded: the same draw again
    assert fewer_groups(["a", "b", "c"], 0.01, 0) and len(fewer_groups(["a", "b", "c"], 1.0, 0)) == 3
    alone = training_filter(data, "subject", 0.25, 3, None)  # no validation: a quarter of all 4
    assert len(alone.subjects) == 1 and not alone.exclude_subjects
