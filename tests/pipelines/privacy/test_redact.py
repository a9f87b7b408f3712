"""Redaction (the default; --keep_paths turns it off): file and folder names and channel labels that name patients
never reach a report or a log."""

import json
import logging
import os
import re

import pytest

from eegfm.contract.tfrecord import read_records
from eegfm.core.logs import RedactingFilter, setup_logging
from eegfm.pipelines.job.preprocess import run
from eegfm.pipelines.privacy.redact import PathRedactor, RunRedaction, kept_folders, main, shown_folders, split_name
from tests.pipelines.named_ward import IDENTIFIER, leaks, write_named_ward

KEY = b"0123456789abcdef0123456789abcdef"
TOKEN = r"[0-9a-f]{12}"


@pytest.mark.parametrize(
    "name, parts",
    [
        ("x.edf", ("x", ".edf")),
        ("x.fif.gz", ("x", ".fif.gz")),
        ("x.fif-1.gz", ("x", ".fif-1.gz")),
        ("Doe. John.vhdr", ("Doe. John", ".vhdr")),
        ("README", ("README", "")),
        (".hidden", (".hidden", "")),
    ],
)
def test_a_name_splits_into_its_stem_and_extensions(name, parts):
    assert split_name(name) == parts


def test_kept_folders_are_where_the_inputs_were_given():
    assert kept_folders(["/data/in", "/data/*/x.edf", "gs://b/a/x.edf", "gs://b", "rel.edf", "sub/x/"]) == [
        "/data",
        "/data",
        "gs://b/a",
        "sub",
    ]


def test_shown_folders_replace_the_inputs_own_and_an_outside_path_is_all_tokens():
    inputs = ["/clinic/Doe_Jane/rec.edf"]
    assert shown_folders(inputs) == ["/clinic/Doe_Jane"]  # by default, where the input was given
    r = PathRedactor(KEY, keep=shown_folders(inputs, ["/work/out/labels"]))
    assert re.fullmatch(rf"/dir-{TOKEN}/dir-{TOKEN}/file-{TOKEN}\.edf", r.path(inputs[0]))
    assert r.path("/work/out/labels/labels.csv").startswith("/work/out/labels/file-")


def test_every_name_below_a_kept_folder_becomes_a_keyed_token_and_its_extension_stays():
    r = PathRedactor(KEY, keep=["/exports"])
    one = r.path("/exports/Doe~ John/EEG1.edf")
    assert re.fullmatch(rf"/exports/dir-{TOKEN}/file-{TOKEN}\.edf", one)
    # each name on its own: a folder's files share its token, a file name the same token anywhere
    assert r.path("/exports/Doe~ John/EEG2.bdf").rsplit("/", 1)[0] == one.rsplit("/", 1)[0]
    assert r.path("/exports/Roe/EEG1.edf").rsplit("/", 1)[1] == one.rsplit("/", 1)[1]
    assert r.path("/exports/Doe~ John/EEG1.fif-1.gz").endswith(one.rsplit("/", 1)[1][:-4] + ".fif-1.gz")
    assert PathRedactor(KEY, keep=["/exports"]).path("/exports/Doe~ John/EEG1.edf") == one  # stable
    assert PathRedactor(KEY[::-1], keep=["/exports"]).path("/exports/Doe~ John/EEG1.edf") != one  # keyed
    assert re.fullmatch(rf"/dir-{TOKEN}/file-{TOKEN}\.edf", r.path("/elsewhere/Doe.edf"))  # nothing kept there
    assert re.fullmatch(rf"gs://bucket/dir-{TOKEN}/\*/file-{TOKEN}\.edf", r.path("gs://bucket/Doe/*/x.edf"))
    assert PathRedactor(KEY, enabled=False).path("/exports/Doe/x.edf") == "/exports/Doe/x.edf"
    # an EGI MFF folder is a recording: named as a file, wherever it stands in a path
    mff = r.path("/exports/Doe~ John/QUORRIDGE.mff")
    assert re.fullmatch(rf"/exports/dir-{TOKEN}/file-{TOKEN}\.mff", mff)
    assert r.path("/exports/Doe~ John/QUORRIDGE.mff/signal1.bin").startswith(mff + "/file-")
    assert (
        r.scrubber(["/exports/Doe~ John/QUORRIDGE.mff"])("part of the EGI MFF recording QUORRIDGE.mff")
        == f"part of the EGI MFF recording {mff.rsplit('/', 1)[1]}"
    )
    # a row of a label file keeps its row: train.csv#eeg_id=123
    assert re.fullmatch(
        rf"/exports/dir-{TOKEN}/file-{TOKEN}\.csv#eeg_id=123", r.path("/exports/hms/train.csv#eeg_id=123")
    )


