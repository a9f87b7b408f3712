"""Bipolar montages in the simulator's EDF files (simulate.montages), read back by the pipeline."""

import dataclasses
import json

import numpy as np
import pytest
from scipy import signal

from eegfm.contract.channels import CANONICAL_CHANNELS, canonical_of, derivation, standard_name
from eegfm.core.config import ConfigError
from eegfm.pipelines.datasets import SourceItem
from eegfm.pipelines.job.process import process_recording
from eegfm.pipelines.job.process_io import PreprocessConfig, Window
from eegfm.pipelines.readers import open_recording
from eegfm.pipelines.signal.bipolar import BipolarReader, bipolar_plan
from eegfm.simulate.corpus import CorpusConfig, generate_corpus
from eegfm.simulate.montages import CHBMIT23, DOUBLE_BANANA, site_montage
from eegfm.simulate.patterns import LEFT_FOCI, RIGHT_FOCI, draw_episode, render_episodes
from eegfm.simulate.sites import SiteProfile, default_sites
from tests.simulate.measures import band_power

MIDLINE = ("Fz", "Cz", "Pz")
# An epilepsy unit recording only seizures, CHB-MIT's rate; the montage is set per corpus.
SEIZURES = SiteProfile(name="emu", channel_style="tuh", sfreq=256, class_prevalence={"Seizure": 1.0})


def _corpus(root, montage):
    config = CorpusConfig(
        sites=1, subjects_per_site=1, recordings_per_subject=1, minutes=2, format="edf", montage=montage
    )
    generate_corpus(dataclasses.replace(config, site_profiles=(SEIZURES,)), root)
    record = json.loads((root / "truth.jsonl").read_text().splitlines()[0])
    return root / "edf" / record["edf_path"], record


@pytest.fixture(scope="module")
def twins(tmp_path_factory):
    """The same planned recording written in CHB-MIT's montage and referentially."""
    root = tmp_path_factory.mktemp("montages")
    return _corpus(root / "chbmit23", "chbmit23"), _corpus(root / "referential", "referential")


def test_the_montages_are_the_double_banana_and_chb_mits_23():
    site = default_sites(1)[0]
    assert site_montage(site).labels == tuple(site.eeg_label(c) for c in site.recorded_channels())
    banana = site_montage(dataclasses.replace(site, montage="double_banana"))
    assert banana.labels == DOUBLE_BANANA and len(banana.labels) == 18
    chb = site_montage(dataclasses.replace(site, montage="chbmit23"))
    assert chb.labels == CHBMIT23 and len(chb.labels) == 23 and chb.labels.count("T8-P8") == 2
    # Every derivation is a difference of two potentials in one reference: it cancels.
    for montage in (banana, chb):
        np.testing.assert_allclose(montage.matrix.sum(axis=1), 0.0, atol=1e-12)
    row = dict(zip(CANONICAL_CHANNELS, chb.matrix[chb.labels.index("T7-FT9")]))  # T3 - (F7 + T3) / 2
    assert row["T3"] == 0.5 and row["F7"] == -0.5 and sum(abs(v) for v in row.values()) == 1.0
    assert chb.pairs[chb.labels.index("FT9-FT10")] == ("FT9", "FT10")
    # Without F7, neither F7's derivations nor FT9's (interpolated from it) can be written.
    partial = site_montage(dataclasses.replace(site, montage="chbmit23", missing_channels=("F7",)))
    assert set(CHBMIT23) - set(partial.labels) == {"FP1-F7", "F7-T7", "T7-FT9", "FT9-FT10"}
    with pytest.raises(ConfigError, match="montage: expected one of 'referential', 'double_banana', 'chbmit23'; got"):
        dataclasses.replace(site, montage="banana")


