import os
import shutil

import pytest

from eegfm.pipelines.datasets import discover, expand_inputs
from eegfm.pipelines.datasets.adapters import site_from_path


def test_the_whole_shared_tree_is_accounted_for(shared_data):
    items, ignored, datasets = discover([str(shared_data)])
    every_file = expand_inputs([str(shared_data)])
    assert sorted([i.path for i in items] + [g.path for g in ignored]) == every_file
    assert datasets == {"data": "edf", "eegmat": "eegmat", "eegmmi": "eegmmi", "formats": "edf", "hms": "hms"}
    by_name = {i.path.rsplit("/", 1)[1]: i for i in items}
    # Upper-case extensions are recordings too.
    assert "MB0400FU.EDF" in by_name
    reasons = {g.path.rsplit("/", 1)[1]: g.reason for g in ignored}
    assert reasons["test_NO.eeg"] == "BrainVision data of test_NO.vhdr (.eeg), read through it"
    assert "spectrogram" in reasons["1000189855.parquet"]


def test_site_comes_from_the_first_folder_or_the_flag(shared_data):
    root = str(shared_data)
    assert site_from_path(f"{root}/eegmmi/S001R03.edf", [root]) == "eegmmi"
    items, _, _ = discover([str(shared_data / "eegmmi")], dataset="edf", site="boston")
    assert {i.site for i in items} == {"boston"}


def test_a_globstar_matches_zero_or_more_folders_and_gives_the_sites_the_folder_would(shared_data, tmp_path):
    # raw/top.edf, raw/site-a/a.edf, raw/site-b/deep/b.edf (links to real eegmat recordings)
    raw = tmp_path / "raw"
    names = ("top.edf", "site-a/a.edf", "site-b/deep/b.edf")
    for name, source in zip(names, ("Subject00_2.edf", "Subject01_2.edf", "Subject02_2.edf")):
        (raw / name).parent.mkdir(parents=True, exist_ok=True)
        (raw / name).symlink_to(shared_data / "eegmat" / source)
    every = sorted(str(raw / n) for n in names)
    assert expand_inputs([f"{raw}/**/*.edf"]) == every  # top.edf too, as in bash and Python
    assert expand_inputs([f"{raw}/**/deep/*.edf"]) == [str(raw / "site-b/deep/b.edf")]
    assert expand_inputs([f"{raw}/*/**/*.edf"]) == every[:2]  # site-a/a.edf and site-b/deep/b.edf

    def sites(*patterns):
        return {i.path[len(str(raw)) + 1 :]: i.site for i in discover(list(patterns), dataset="edf")[0]}

    by_folder = sites(str(raw))
    assert by_folder == {"top.edf": "raw", "site-a/a.edf": "site-a", "site-b/deep/b.edf": "site-b"}
    assert sites(f"{raw}/**/*.edf") == by_folder
    assert sites(str(raw), str(raw / "site-b/deep/b.edf")) == by_folder  # a file inside an input folder
    assert sites(str(raw / "site-b/deep/b.edf")) == {"site-b/deep/b.edf": "deep"}


def test_linked_site_folders_are_inputs_once_and_a_glob_names_the_links_it_cannot_follow(shared_data, tmp_path, caplog):
    data = tmp_path / "data"
    (data / "site-a").mkdir(parents=True)
    os.symlink(shared_data / "eegmmi", data / "site-b")  # a site folder linked in (it was skipped unlisted)
    os.symlink(shared_data / "eegmmi", data / "site-a" / "same")  # the same folder again: once
    os.symlink(data, data / "site-a" / "up")  # a cycle
    shutil.copy(shared_data / "eegmat" / "Subject00_2.edf", data / "site-a")
    items, _, _ = discover([str(data)])
    sites = sorted((i.site, os.path.relpath(i.path, data)) for i in items)
    assert sites == [
        ("site-a", "site-a/Subject00_2.edf"),
        ("site-b", "site-b/S001R03.edf"),
        ("site-b", "site-b/S001R04.edf"),
    ]  # the shallower link first; "same" would repeat it
    assert "site-a/same ->" in caplog.text and "site-a/up ->" in caplog.text and "not followed" in caplog.text
    caplog.clear()
    assert expand_inputs([str(data / "**" / "*.edf")]) == [str(data / "site-a" / "Subject00_2.edf")]
    assert "are not followed by a glob" in caplog.text and str(data / "site-a" / "same") in caplog.text
    assert expand_inputs([str(data / "site-b")]) == [str(data / "site-b" / f) for f in ("S001R03.edf", "S001R04.edf")]


