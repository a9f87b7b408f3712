import json
import shutil

from eegfm.contract.tfrecord import read_records
from eegfm.pipelines.job.duplicates import duplicate_sources, mark_duplicate
from eegfm.pipelines.job.preprocess import run
from eegfm.pipelines.job.process import Outcome


def test_the_copy_kept_has_the_most_labeled_windows_then_windows_then_comes_first():
    hashed = [
        ("aa", "/d/site-b/x.edf", 0, 18),
        ("bb", "/d/site-a/y.edf", 0, 18),
        ("aa", "/d/site-a/x.edf", 0, 18),
        ("aa", "/d/all/x.edf", 0, 18),
        ("aa", "/d/all/x.edf", 0, 18),
    ]  # a source listed twice is one source
    assert duplicate_sources(hashed) == {"/d/site-a/x.edf": "/d/all/x.edf", "/d/site-b/x.edf": "/d/all/x.edf"}
    assert duplicate_sources([("cc", "/one.edf", 0, 5)]) == {}
    # An HMS parquet under train_eegs/ (3 voted windows) and copied to a plain folder (5 unlabeled).
    hms = [("dd", "/a/plain/1.parquet", 0, 5), ("dd", "/a/train_eegs/1.parquet", 3, 3)]
    assert duplicate_sources(hms) == {"/a/plain/1.parquet": "/a/train_eegs/1.parquet"}
    assert duplicate_sources([("ee", "/b/x.edf", 0, 4), ("ee", "/a/x.edf", 0, 3)]) == {"/a/x.edf": "/b/x.edf"}


def test_a_copy_is_quarantined_and_other_outcomes_are_left_as_they_are():
    copy = Outcome(
        "/d/site-b/x.edf",
        "processed",
        windows=18,
        labeled_windows=18,
        rejected_windows=2,
        rejection_rules={"flat": 2},
        source_sha256="ac46d8c9905d6750" + "0" * 48,
        eeg_seconds=182.0,
    )
    marked = mark_duplicate(copy, {"/d/site-b/x.edf": "/d/site-a/x.edf"})
    assert (
        marked.status,
        marked.stage,
        marked.windows,
        marked.labeled_windows,
        marked.rejected_windows,
        marked.rejection_rules,
    ) == ("quarantined", "duplicate", 0, 0, 0, {})
    assert marked.reason == (
        "x.edf: the same file (SHA-256 ac46d8c9905d6750...) as /d/site-a/x.edf, whose "
        "windows are written; a copy is not written twice"
    )
    assert marked.eeg_seconds == 182.0 and copy.status == "processed"  # read all the same; the input unchanged
    other = Outcome("/d/site-a/x.edf", "processed", windows=18)
    assert mark_duplicate(other, {"/d/site-b/x.edf": "/d/site-a/x.edf"}) is other


def test_a_recording_copied_into_two_sites_is_written_once(shared_data, tmp_path):
    eegmat = shared_data / "eegmat"
    for site, names in {
        "site-a": ["Subject00_2.edf", "Subject01_2.edf"],
        "site-b": ["Subject00_2.edf", "Subject02_2.edf"],
        "site-c": ["Subject00_2.edf"],
    }.items():
        (tmp_path / "in" / site).mkdir(parents=True)
        for name in names:
            shutil.copy(eegmat / name, tmp_path / "in" / site / name)
    key = tmp_path / "key"
    key.write_bytes(b"0123456789abcdef0123456789abcdef\n")
    key.chmod(0o600)
    manifest = run(
        [
            "--input",
            str(tmp_path / "in"),
            "--output",
            str(tmp_path / "out"),
            "--pseudonym_key_file",
            str(key),
            "--no_artifact_model",
            "--keep_paths",
        ]
    )
    inputs = {e["source"].split("/in/", 1)[1]: e for e in manifest["inputs"]}
    kept = str(tmp_path / "in" / "site-a" / "Subject00_2.edf")
    for copy in ("site-b/Subject00_2.edf", "site-c/Subject00_2.edf"):
        assert inputs[copy]["status"] == "quarantined" and inputs[copy]["stage"] == "duplicate"
        assert inputs[copy]["windows"] == 0 and f" as {kept}, whose windows are written" in inputs[copy]["reason"]
    others = ["site-a/Subject00_2.edf", "site-a/Subject01_2.edf", "site-b/Subject02_2.edf"]
    assert all(inputs[name]["status"] == "processed" for name in others)
    per_recording = inputs["site-a/Subject00_2.edf"]["windows"]
    assert manifest["counts"]["windows"] == sum(inputs[name]["windows"] for name in others) == 3 * per_recording
    assert (manifest["counts"]["processed"], manifest["counts"]["quarantined"]) == (3, 2)
    assert manifest["counts"]["per_length_samples"] == {"2560": 3 * per_recording}  # 10 s windows at 256 Hz
    # The shards hold each recording's windows once; site-c, whose only file was a copy, has an empty shard.
    written = {}
    for shard in (tmp_path / "out").glob("*/part-*.tfrecord"):
        with open(shard, "rb") as fh:
            written[shard.parent.name] = written.get(shard.parent.name, 0) + len(list(read_records(fh, "SNAPPY")))
    site = {name.split("/")[0]: inputs[name]["site"] for name in inputs}
    assert written == {site["site-a"]: 2 * per_recording, site["site-b"]: per_recording, site["site-c"]: 0}
    quarantine = [json.loads(line) for line in (tmp_path / "out" / "quarantine.jsonl").read_text().splitlines()]
    assert sorted(q["stage"] for q in quarantine if q["kind"] == "input") == ["duplicate", "duplicate"]
