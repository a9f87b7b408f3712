"""``POST /v1/traces`` for the review screen over real HTTP on real recordings: every montage's
derivations from the same samples, custom lists and their errors, display filters that only narrow
the pipeline's band (edges that do not ring, gaps that stay gaps), auxiliary channels named by
kind, the recording's own annotations, its start and its recording_id."""

from __future__ import annotations

import base64
import hashlib
import json

import numpy as np
import pytest

from tests.serving.serve_helpers import AUTH, multipart
from tests.serving.test_server_traces import BANANA, RECORDING, SFREQ, decoded

TRANSVERSE = (
    "F7-Fp1 Fp1-Fp2 Fp2-F8 F7-F3 F3-Fz Fz-F4 F4-F8 T3-C3 C3-Cz Cz-C4 C4-T4 T5-P3 P3-Pz Pz-P4 P4-T6 T5-O1 O1-O2 O2-T6"
).split()
REFERENTIAL = "Fp1 F3 C3 P3 F7 T3 T5 O1 Fz Cz Pz Fp2 F4 C4 P4 F8 T4 T6 O2".split()
MOTOR = "eegmmi/S001R03.edf"  # EDF+ with T0/T1/T2 annotations, recorded 12 Aug 2009 16:15


@pytest.fixture(scope="module")
def upload(shared_data):
    return multipart("file", [("visit.edf", (shared_data / RECORDING).read_bytes())])


def traces(server, upload, query: str) -> tuple[int, dict]:
    body, kind = upload
    status, reply, _ = server.request("POST", f"/v1/traces?{query}", body, {**AUTH, **kind})
    return status, reply


def refused(server, query: str) -> dict:
    """The 422 reply to ``query``: refused before the body is read, so a small body, which the
    refusal cannot cut off."""
    raw = {**AUTH, "Content-Type": "application/octet-stream"}
    status, reply, _ = server.request("POST", f"/v1/traces?{query}&filename=a.edf", b"0" * 256, raw)
    assert status == 422, reply
    return reply


def by_name(reply: dict) -> dict[str, np.ndarray]:
    return {d["name"]: row for d, row in zip(reply["derivations"], decoded(reply), strict=True)}


def test_every_montage_derives_from_the_same_samples(server, upload):
    replies = {}
    for montage in ("referential", "average", "double_banana", "transverse"):
        status, reply = traces(server, upload, f"start_s=10&seconds=20&montage={montage}")
        assert status == 200, reply
        assert reply["montage_key"] == montage and reply["model_montage"] == "referential"
        assert reply["is_model_montage"] == (montage == "referential")
        replies[montage] = reply
    assert [d["name"] for d in replies["double_banana"]["derivations"]] == BANANA
    assert [d["name"] for d in replies["transverse"]["derivations"]] == TRANSVERSE
    assert [d["name"] for d in replies["referential"]["derivations"]] == REFERENTIAL
    assert [d["name"] for d in replies["average"]["derivations"]] == [f"{e}-avg" for e in REFERENTIAL]
    assert replies["double_banana"]["derivations"][0]["group"] == "left temporal"
    assert replies["double_banana"]["montage"] == "double banana (longitudinal bipolar)"
    ref = by_name(replies["referential"])
    for montage in ("double_banana", "transverse"):
        tolerance = replies["referential"]["encoding"]["scale_uv"] + replies[montage]["encoding"]["scale_uv"] + 1e-3
        for name, row in by_name(replies[montage]).items():
            first, second = name.split("-")
            np.testing.assert_allclose(row, ref[first] - ref[second], atol=tolerance, err_msg=name)
    average = decoded(replies["average"])
    mean = np.mean([ref[e] for e in REFERENTIAL], axis=0)
    np.testing.assert_allclose(average[0], ref["Fp1"] - mean, atol=tolerance)
    # each electrode minus the 19's mean: they sum to ~0 (19 rounding steps at most)
    assert np.abs(average.sum(axis=0)).max() <= 19 * replies["average"]["encoding"]["scale_uv"]
    assert np.abs(average).max() > 10