def test_a_message_loses_the_names_of_the_paths_it_is_about_and_keeps_its_words():
    r = PathRedactor(KEY, keep=["/exports"])
    scrub = r.scrubber(["/exports/Doe~ John/eeg/Roe.vhdr"])
    token_dir, token_eeg, token_file = r.path("/exports/Doe~ John/eeg/Roe.vhdr").split("/")[2:]
    text = scrub(
        "Roe.vhdr: names Roe.eeg, not found in /exports/Doe~ John/eeg/Roe.vhdr (Doe~ John/eeg/); the eeg data of Roe"
    )
    assert text == (
        f"{token_file}: names {token_file[:-5]}.eeg, not found in /exports/{token_dir}/{token_eeg}/"
        f"{token_file} ({token_dir}/{token_eeg}/); the eeg data of Roe"
    )


def test_a_short_stem_is_a_file_name_only_before_a_file_extension():
    r = PathRedactor(KEY, keep=["/d"])
    scrub = r.scrubber(["/d/1.edf"])
    token = r.stem("1")
    assert (
        scrub("1.edf: 1.5 s of 1 channel; its copy 1.EDF") == f"{token}.edf: 1.5 s of 1 channel; its copy {token}.EDF"
    )


@pytest.mark.parametrize("archive", ["Doe.zip", "Doe.tar", "Doe.7z", "Doe.tar.gz", "Doe.tgz"])
def test_an_archive_named_in_a_message_is_a_file_name_too(archive):
    r = PathRedactor(KEY, keep=["/d"])
    scrub = r.scrubber([f"/d/{archive}"])
    text = scrub(f"{archive}: holds no recording (an inner archive of an upload)")
    assert "Doe" not in text and text.startswith(r.stem("Doe")), text


def test_held_log_records_come_out_scrubbed_once_the_names_are_known(capsys):
    setup_logging("INFO")
    log = logging.getLogger("eegfm.test_redact")
    hold = RedactingFilter().install()
    try:
        log.warning("listing /exports/Doe/x.edf")
        assert "x.edf" not in capsys.readouterr().err  # held: the names to hide are not known yet
        hold.release(PathRedactor(KEY, keep=["/exports"]).scrubber(["/exports/Doe/x.edf"]))
        try:
            raise ValueError("cannot read /exports/Doe/x.edf")
        except ValueError:
            log.exception("x.edf failed")
        err = capsys.readouterr().err
    finally:
        hold.remove()
    assert "listing /exports/dir-" in err and "Doe" not in err and "x.edf" not in err
    assert "Traceback" in err and "ValueError: cannot read /exports/dir-" in err


def _brainvision_named(source_dir, folder, stem):
    """The BrainVision recording of ../shared/data renamed, its header pointing at the new names."""
    folder.mkdir(parents=True)
    for ext in (".eeg", ".vmrk"):
        (folder / (stem + ext)).write_bytes((source_dir / ("test_NO" + ext)).read_bytes())
    header = (source_dir / "test_NO.vhdr").read_text(encoding="latin-1")
    (folder / (stem + ".vhdr")).write_text(header.replace("test_NO", stem), encoding="latin-1")


