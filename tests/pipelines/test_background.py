"""``--background hms6``: real recordings preprocessed as background of the six-class task, every
window Other with all of its votes, the people and corpus splits the data set gives kept."""

import os

import numpy as np
import pytest

from eegfm.contract import schema
from eegfm.contract.tfrecord import read_records
from eegfm.core.config import ConfigError
from eegfm.core.tasks import HMS_CLASSES
from eegfm.pipelines.datasets import LabeledInterval, LabeledWindow, SourceItem, as_background, discover
from eegfm.pipelines.datasets.items import BACKGROUND_VOTES
from eegfm.pipelines.job.options import build_parser, config_from_args, given_flags
from eegfm.pipelines.job.process_io import PreprocessConfig
from eegfm.pipelines.privacy.deid import pseudonym
from tests.conftest import BACKGROUND_KEY, BACKGROUND_RECORDINGS

OTHER = HMS_CLASSES.index("Other")


def test_every_window_of_real_recordings_is_other_with_its_person_and_corpus_split(eegmat_background):
    out, manifest = eegmat_background
    inputs = manifest["inputs"]
    assert sorted(os.path.basename(d["source"]) for d in inputs) == sorted(BACKGROUND_RECORDINGS)
    assert all(d["status"] == "processed" for d in inputs)
    # the recording of each record, by its pseudonym
    name_of = {
        pseudonym(BACKGROUND_KEY, "recording", d["source_sha256"]): os.path.basename(d["source"]) for d in inputs
    }
    records = [
        schema.decode_example(raw) for shard in manifest["shards"] for raw in read_records(out / shard, "SNAPPY")
    ]
    assert len(records) == manifest["counts"]["windows"] == sum(d["labeled_windows"] for d in inputs) > 30
    assert manifest["counts"]["per_label"] == {f"hms6:{OTHER}": len(records)}
    expected_votes = [0.0] * len(HMS_CLASSES)
    expected_votes[OTHER] = BACKGROUND_VOTES
    for record in records:
        assert (record.task, record.label) == (b"hms6", OTHER)
        np.testing.assert_array_equal(record.votes, expected_votes)
        number = name_of[record.recording_id.decode()][len("Subject") : len("Subject") + 2]
        # the person eegmat's adapter names (both of subject 00's recordings one person), and its split
        assert record.subject_id.decode() == pseudonym(BACKGROUND_KEY, "subject", f"eegmat-{number}")
        assert record.corpus_split == (b"dev" if number == "28" else b"train")
    assert len({r.subject_id for r in records}) == 4
    assert manifest["counts"]["per_corpus_split"]["dev"] == sum(r.corpus_split == b"dev" for r in records) > 0


def test_as_background_drops_the_data_sets_labels_and_keeps_who_and_where(shared_data):
    items, _, _ = discover([str(shared_data / "eegmat" / "Subject28_1.edf")])
    (rest,) = items
    labeled = SourceItem(
        **{
            **rest.__dict__,
            "windows": (LabeledWindow(5.0, 4.0, 1, (), "x"),),
            "intervals": (LabeledInterval(0.0, 10.0, 1),),
            "event_labels": (("T1", 0),),
            "event_window_s": 4.0,
            "label_problem": "labels.csv line 2: label: expected an integer",
        }
    )
    background = as_background(labeled, "hms6")
    assert (background.task, background.recording_label) == ("hms6", OTHER)
    assert background.recording_votes == tuple(BACKGROUND_VOTES if k == OTHER else 0.0 for k in range(6))
    assert (background.windows, background.intervals, background.event_labels, background.label_problem) == (
        (),
        (),
        (),
        "",
    )
    kept = ("path", "dataset", "site", "subject_key", "session_key", "corpus_split", "age", "sex")
    assert {k: getattr(background, k) for k in kept} == {k: getattr(rest, k) for k in kept}
    assert background.corpus_split == "dev"
    assert as_background(rest, "") is rest  # without the option, the data set's labels stand


def test_the_option_is_checked_hashed_and_explained(tmp_path):
    parser = build_parser()
    base = ["--input", "in", "--output", "out"]
    plain = config_from_args(parser.parse_args(base), given_flags(parser, base))
    argv = [*base, "--background", "hms6"]
    background = config_from_args(parser.parse_args(argv), given_flags(parser, argv))
    assert (plain.background, background.background) == ("", "hms6")
    assert plain.config_hash() != background.config_hash()  # records say how they were labeled
    assert "--background" in parser.format_help()
    (tmp_path / "job.yaml").write_text("background: hms6\n")  # a --config file's value stands
    from_file = [*base, "--config", str(tmp_path / "job.yaml")]
    assert config_from_args(parser.parse_args(from_file), given_flags(parser, from_file)).background == "hms6"
    with pytest.raises(SystemExit):
        parser.parse_args([*base, "--background", "tusz"])
    with pytest.raises(ConfigError, match=r"^background: expected one of '', 'hms6'; got 'tusz'$"):
        PreprocessConfig(background="tusz")