def test_a_custom_montage_and_its_errors_name_the_entry(server, upload):
    status, reply = traces(server, upload, "start_s=10&seconds=10&montage=custom&derivations=Fp1-F7,Cz-avg,O2")
    assert status == 200, reply
    assert [d["name"] for d in reply["derivations"]] == ["Fp1-F7", "Cz-avg", "O2"]
    assert [d["electrodes"] for d in reply["derivations"]] == [["Fp1", "F7"], ["Cz"], ["O2"]]
    status, banana = traces(server, upload, "start_s=10&seconds=10")
    np.testing.assert_allclose(decoded(reply)[0], decoded(banana)[0], atol=0.2 + 1e-3)
    for query, where in [
        ("montage=custom&derivations=Fp1-F7,Fp1-X9", "query parameter derivations[1]: expected 'A-B'"),
        ("montage=custom", "query parameter derivations: expected 1 to 40"),
        ("montage=average&derivations=Fp1", "query parameter derivations: expected only with montage=custom"),
        ("montage=laplacian", "query parameter montage: expected one of referential, average, double_banana"),
        ("notch=55", "query parameter notch: expected one of off, 50, 60"),
    ]:
        reply = refused(server, query)
        assert reply["error"].startswith(where), reply


def test_display_filters_narrow_the_band_and_do_not_ring_at_the_page_edges(server, upload):
    status, plain = traces(server, upload, "start_s=20&seconds=10")
    assert plain["filters"] == {
        "lff_hz": None,
        "hff_hz": None,
        "notch_hz": None,
        "pipeline": {"lff_hz": 0.5, "hff_hz": 70.0, "notch_hz": plain["filters"]["pipeline"]["notch_hz"]},
        "applies_to": "display only: the model's input is unchanged",
    }
    status, page = traces(server, upload, "start_s=20&seconds=10&lff=5&hff=15&notch=50")
    assert status == 200, page
    assert (page["filters"]["lff_hz"], page["filters"]["hff_hz"], page["filters"]["notch_hz"]) == (5.0, 15.0, 50)
    raw, shown = decoded(plain), decoded(page)
    assert np.abs(raw - shown).max() > 5  # the samples changed
    spectrum = np.abs(np.fft.rfft(shown, axis=1)) ** 2
    freqs = np.fft.rfftfreq(shown.shape[1], 1 / SFREQ)
    raw_spectrum = np.abs(np.fft.rfft(raw, axis=1)) ** 2
    for band in ((freqs < 2), (freqs > 30)):  # well outside 5-15 Hz: far less power than before
        assert spectrum[:, band].sum() < 0.05 * raw_spectrum[:, band].sum()
    # the same 10 s inside a longer span: both filtered with seconds of real samples either side
    status, longer = traces(server, upload, "start_s=10&seconds=30&lff=5&hff=15&notch=50")
    inner = decoded(longer)[:, 10 * SFREQ : 20 * SFREQ]
    assert np.abs(inner - shown).max() < 0.02 * np.abs(shown).max() + 0.2
    # windows end at 60 s of 62: the missing tail stays missing, the rest is filtered
    status, tail = traces(server, upload, "start_s=50&seconds=12&lff=1")
    values = decoded(tail)
    assert np.isfinite(values[:, : 10 * SFREQ]).all() and np.isnan(values[:, 10 * SFREQ :]).all()
    for query, named in [("lff=0.3", "l_freq 0.5 Hz"), ("hff=80", "h_freq 70 Hz"), ("lff=20&hff=10", "10 Hz")]:
        reply = refused(server, query)
        assert named in reply["error"], reply
        assert reply["error"].startswith("query parameter lff" if "lff" in query else "query parameter hff")
    assert "only narrow the pipeline's band" in refused(server, "lff=0.3")["error"]


