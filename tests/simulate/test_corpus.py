"""The written corpus, read back with real readers: EDF (MNE, pyedflib), HMS parquet, CSV, JSON."""

import csv
import hashlib
import json
from pathlib import Path

import mne
import numpy as np
import pyarrow.parquet as pq
import pyedflib
import pytest
from scipy import signal

from eegfm.contract.channels import CANONICAL_CHANNELS, canonical_name, canonical_positions
from eegfm.simulate import corpus as corpus_module
from eegfm.simulate.corpus import CorpusConfig, generate_corpus
from eegfm.simulate.sites import CLASSES, default_sites
from eegfm.simulate.votes import VOTE_COLUMNS
from tests.simulate.conftest import SMALL
from tests.simulate.measures import (
    REAL_EEG,
    REAL_SPECTROGRAM,
    dominant_frequency,
    envelope_periodicity,
    gfp_rms,
    lateralization,
    onset_times,
)

HMS_TRAIN_COLUMNS = [
    "eeg_id",
    "eeg_sub_id",
    "eeg_label_offset_seconds",
    "spectrogram_id",
    "spectrogram_sub_id",
    "spectrogram_label_offset_seconds",
    "label_id",
    "patient_id",
    "expert_consensus",
    "seizure_vote",
    "lpd_vote",
    "gpd_vote",
    "lrda_vote",
    "grda_vote",
    "other_vote",
]
SITES = {s.name: s for s in default_sites(SMALL.sites, SMALL.seed)}
HMS_SFREQ = 200


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _hms_eeg(corpus: Path, record: dict) -> np.ndarray:
    frame = pq.read_table(corpus / "hms" / record["hms_eeg_path"]).to_pandas()
    return frame[list(CANONICAL_CHANNELS)].to_numpy(dtype=np.float64).T


def _episodes(truth, cls):
    return [(r, e) for r in truth for e in r["episodes"] if e["class"] == cls]


def _inside(x, episode, margin=5.0):
    start, end = episode["start_s"] + margin, episode["end_s"] - margin
    return x[:, int(start * HMS_SFREQ) : int(end * HMS_SFREQ)]


def test_layout_and_all_six_classes(corpus, truth):
    names = {p.name for p in corpus.iterdir()}
    assert names == {"corpus.json", "truth.jsonl", "identifiers.json", "edf", "hms"}
    assert {e["class"] for r in truth for e in r["episodes"]} == set(CLASSES)
    manifest = json.loads((corpus / "corpus.json").read_text())
    assert manifest["seed"] == 0 and manifest["counts"]["recordings"] == len(truth) == 4
    assert set(manifest) == {
        "generator",
        "version",
        "seed",
        "config",
        "classes",
        "conventions",
        "sites",
        "counts",
    }  # no wall times: the file is reproducible
    assert not list(corpus.parent.glob(".*partial*"))


# ---------------------------------------------------------------------------------------------
# EDF, read back with MNE and pyedflib
# ---------------------------------------------------------------------------------------------


def test_edf_files_follow_each_sites_conventions(corpus, truth):
    for record in truth:
        site = SITES[record["site"]]
        path = corpus / "edf" / record["edf_path"]
        labels = [site.eeg_label(c) for c in site.recorded_channels()]
        labels += [site.aux_label(k) for k in site.aux_channels]

        raw = mne.io.read_raw_edf(path, preload=True, verbose="error")
        assert raw.info["sfreq"] == site.sfreq == record["sfreq"]
        assert raw.ch_names == labels
        assert raw.n_times == record["duration_s"] * site.sfreq
        n_eeg = len(site.recorded_channels())
        eeg_uv = raw.get_data(picks=list(range(n_eeg))) * 1e6  # MNE converts uV and mV to volts
        assert 5.0 < np.median(eeg_uv.std(axis=1)) < 150.0, record["site"]
        assert {canonical_name(c) for c in raw.ch_names[:n_eeg]} == set(record["recorded_channels"])

        freqs, psd = signal.welch(eeg_uv, fs=site.sfreq, nperseg=int(4 * site.sfreq))
        mains = (freqs > 45) & (freqs < 65)
        peak = freqs[mains][np.argmax(np.median(psd[:, mains], axis=0))]
        assert abs(peak - site.line_freq) < 0.5, (record["site"], peak)

        reader = pyedflib.EdfReader(str(path))
        try:
            assert reader.getSignalLabels() == labels
            assert set(reader.getSampleFrequencies()) == {site.sfreq}
            assert reader.getPhysicalDimension(0) == site.physical_dimension
            assert reader.getDigitalMaximum(0) == site.digital_max
            assert reader.getFileDuration() == record["duration_s"]
            scale = {"uV": 1e-6, "mV": 1e-3}[site.physical_dimension]
            np.testing.assert_allclose(reader.readSignal(0) * scale, raw.get_data(picks=[0])[0], rtol=1e-6, atol=1e-12)
        finally:
            reader.close()