def test_excluded_files_and_folders_are_not_inputs(shared_data, tmp_path, monkeypatch):
    (tmp_path / "out" / "site-x").mkdir(parents=True)
    (tmp_path / "a.edf").symlink_to(shared_data / "eegmat" / "Subject00_2.edf")
    (tmp_path / "out" / "site-x" / "part-00000-of-00001.tfrecord").write_bytes(b"x")
    (tmp_path / "key").write_bytes(b"k" * 32)
    monkeypatch.chdir(tmp_path)  # a relative path names the same file as an absolute one
    items, ignored, _ = discover([str(tmp_path)], exclude=[str(tmp_path / "out") + "/", "key"], dataset="edf")
    assert [i.path for i in items] == [str(tmp_path / "a.edf")] and not ignored
    with pytest.raises(FileNotFoundError, match="matched no files but the job's own"):
        discover([str(tmp_path / "out")], exclude=[str(tmp_path / "out")])


def test_bad_arguments_are_named(shared_data, tmp_path):
    with pytest.raises(
        ValueError,
        match=r"--dataset: expected one of 'auto', 'edf', 'hms', 'bids', 'eegmat', "
        r"'eegmmi', 'tuab', 'tuep', 'tusz', 'tuev', 'tuar', 'chbmit', 'siena'; got 'tuh'",
    ):
        discover([str(shared_data)], dataset="tuh")
    with pytest.raises(FileNotFoundError, match=r"--input .*nothing\*.edf: matched no files"):
        discover([str(tmp_path / "nothing*.edf")])


def test_one_file_spelled_several_ways_is_one_input(shared_data, tmp_path):
    (tmp_path / "site-a").mkdir()
    (tmp_path / "site-a" / "x.edf").symlink_to(shared_data / "eegmat" / "Subject00_2.edf")
    spellings = [
        f"{tmp_path}/site-a/x.edf",
        f"{tmp_path}/site-a/./x.edf",
        f"{tmp_path}//site-a/x.edf",
        f"{tmp_path}/site-b/../site-a/x.edf",
    ]
    items, _, _ = discover(spellings)
    assert [(i.path, i.site) for i in items] == [(f"{tmp_path}/site-a/x.edf", "site-a")]
    assert expand_inputs(spellings) == [f"{tmp_path}/site-a/x.edf"]


def test_sidecars_a_file_or_glob_input_leaves_out_are_named(tmp_path, shared_data, caplog):
    hms = tmp_path / "hms"
    (hms / "train_eegs").mkdir(parents=True)
    shutil.copy(shared_data / "hms" / "train_eegs" / "1000913311.parquet", hms / "train_eegs")
    (hms / "train.csv").write_text("eeg_id,patient_id\n1000913311,42\n")
    edf = tmp_path / "edf"
    (edf / "site-a").mkdir(parents=True)
    (edf / "site-a" / "r.edf").symlink_to(shared_data / "eegmat" / "Subject00_2.edf")
    (edf / "labels.csv").write_text("path,task,label\nsite-a/r.edf,abnormal,1\n")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "labels.csv").write_text("path,task,label\nelsewhere.edf,abnormal,1\n")
    (tmp_path / "other" / "x.edf").symlink_to(shared_data / "eegmat" / "Subject01_2.edf")

    def warned(*inputs):
        caplog.clear()
        discover([str(p) for p in inputs])
        return sorted(
            line.split(" is not among")[0] for line in caplog.messages if "is not among the inputs, so" in line
        )

    assert warned(hms / "train_eegs") == [str(hms / "train.csv")]
    assert warned(f"{hms}/train_eegs/*.parquet") == [str(hms / "train.csv")]
    assert warned(edf / "site-a" / "r.edf") == warned(edf / "site-a") == [str(edf / "labels.csv")]
    assert warned(hms) == warned(edf) == []  # given the folders, the sidecars are inputs
    assert warned(tmp_path / "other" / "x.edf") == []  # a labels.csv about other files: no warning