def test_auxiliary_channels_are_named_by_kind_and_drawn_from_the_file(server, upload, shared_data):
    import mne

    status, reply = traces(server, upload, "start_s=10&seconds=20")
    assert status == 200, reply
    [ecg] = reply["extra"]  # eegmat: 'ECG ECG' beside the EEG, and 'EEG A2-A1' (not auxiliary)
    assert (ecg["name"], ecg["kind"]) == ("ECG", "ecg") and ecg["scale_uv"] >= 0.1
    samples = np.frombuffer(base64.b64decode(ecg["samples"]), dtype="<i2") * ecg["scale_uv"]
    assert samples.shape == (20 * SFREQ,)
    raw = mne.io.read_raw_edf(shared_data / RECORDING, include=["ECG ECG"], preload=True, verbose="error")
    expected = raw.filter(0.5, 70, verbose="error").resample(SFREQ, verbose="error").get_data()[0] * 1e6
    expected = expected[10 * SFREQ : 30 * SFREQ]
    assert np.corrcoef(samples, expected)[0, 1] > 0.95  # the file's ECG, in time, band-passed as the EEG
    text = json.dumps(reply)
    assert "ECG ECG" not in text and "A2-A1" not in text and "visit" not in text
    assert traces(server, upload, "start_s=10&seconds=20&extra=0")[1]["extra"] == []


def test_the_recordings_annotations_start_and_id(server, shared_data):
    data = (shared_data / MOTOR).read_bytes()
    status, reply = traces(server, multipart("file", [("run.edf", data)]), "start_s=0&seconds=10")
    assert status == 200, reply
    notes = reply["annotations"]
    assert len(notes) == 30  # all of them, not only the page's
    assert notes[:2] == [
        {"onset_s": 0.0, "duration_s": 4.2, "text": "T0"},
        {"onset_s": 4.2, "duration_s": 4.1, "text": "T2"},
    ]
    assert {n["text"] for n in notes} == {"T0", "T1", "T2"}
    assert reply["recorded_at"] == "2009-08-12T16:15:00"
    assert reply["recording_id"] == hashlib.sha256(data).hexdigest()[:32]
    assert reply["extra"] == []  # 64 EEG channels, nothing auxiliary
    assert "Fc5." not in json.dumps(reply)


def test_a_gzipped_upload_has_its_facts_too(server, shared_data):
    """The file is opened as the pipeline opens it (decompressed first): its ECG and its id."""
    import gzip

    data = gzip.compress((shared_data / RECORDING).read_bytes())
    status, reply = traces(server, multipart("file", [("visit.edf.gz", data)]), "start_s=0&seconds=5")
    assert status == 200, reply
    assert [e["name"] for e in reply["extra"]] == ["ECG"]
    assert reply["recording_id"] == hashlib.sha256(data).hexdigest()[:32]


def test_several_channels_of_a_kind_are_numbered_never_named_as_recorded(server, shared_data, tmp_path):
    """eegmat's reference and ECG leads renamed as two EOG leads (real signals, FIF): 'EOG 1', 'EOG 2'."""
    import mne

    raw = mne.io.read_raw_edf(shared_data / RECORDING, preload=True, verbose="error")
    raw.rename_channels({"EEG A2-A1": "EOG Roe left", "ECG ECG": "EOG Roe right"})
    path = tmp_path / "visit_raw.fif"
    raw.save(path, verbose="error")
    status, reply = traces(server, multipart("file", [(path.name, path.read_bytes())]), "start_s=10&seconds=10")
    assert status == 200, reply
    assert [(e["name"], e["kind"]) for e in reply["extra"]] == [("EOG 1", "eog"), ("EOG 2", "eog")]
    first, second = (np.frombuffer(base64.b64decode(e["samples"]), dtype="<i2") * e["scale_uv"] for e in reply["extra"])
    assert first.shape == second.shape == (10 * SFREQ,) and np.std(first) > 0 and np.std(second) > 0
    assert not np.allclose(first, second)  # two signals, each on its own scale
    assert "Roe" not in json.dumps(reply)


@pytest.mark.parametrize("query", ["lff=inf", "lff=nan", "hff=-1", "hff=128", "extra=2", "lff=abc"])
def test_every_view_parameter_is_checked_before_the_body(server, query):
    parameter = query.split("=")[0]
    assert refused(server, query)["error"].startswith(f"query {parameter}: ")