def test_units_and_quantization_differ_between_sites(corpus, truth):
    steps = {}
    for record in truth:
        reader = pyedflib.EdfReader(str(corpus / "edf" / record["edf_path"]))
        try:
            step = (reader.getPhysicalMaximum(0) - reader.getPhysicalMinimum(0)) / (
                reader.getDigitalMaximum(0) - reader.getDigitalMinimum(0)
            )
            steps[record["site"]] = step * (1000.0 if reader.getPhysicalDimension(0) == "mV" else 1.0)
            assert reader.getPhysicalDimension(0) == record["physical_dimension"]
        finally:
            reader.close()
    assert len({round(s, 4) for s in steps.values()}) == len(steps)  # microvolts per bit differ


def test_hms_parquet_is_the_same_recording_as_the_edf(corpus, truth):
    for record in truth:
        site = SITES[record["site"]]
        raw = mne.io.read_raw_edf(corpus / "edf" / record["edf_path"], preload=True, verbose="error")
        channel = record["recorded_channels"][2]
        edf = raw.get_data(picks=[site.eeg_label(channel)])[0] * 1e6
        edf_200 = signal.resample_poly(edf, HMS_SFREQ, site.sfreq)
        hms = _hms_eeg(corpus, record)[CANONICAL_CHANNELS.index(channel)]
        interior = slice(HMS_SFREQ, len(hms) - HMS_SFREQ)
        assert np.corrcoef(edf_200[interior], hms[interior])[0, 1] > 0.999


# ---------------------------------------------------------------------------------------------
# Patterns in the rendered files (HMS parquet: canonical channels at 200 Hz), located by truth
# ---------------------------------------------------------------------------------------------


def test_rhythmic_delta_is_lateralized_for_lrda_and_symmetric_for_grda(corpus, truth):
    for record, episode in _episodes(truth, "LRDA"):
        x = _inside(_hms_eeg(corpus, record), episode)
        assert lateralization(x, HMS_SFREQ, 0.5, 3.0, episode["hemisphere"]) > 1.3, record["site"]
    for record, episode in _episodes(truth, "GRDA"):
        x = _inside(_hms_eeg(corpus, record), episode)
        assert 0.7 < lateralization(x, HMS_SFREQ, 0.5, 3.0, "left") < 1.4, record["site"]


def test_periodic_discharges_are_periodic_lpd_lateralized_gpd_bilateral(corpus, truth):
    for cls in ("LPD", "GPD"):
        for record, episode in _episodes(truth, cls):
            x = _inside(_hms_eeg(corpus, record), episode)
            at_period, at_half = envelope_periodicity(x, HMS_SFREQ, 1.0 / episode["params"]["rate_hz"])
            assert at_period > 0.2 and at_period > at_half + 0.15, (record["site"], cls, at_period)
            # 1-12 Hz holds the discharges' energy and little of the muscle artifact.
            if cls == "LPD":
                assert lateralization(x, HMS_SFREQ, 1.0, 12.0, episode["hemisphere"]) > 1.1
            else:
                assert 0.75 < lateralization(x, HMS_SFREQ, 1.0, 12.0, "left") < 1.33