def test_a_chbmit23_recording_is_the_referential_one_after_the_pipelines_reconstruction(twins):
    (bipolar_path, record), (referential_path, _) = twins
    assert record["montage"] == "chbmit23" and [d[0] for d in record["derivations"]] == list(CHBMIT23)
    assert record["channel_labels"] == {} and record["recorded_channels"] == list(SEIZURES.recorded_channels())
    with open_recording(bipolar_path) as bipolar, open_recording(referential_path) as referential:
        plan = bipolar_plan(bipolar.info.ch_names)
        assert plan.left_out == ("FZ-CZ", "CZ-PZ") and len(plan.derivations) == 21  # the midline: its own chain
        rebuilt = BipolarReader(bipolar, plan).read()
        measured = referential.read()
        names = [canonical_of(standard_name(n) or "") for n in referential.info.ch_names]
    electrodes = [canonical_of(e) for e in plan.electrodes]
    common = [c for c in CANONICAL_CHANNELS if c in electrodes and c not in MIDLINE]
    assert len(common) == 16
    ours = np.stack([rebuilt[electrodes.index(c)] for c in common])
    truth = np.stack([measured[names.index(c)] for c in common])
    ours, truth = ours - ours.mean(axis=0), truth - truth.mean(axis=0)  # up to the reference
    assert min(np.corrcoef(a, b)[0, 1] for a, b in zip(ours, truth)) > 0.9999
    assert np.abs(ours - truth).max() < 1.0  # µV: 16-bit steps of 0.1 µV, a few summed

    # Through the whole per-recording path, average-referenced, the windows agree on the 16
    # electrodes; Fz, Cz and Pz of the bipolar file are interpolated.
    config = PreprocessConfig(reference="average", spectrogram=False)
    *bipolar_events, outcome = process_recording(SourceItem(str(bipolar_path), "edf", "sim"), b"k" * 32, config, "h")
    *referential_events, _ = process_recording(SourceItem(str(referential_path), "edf", "sim"), b"k" * 32, config, "h")
    assert outcome.status == "processed" and outcome.interpolated == MIDLINE
    by_start = {w.record.window_start_index: w.record for w in referential_events if isinstance(w, Window)}
    rows = [CANONICAL_CHANNELS.index(c) for c in common]
    windows = [w.record for w in bipolar_events if isinstance(w, Window)]
    assert len(windows) >= 10
    for window in windows:
        other = by_start[window.window_start_index]
        r = [np.corrcoef(window.eeg[i], other.eeg[i])[0, 1] for i in rows]
        assert min(r) > 0.99, np.round(r, 4)


def _into_and_out_of(focus, labels):
    """The longitudinal chain's derivations ending at and starting from ``focus``."""
    pairs = {label: tuple(canonical_of(e) for e in derivation(label)) for label in labels[:16]}
    into = next(label for label, (_, b) in pairs.items() if b == focus)
    out = next(label for label, (a, _) in pairs.items() if a == focus)
    return into, out


def _reversal(x_into, x_out, sfreq):
    """Correlation of the two derivations' 2-14 Hz signals."""
    band = signal.butter(3, [2.0, 14.0], btype="bandpass", fs=sfreq, output="sos")
    a, b = signal.sosfiltfilt(band, x_into), signal.sosfiltfilt(band, x_out)
    return float(np.corrcoef(a, b)[0, 1])


def test_a_seizure_focus_shows_a_phase_reversal_in_the_bipolar_file(twins):
    (bipolar_path, record), _ = twins
    seizures = [e for e in record["episodes"] if e["class"] == "Seizure"]
    assert seizures
    with open_recording(bipolar_path) as edf:  # the reader numbers the second T8-P8: T8-P8-0, T8-P8-1
        names, data, sfreq = list(edf.info.ch_names), edf.read(), edf.info.sfreq
    for episode in seizures:
        into, out = _into_and_out_of(episode["focus"], CHBMIT23)
        span = slice(int((episode["start_s"] + 2) * sfreq), int((episode["start_s"] + 30) * sfreq))
        # into the focus (A - focus) and out of it (focus - B): the same rhythm, opposite signs
        assert _reversal(data[names.index(into)][span], data[names.index(out)][span], sfreq) < -0.5, episode["focus"]
        before = slice(0, int(max(episode["start_s"] - 1, 1) * sfreq))
        assert band_power(data[names.index(into)][span], sfreq, 2, 14) > 2 * band_power(
            data[names.index(into)][before], sfreq, 2, 14
        )


@pytest.mark.parametrize("focus", LEFT_FOCI + RIGHT_FOCI)
def test_every_seizure_focus_reverses_phase_in_both_bipolar_montages(focus):
    sfreq = 200.0
    t = np.arange(int(40 * sfreq)) / sfreq
    episode = dataclasses.replace(draw_episode(np.random.default_rng(3), "Seizure", 2.0, 40.0, 0.5), focus=focus)
    scalp = render_episodes([episode], t) + 5.0 * np.random.default_rng(4).standard_normal((19, len(t)))
    for montage in ("double_banana", "chbmit23"):
        bipolar = site_montage(dataclasses.replace(SEIZURES, montage=montage))
        x = bipolar.apply(scalp)
        into, out = _into_and_out_of(focus, bipolar.labels)
        span = slice(int(4 * sfreq), int(30 * sfreq))
        row = {label: x[i][span] for i, label in enumerate(bipolar.labels)}
        assert _reversal(row[into], row[out], sfreq) < -0.5
        # one electrode further down the chain the field still falls: no reversal there
        further = canonical_of(derivation(out)[1])
        beyond = [label for label in bipolar.labels[:16] if canonical_of(derivation(label)[0]) == further]
        if beyond:
            assert _reversal(row[out], row[beyond[0]], sfreq) > 0.5