def test_the_manifest_says_which_metadata_files_are_read(tmp_path, shared_data):
    (tmp_path / "site-a").mkdir()
    (tmp_path / "site-a" / "r.edf").symlink_to(shared_data / "eegmat" / "Subject00_2.edf")
    for name in ("labels.csv", "site-a/events.csv", "site-a/notes.json"):
        (tmp_path / name).write_text("path\n")
    _, ignored, _ = discover([str(tmp_path)])
    why = {g.path[len(str(tmp_path)) + 1 :]: g.reason for g in ignored}
    assert why == {
        "labels.csv": "metadata sidecar (.csv), read by the data set adapter",
        "site-a/events.csv": "metadata (.csv), not a recording; no data set adapter reads events.csv",
        "site-a/notes.json": "metadata (.json), not a recording; no data set adapter reads notes.json",
    }


def test_age_cells():
    from eegfm.pipelines.datasets.tables import age_cell

    cells = {
        "34": 34.0,
        " 42.7 ": 42.0,
        "89+": 89.0,
        ">89": 89.0,
        "97": 90.0,
        "n/a": None,
        "": None,
        None: None,
        "unknown": None,
        "-3": None,
        "nan": None,
        "inf": None,
    }
    assert {cell: age_cell(cell) for cell in cells} == cells


def test_gzipped_edf_and_bdf_files_are_recordings_and_file_system_metadata_is_not(tmp_path):
    for name in ("a.edf.gz", "b.BDF.gz", "notes.txt", "._a.edf.gz", ".DS_Store"):
        (tmp_path / "site" / name).parent.mkdir(exist_ok=True)
        (tmp_path / "site" / name).write_bytes(b"x")
    items, ignored, _ = discover([str(tmp_path)])
    assert sorted(os.path.basename(i.path) for i in items) == ["a.edf.gz", "b.BDF.gz"]
    assert sorted(os.path.basename(g.path) for g in ignored) == [".DS_Store", "._a.edf.gz", "notes.txt"]
    assert "file-system metadata" in next(g.reason for g in ignored if g.path.endswith("._a.edf.gz"))


def test_an_egi_mff_folder_is_one_recording_and_its_files_are_read_through_it(tmp_path):
    for name in (
        "site/night.mff/info.xml",
        "site/night.mff/signal1.bin",
        "site/night.mff/coordinates.xml",
        "site/day.MFF/signal1.bin",
        "site/a.edf",
    ):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x" * 10)
    items, ignored, _ = discover([str(tmp_path)])
    assert sorted(os.path.relpath(i.path, tmp_path) for i in items) == ["site/a.edf", "site/day.MFF", "site/night.mff"]
    assert {i.site for i in items} == {"site"}
    assert sorted(os.path.relpath(g.path, tmp_path) for g in ignored) == [
        "site/day.MFF/signal1.bin",
        "site/night.mff/coordinates.xml",
        "site/night.mff/info.xml",
        "site/night.mff/signal1.bin",
    ]
    assert {g.reason for g in ignored if "night" in g.path} == {
        "part of the EGI MFF recording night.mff (a folder, read as one recording)"
    }
    # the largest recording first: a folder weighs all its files
    assert os.path.basename(items[0].path) == "night.mff"
    # the folder itself as --input
    items, ignored, _ = discover([str(tmp_path / "site" / "night.mff")])
    assert [i.path for i in items] == [str(tmp_path / "site" / "night.mff")] and len(ignored) == 3