def test_seizures_evolve_and_start_at_their_focus(corpus, truth):
    pos = canonical_positions()
    for record, episode in _episodes(truth, "Seizure"):
        x = _hms_eeg(corpus, record)
        focus = CANONICAL_CHANNELS.index(episode["focus"])
        start, end = int(episode["start_s"] * HMS_SFREQ), int(episode["end_s"] * HMS_SFREQ)
        third = (end - start) // 3
        early = x[:, start + 2 * HMS_SFREQ : start + (end - start) // 4]
        late = x[:, end - third : end - 2 * HMS_SFREQ]
        f_early = dominant_frequency(early[focus], HMS_SFREQ)
        f_late = dominant_frequency(late[focus], HMS_SFREQ)
        assert abs(f_early - f_late) >= 1.0, (record["site"], f_early, f_late)
        # Amplitude as global field power: a spreading seizure can look flat at the focus
        # under an average reference, never in the GFP.
        assert gfp_rms(late, HMS_SFREQ) > 1.3 * gfp_rms(early, HMS_SFREQ), record["site"]

        segment = x[:, start - 5 * HMS_SFREQ : end]
        onsets = onset_times(
            segment, HMS_SFREQ, baseline=slice(HMS_SFREQ // 2, int(4.5 * HMS_SFREQ)), after=5 * HMS_SFREQ
        )
        dist = np.linalg.norm(pos - pos[focus], axis=1)
        far = (dist > 0.6) & ~np.isnan(x[:, start])
        assert onsets[focus] < 5.0
        assert np.nanmedian(onsets[far]) > onsets[focus] + 2.0, (record["site"], onsets)


# ---------------------------------------------------------------------------------------------
# Labels and votes
# ---------------------------------------------------------------------------------------------


def test_train_csv_votes_and_consensus(corpus, truth):
    rows = _rows(corpus / "hms" / "train.csv")
    generating = {w["label_id"]: w["class"] for r in truth for w in r["windows"]}
    assert len(rows) == len(generating)
    agree = []
    for row in rows:
        votes = np.array([int(row[c]) for c in VOTE_COLUMNS])
        assert 1 <= votes.sum() <= 20
        assert row["expert_consensus"] == CLASSES[int(np.argmax(votes))]
        agree.append(row["expert_consensus"] == generating[int(row["label_id"])])
    assert np.mean(agree) > 0.5


# ---------------------------------------------------------------------------------------------
# Planted identifiers
# ---------------------------------------------------------------------------------------------


def test_identifiers_are_in_edf_headers_and_nowhere_else(corpus):
    planted = json.loads((corpus / "identifiers.json").read_text())["recordings"]
    assert len(planted) == 4
    others = [
        corpus / "corpus.json",
        corpus / "truth.jsonl",
        corpus / "edf" / "labels.csv",
        corpus / "hms" / "train.csv",
        *(corpus / "hms").rglob("*.parquet"),
    ]
    other_bytes = [p.read_bytes() for p in others]
    paths = "\n".join(str(p.relative_to(corpus)) for p in corpus.rglob("*"))
    for record in planted:
        edf = (corpus / "edf" / record["edf_path"]).read_bytes()
        assert record["patient_field"].encode() in edf[:256]
        assert record["recording_field"].encode() in edf[:256]
        assert record["search_strings"] and record["patient"]["last_name"] in record["search_strings"]
        for needle in record["search_strings"]:
            assert needle.encode() in edf, needle
            assert needle not in paths
            for path, content in zip(others, other_bytes):
                assert needle.encode() not in content, (needle, path.name)
        for note in record["annotations"]:
            assert note.encode() in edf


# ---------------------------------------------------------------------------------------------
# HMS layout
# ---------------------------------------------------------------------------------------------


def test_hms_tables_match_kaggle(corpus, truth):
    rows = _rows(corpus / "hms" / "train.csv")
    assert list(rows[0]) == HMS_TRAIN_COLUMNS + ["site"]
    assert list(_rows(corpus / "edf" / "labels.csv")[0]) == HMS_TRAIN_COLUMNS + ["site", "path"]

    real_eeg, real_spec = pq.read_schema(REAL_EEG), pq.read_schema(REAL_SPECTROGRAM)
    by_id = {r["eeg_id"]: r for r in truth}
    for record in truth:
        eeg_schema = pq.read_schema(corpus / "hms" / record["hms_eeg_path"])
        spec_schema = pq.read_schema(corpus / "hms" / record["hms_spectrogram_path"])
        assert eeg_schema.remove_metadata().equals(real_eeg.remove_metadata())
        assert spec_schema.remove_metadata().equals(real_spec.remove_metadata())
        eeg = pq.read_table(corpus / "hms" / record["hms_eeg_path"]).to_pandas()
        assert len(eeg) == record["duration_s"] * HMS_SFREQ
        for channel in CANONICAL_CHANNELS:
            assert eeg[channel].isna().all() == (channel in record["missing_channels"])
        assert eeg["EKG"].isna().all() == ("ecg" not in record["aux_channels"])

    for row in rows:
        record = by_id[int(row["eeg_id"])]
        offset = float(row["eeg_label_offset_seconds"])
        assert 0 <= offset and (offset + 50) * HMS_SFREQ <= record["duration_s"] * HMS_SFREQ
        spectrogram = pq.read_table(corpus / "hms" / record["hms_spectrogram_path"]).to_pandas()
        spec_offset = float(row["spectrogram_label_offset_seconds"])
        times = spectrogram["time"].to_numpy()
        inside = times[(times >= spec_offset) & (times <= spec_offset + 600)]
        assert len(inside) == min(300, record["duration_s"] // 2)
        assert row["site"] == record["site"] and int(row["patient_id"]) == record["patient_id"]


def test_edf_labels_point_at_existing_files(corpus):
    for row in _rows(corpus / "edf" / "labels.csv"):
        assert (corpus / "edf" / row["path"]).is_file()


# ---------------------------------------------------------------------------------------------
# Determinism and atomicity
# ---------------------------------------------------------------------------------------------


def _digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_same_seed_gives_identical_bytes_whatever_the_chunk_size(corpus, tmp_path):
    again = tmp_path / "again"
    generate_corpus(SMALL.replace(chunk_seconds=23), again)
    assert _digest(again) == _digest(corpus)


def test_different_seed_gives_a_different_corpus(tmp_path):
    tiny = CorpusConfig(sites=1, subjects_per_site=1, recordings_per_subject=1, minutes=1, format="edf")
    generate_corpus(tiny, tmp_path / "a")
    generate_corpus(tiny.replace(seed=1), tmp_path / "b")
    a, b = _digest(tmp_path / "a"), _digest(tmp_path / "b")
    assert set(a.values()).isdisjoint(b.values())


def test_a_failure_leaves_nothing_at_the_output(tmp_path, monkeypatch):
    def fail(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(corpus_module, "write_metadata", fail)
    tiny = CorpusConfig(sites=1, subjects_per_site=1, recordings_per_subject=1, minutes=1)
    with pytest.raises(RuntimeError, match="disk full"):
        generate_corpus(tiny, tmp_path / "out")
    assert list(tmp_path.iterdir()) == []