def test_a_redacted_run_names_no_patient_anywhere_and_the_key_maps_tokens_back(shared_data, tmp_path, capsys):
    root = tmp_path / "exports"
    patient = root / "Xanthippe~ Quorridge"
    other = root / "Zebediah Pumpernickel"
    patient.mkdir(parents=True)
    other.mkdir()
    rest, task = shared_data / "eegmat" / "Subject03_1.edf", shared_data / "eegmat" / "Subject03_2.edf"
    (patient / "XANTHIPPE^QUORRIDGE 19700101.edf").write_bytes(task.read_bytes())
    (other / "PUMPERNICKEL_copy.edf").write_bytes(task.read_bytes())  # quarantined as a copy of the other
    (other / "ZEBEDIAH_truncated.edf").write_bytes(rest.read_bytes()[:5000])
    _brainvision_named(shared_data / "formats" / "brainvision", other / "bv", "Pumpernickel Zebediah")
    key = tmp_path / "key"
    key.write_bytes(KEY)
    out = tmp_path / "out"
    manifest = run(
        [
            "--input",
            str(root),
            "--output",
            str(out),
            "--pseudonym_key_file",
            str(key),
            "--redact_paths",
            "--no_artifact_model",
        ]
    )
    printed = capsys.readouterr()
    assert manifest["counts"] == manifest["counts"] | {"inputs": 6, "processed": 1, "quarantined": 3, "ignored": 2}
    stages = sorted(e["stage"] for e in manifest["inputs"] if e["status"] == "quarantined")
    assert stages == ["duplicate", "harmonize", "read"]
    shown = re.escape(str(tmp_path))
    for entry in manifest["inputs"]:
        assert re.fullmatch(rf"{shown}/(dir-{TOKEN}/)+file-{TOKEN}\.(edf|vhdr|eeg|vmrk)", entry["source"]), entry
        assert entry["status"] != "quarantined" or entry["reason"].startswith("file-"), entry["reason"]
    assert manifest["output"] == str(out) and manifest["redact_paths"] is True

    needles = [
        b"Xanthippe",
        b"XANTHIPPE",
        b"Quorridge",
        b"QUORRIDGE",
        b"Zebediah",
        b"ZEBEDIAH",
        b"Pumpernickel",
        b"PUMPERNICKEL",
        b"19700101",
    ]
    haystacks = {"stdout": printed.out.encode(), "stderr": printed.err.encode()}
    for path in out.rglob("*"):
        if path.is_file() and path.suffix == ".tfrecord":  # compressed signal bytes could spell anything
            haystacks[str(path)] = b"".join(r for r in read_records(path))
        elif path.is_file():
            haystacks[str(path)] = path.read_bytes()
    assert "quarantined " in printed.err and len(haystacks) >= 5 and manifest["counts"]["caps"] == {}
    leaks = [(name, n) for name, blob in haystacks.items() for n in needles if n in blob]
    assert not leaks, leaks

    # Whoever holds the key finds the file behind a quarantine line.
    lines = [json.loads(line) for line in (out / "quarantine.jsonl").read_text().splitlines()]
    truncated = next(line["path"] for line in lines if line["stage"] == "read")
    assert main(["--input", str(root), "--pseudonym_key_file", str(key), "--find", truncated]) == 0
    assert capsys.readouterr().out == f"{truncated}\t{other / 'ZEBEDIAH_truncated.edf'}\n"
    assert main(["--input", str(root), "--pseudonym_key_file", str(key)]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 4 + 2  # the BrainVision sidecars are listed too


def test_shown_folders_hide_the_input_s_own_folder_and_the_lookup_takes_them_too(shared_data, tmp_path, capsys):
    """A tool that picks files (the folder benchmark) shows only its own folder: the folder a file
    sits in, named after a person, is a token in the manifest; the key holder still finds the file."""
    recording = tmp_path / "Doe_Jane_1961" / "Subject00_2.edf"
    recording.parent.mkdir()
    recording.symlink_to(shared_data / "eegmat" / "Subject00_2.edf")
    key, out = tmp_path / "key", tmp_path / "out"
    key.write_bytes(KEY)
    shown = ["--shown_folders", str(out)]
    run(["--input", str(recording), "--output", str(out), "--pseudonym_key_file", str(key), *shown])
    text = (out / "manifest.json").read_text()
    (source,) = [entry["source"] for entry in json.loads(text)["inputs"]]
    assert "Doe_Jane" not in text and re.fullmatch(rf"(/dir-{TOKEN})+/file-{TOKEN}\.edf", source), source
    capsys.readouterr()
    assert main(["--input", str(recording), "--pseudonym_key_file", str(key), *shown, "--find", source]) == 0
    assert capsys.readouterr().out == f"{source}\t{recording}\n"


def test_an_error_before_the_inputs_are_listed_is_scrubbed_too(tmp_path, capsys):
    key = tmp_path / "key"
    key.write_bytes(KEY)
    with pytest.raises(SystemExit):
        run(
            [
                "--input",
                str(tmp_path / "Xanthippe Quorridge"),
                str(tmp_path / "QUORRIDGE.edf"),
                "--output",
                str(tmp_path / "out"),
                "--pseudonym_key_file",
                str(key),
                "--redact_paths",
            ]
        )
    err = capsys.readouterr().err
    assert "error: --input" in err and "dir-" in err
    assert "Quorridge" not in err and "QUORRIDGE" not in err
    assert os.path.exists(key)


def test_the_lookup_names_what_it_cannot_read(tmp_path, capsys):
    key = tmp_path / "key"
    key.write_bytes(KEY)
    with pytest.raises(SystemExit):
        main(["--input", str(tmp_path / "nowhere"), "--pseudonym_key_file", str(key)])
    assert "eegfm-redact: error: --input " in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--input", str(tmp_path), "--pseudonym_key_file", str(tmp_path / "no.key")])
    assert "--pseudonym_key_file" in capsys.readouterr().err


def test_by_default_no_name_record_number_or_birth_date_leaves_a_run(shared_data, tmp_path, capsys):
    ward = write_named_ward(shared_data, tmp_path / "ward")
    key = tmp_path / "key"
    key.write_bytes(KEY)
    common = ["--input", str(ward), "--pseudonym_key_file", str(key), "--no_artifact_model"]
    manifest = run([*common, "--output", str(tmp_path / "out")])
    printed = capsys.readouterr()
    assert manifest["counts"] == manifest["counts"] | {"inputs": 4, "processed": 2, "quarantined": 2}
    assert manifest["redact_paths"] is True
    by_stage = {e["stage"]: e for e in manifest["inputs"] if e["status"] == "quarantined"}
    assert set(by_stage) == {"harmonize", "read"}
    assert re.search(
        rf"Channels found: .*'chan-{TOKEN}', 'chan-{TOKEN}', 'chan-{TOKEN}'", by_stage["harmonize"]["reason"]
    )
    assert re.search(rf"\('chan-{TOKEN}'\)", by_stage["read"]["reason"])  # the header field's signal, by token
    assert "quarantined " in printed.err and "EEG Pz" in by_stage["harmonize"]["reason"]  # electrodes stay
    assert not leaks(tmp_path / "out", printed.out, printed.err)

    # --keep_paths: names and labels as given; --redact_paths alone is the default, still accepted
    kept = run([*common, "--output", str(tmp_path / "kept"), "--keep_paths"])
    printed = capsys.readouterr()
    sources = {os.path.basename(e["source"]) for e in kept["inputs"]}
    assert f"{IDENTIFIER}.edf" in sources and kept["redact_paths"] is False
    reasons = " ".join(e.get("reason", "") for e in kept["inputs"])
    assert "'DOE_JOHN', 'MRN1234567_1960'" in reasons and IDENTIFIER in printed.err
    assert run([*common, "--output", str(tmp_path / "old"), "--redact_paths"])["redact_paths"] is True
    capsys.readouterr()
    with pytest.raises(SystemExit):
        run([*common, "--output", str(tmp_path / "both"), "--redact_paths", "--keep_paths"])
    assert "not allowed with" in capsys.readouterr().err


@pytest.mark.parametrize(
    "label, kept",
    [
        ("EEG Fp1-REF", True),
        ("Fp1-F7", True),
        ("ECG ECG", True),
        ("EEG A2-A1", True),
        ("E17", True),
        ("EDF Annotations", True),
        ("DOE_JOHN", False),
        ("Z1", False),
        ("ECG 1960-01-01", False),
        ("EOG MRN1234567", False),
        ("ECG DOE JOHN", False),
        ("EOG SMITH JANE", False),
        ("EEG EKG1-REF", True),
        ("POL EMG", True),
        ("ECG LA-RA", True),
        ("EOG LOC", True),
        ("SpO2", True),
        ("PHOTIC-REF", True),
    ],
)
def test_only_electrode_reference_and_auxiliary_labels_stay_readable(label, kept):
    redactor = PathRedactor(KEY)
    assert (redactor.label(label) == label) is kept
    if not kept:
        assert re.fullmatch(rf"chan-{TOKEN}", redactor.label(label))
        assert redactor.scrubber([], [label])(f"channel {label!r}: unit") == f"channel '{redactor.label(label)}': unit"
    assert PathRedactor(KEY, enabled=False).label(label) == label


def test_the_parts_of_every_format_are_redacted_in_reasons():
    r = PathRedactor(KEY, keep=["/exports"])
    for recording, part, reason in [
        ("Doe.cnt", "Doe.evt", "ANT Neuro part of the recording Doe.cnt (.evt), read with it"),
        ("Doe.lay", "Doe.dat", "Persyst data of Doe.lay (.dat), read through it"),
        ("DOE.EEG", "DOE.21E", "Nihon Kohden part of the recording DOE.EEG (.21e), read with it"),
        ("DOE.EEG", "DOE.11D", "Nihon Kohden part of the recording DOE.EEG (.11d), read with it"),
        ("DOE.EEG", "DOE.CN2", "Nihon Kohden part of the recording DOE.EEG (.cn2), read with it"),
        ("Doe 8.cdt", "Doe 8.cdt.dpa", "Curry part of the recording Doe 8.cdt (.cdt.dpa), read with it"),
    ]:
        scrubbed = r.scrubber([f"/exports/Doe/{recording}", f"/exports/Doe/{part}"])(reason)
        assert "Doe" not in scrubbed and "DOE" not in scrubbed, scrubbed


def test_a_folder_a_reason_is_about_is_its_token_where_the_reason_names_it():
    r = PathRedactor(KEY, keep=["/exports"])
    folder = "/exports/in/Smith^Jane_19700101"  # a folder this user may not list: an entry with no extension
    token = r.path(folder).rsplit("/", 1)[1]
    scrub = r.scrubber([folder])
    assert re.fullmatch(rf"dir-{TOKEN}", token)
    reason = "Smith^Jane_19700101: permission denied: this user may not list this folder"
    assert scrub(reason) == f"{token}: permission denied: this user may not list this folder"
    assert scrub("cannot list 'Smith^Jane_19700101' (Smith^Jane_19700101/x.edf)") == (
        f"cannot list '{token}' ({token}/x.edf)"
    )
    # elsewhere the word stays, as a folder's name does ('data' below); an --input as typed is named whole
    data = r.scrubber(["/exports/data"])
    assert data("x.parquet: data: unreadable rows") == f"x.parquet: {r.folder('data')}: unreadable rows"
    assert data("the data of x.parquet") == "the data of x.parquet"
    typed = r.scrubber(["/exports/data", "/exports/data/x.parquet"], typed=["/exports/data"])
    assert typed("x.parquet: data: unreadable rows") == f"{r.stem('x')}.parquet: data: unreadable rows"


def test_a_dot_inside_a_folder_or_file_name_is_not_an_extension():
    """Only the extensions of files a run meets split a name: 'Smith.Jane_1970' is one name."""
    r = PathRedactor(KEY, keep=["/exports"])
    assert split_name("Smith.Jane_1970") == ("Smith.Jane_1970", "")
    assert split_name("rec.1.edf") == ("rec.1", ".edf") and split_name("x.fif-1.gz") == ("x", ".fif-1.gz")
    path = r.path("/exports/Smith.Jane_1970/Doe.John.edf")
    assert "Smith" not in path and "Jane" not in path and "John" not in path and path.endswith(".edf")
    scrub = r.scrubber(["/exports/Smith.Jane_1970"])
    assert scrub("Smith.Jane_1970: permission denied") == f"{path.split('/')[2]}: permission denied"


@pytest.mark.parametrize("typed", ["e", "in", "data"])
def test_a_short_relative_input_is_replaced_only_where_it_stands_as_a_path(typed):
    # Issue 78 #9: with --input e every 'e' of the log became the token ("quarantindir-...d")
    redaction = RunRedaction(True, [typed])
    redaction.keyed(KEY, [typed, f"{typed}/Doe.edf"], shown_folders([typed]))
    token, file_token = redaction.redactor.path(typed), redaction.redactor.path(f"{typed}/Doe.edf")
    try:
        text = redaction.scrub(
            f"2 recordings quarantined in the data folder; {typed}/Doe.edf: cannot read it; --input {typed}: "
            f"listed; '{typed}' holds 1 file in {typed}/"
        )
    finally:
        redaction.close()
    assert text == (
        f"2 recordings quarantined in the data folder; {file_token}: cannot read it; --input {token}: "
        f"listed; '{token}' holds 1 file in {token}/"
    )


def test_a_dry_run_over_a_one_letter_input_keeps_its_words(shared_data, tmp_path, monkeypatch, capsys):

    (tmp_path / "e").mkdir()
    for name in ("Subject00_2.edf", "Subject01_2.edf"):
        (tmp_path / "e" / name).symlink_to(shared_data / "eegmat" / name)
    (tmp_path / "e" / "broken.edf").symlink_to(tmp_path / "none.edf")
    key = tmp_path / "key"
    key.write_bytes(b"0123456789abcdef0123456789abcdef\n")
    key.chmod(0o600)
    monkeypatch.chdir(tmp_path)  # the input as typed: relative, one letter
    run(["--input", "e", "--output", "out", "--pseudonym_key_file", str(key), "--dry_run", "True"])
    plan = capsys.readouterr().out
    assert plan.startswith("eegfm-preprocess --dry_run: nothing read or written; out would receive\n"), plan
    assert "1 file that cannot be read, to quarantine:" in plan and "dir-" in plan and "Subject" not in plan
