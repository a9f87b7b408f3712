"""The autoencoder artifact detector: separation on real EEG, calibration, determinism, save/load."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.signal import butter, sosfiltfilt, welch

from eegfm.contract.channels import CANONICAL_CHANNELS
from eegfm.contract.schema import SFREQ
from eegfm.core.dsp.resample import resample
from eegfm.pipelines.quality import compute_quality
from eegfm.pipelines.quality.artifact_autoencoder import (
    AE_BANDS,
    ArtifactAutoencoder,
    band_features,
    band_features_from_psd,
)
from eegfm.pipelines.signal.features import welch_psd
from eegfm.pipelines.signal.filters import filter_data

N_TIMES = 1280
FIT_SUBJECTS = range(0, 8)  # eegmat training split (00-27); both files of each subject
TEST_SUBJECTS = range(24, 28)  # other training-split subjects, never seen by the fit
EPOCHS = 60


def _windows(shared_data, subjects, files=("1", "2")) -> tuple[np.ndarray, np.ndarray]:
    mne = pytest.importorskip("mne")
    windows, groups = [], []
    for subject in subjects:
        for part in files:
            path = shared_data / "eegmat" / f"Subject{subject:02d}_{part}.edf"
            raw = mne.io.read_raw_edf(path, preload=True, verbose="error")
            x = raw.get_data(picks=[f"EEG {name}" for name in CANONICAL_CHANNELS]) * 1e6
            y, _ = filter_data(resample(x, raw.info["sfreq"], SFREQ), SFREQ)
            n = y.shape[1] // N_TIMES
            windows.append(y[:, : n * N_TIMES].reshape(19, n, N_TIMES).transpose(1, 0, 2))
            groups += [subject] * n
    return np.concatenate(windows), np.array(groups)


@pytest.fixture(scope="module")
def data(shared_data):
    fit_windows, groups = _windows(shared_data, FIT_SUBJECTS)
    test_windows, _ = _windows(shared_data, TEST_SUBJECTS, files=("1",))
    model = ArtifactAutoencoder(epochs=EPOCHS, seed=0).fit(fit_windows, groups=groups)
    return model, fit_windows, test_windows


def _inject(windows: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    out = windows.astype(np.float64).copy()
    t = np.arange(N_TIMES) / SFREQ
    emg_sos = butter(4, [20, 70], "bandpass", fs=SFREQ, output="sos")
    for w in out:
        channels = rng.choice(19, 3, replace=False)
        if kind == "muscle":  # a 2 s EMG burst on three channels, 30 uV RMS
            burst = sosfiltfilt(emg_sos, rng.standard_normal((3, N_TIMES)), axis=1)
            burst *= 30 / burst.std(axis=1, keepdims=True)
            w[channels, 400:912] += burst[:, 400:912]
        elif kind == "pop":  # 300 uV step with 0.5 s decay on one channel
            t0 = int(rng.integers(300, 900))
            w[channels[0], t0:] += 300 * np.exp(-(t[t0:] - t[t0]) / 0.5)
        elif kind == "flat":  # three dead channels
            w[channels] = 0.0
        elif kind == "drift":  # slow 150 uV sway across the head
            w += 150 * np.sin(2 * np.pi * 0.3 * t + rng.uniform(0, 2 * np.pi)) * rng.uniform(0.5, 1, (19, 1))
        else:
            raise ValueError(kind)
    return out


def test_clean_held_out_subjects_score_low(data):
    model, _, test_windows = data
    clean = model.score(test_windows)
    assert clean.shape == (len(test_windows),)
    assert np.all((clean >= 0) & (clean <= 1))
    assert np.median(clean) < 0.15
    assert np.percentile(clean, 90) < 0.4


@pytest.mark.parametrize("kind", ["muscle", "pop", "flat", "drift"])
def test_injected_artifacts_score_clearly_higher(data, kind):
    model, _, test_windows = data
    rng = np.random.default_rng(["muscle", "pop", "flat", "drift"].index(kind))
    clean = model.score(test_windows)
    dirty = model.score(_inject(test_windows, kind, rng))
    auc = (dirty[:, None] > clean[None, :]).mean()
    print(
        f"{kind}: clean median {np.median(clean):.3f} p95 {np.percentile(clean, 95):.3f}; "
        f"artifact median {np.median(dirty):.3f} p5 {np.percentile(dirty, 5):.3f}; AUC {auc:.4f}"
    )
    assert auc > 0.95
    assert np.median(dirty) > np.percentile(clean, 95)
    # Every window got worse, not just most: same window, artifact added.
    assert np.mean(dirty > clean) > 0.95


def test_save_load_round_trip_is_exact(data, tmp_path):
    model, _, test_windows = data
    path = model.save(tmp_path / "artifact_ae.npz")
    with np.load(path, allow_pickle=False) as stored:  # plain arrays and a JSON header only
        header = json.loads(str(stored["header"]))
        assert stored["weight_0"].shape == (19 * len(AE_BANDS), 64)
    assert header["format"] == "eegfm-artifact-ae" and header["n_chans"] == 19
    loaded = ArtifactAutoencoder.load(path)
    np.testing.assert_array_equal(loaded.score(test_windows[:20]), model.score(test_windows[:20]))
    for a, b in zip(loaded.weights + loaded.biases, model.weights + model.biases):
        np.testing.assert_array_equal(a, b)
    assert (loaded.error_center, loaded.error_scale) == (model.error_center, model.error_scale)


def test_load_refuses_other_files(tmp_path):
    path = tmp_path / "other.npz"
    np.savez(path, weights=np.zeros(3))
    with pytest.raises(ValueError, match="not an eegfm-artifact-ae file"):
        ArtifactAutoencoder.load(path)
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip archive")  # numpy's message would suggest allow_pickle
    with pytest.raises(ValueError, match=r"garbage.npz: not an .npz archive \(expected the eegfm-artifact-ae file"):
        ArtifactAutoencoder.load(garbage)


def test_fit_is_deterministic_under_a_seed(data):
    _, fit_windows, _ = data
    features = band_features(fit_windows[:120])
    a = ArtifactAutoencoder(epochs=5, seed=3).fit_features(features)
    b = ArtifactAutoencoder(epochs=5, seed=3).fit_features(features)
    c = ArtifactAutoencoder(epochs=5, seed=4).fit_features(features)
    np.testing.assert_array_equal(a.weights[0], b.weights[0])
    np.testing.assert_array_equal(a.score_features(features), b.score_features(features))
    assert not np.array_equal(a.weights[0], c.weights[0])


def test_the_fewest_windows_a_fit_takes_is_what_fit_accepts(data):
    _, fit_windows, _ = data
    features = band_features(fit_windows[:60])
    for fraction in (0.2, 0.35):
        least = ArtifactAutoencoder(calibration_fraction=fraction, epochs=1).min_fit_windows
        ArtifactAutoencoder(calibration_fraction=fraction, epochs=1).fit_features(features[:least])
        with pytest.raises(ValueError, match=f"windows: expected enough windows .*; got {least - 1}"):
            ArtifactAutoencoder(calibration_fraction=fraction, epochs=1).fit_features(features[: least - 1])
    assert ArtifactAutoencoder().min_fit_windows == 48  # 38 to train on, 10 to calibrate


def test_errors_are_clear(data):
    model, fit_windows, _ = data
    with pytest.raises(RuntimeError, match="not fitted"):
        ArtifactAutoencoder().score(fit_windows[:2])
    with pytest.raises(ValueError, match="windows: expected 19 channels"):
        model.score(fit_windows[:2, :18])
    with pytest.raises(ValueError, match="windows: expected enough windows"):
        ArtifactAutoencoder().fit(fit_windows[:10])
    with pytest.raises(ValueError, match="groups: expected at least 2 distinct groups"):
        ArtifactAutoencoder().fit_features(band_features(fit_windows[:60]), groups=[0] * 60)
    with pytest.raises(ValueError, match=r"hidden: expected two positive layer sizes"):
        ArtifactAutoencoder(hidden=(64,))


def test_band_features_floor_dead_channels():
    x = np.zeros((2, 19, N_TIMES))
    x[1, 0] = np.nan  # non-finite samples read as zero, never NaN features
    features = band_features(x)
    assert features.shape == (2, 19 * len(AE_BANDS))
    np.testing.assert_allclose(features, -3.0)


def _reference_band_features(windows: np.ndarray) -> np.ndarray:
    """The definition: scipy's Welch per window, band power = PSD sum x bin width, log10 + floor."""
    rows = []
    for window in windows:
        freqs, psd = welch(np.where(np.isfinite(window), window, 0.0).astype(np.float64), SFREQ, nperseg=512)
        powers = [psd[:, (freqs >= lo) & (freqs < hi)].sum(axis=1) * (freqs[1] - freqs[0]) for lo, hi in AE_BANDS]
        rows.append(np.log10(np.stack(powers, axis=1) + 1e-3).reshape(-1))
    return np.array(rows)


def test_band_features_equal_the_reference_computation():
    rng = np.random.default_rng(6)
    windows = (30 * rng.standard_normal((19, 19, N_TIMES))).cumsum(axis=2) / 10
    windows = windows.astype(np.float32)  # as preprocess.py passes them
    windows[4, 3, :50] = np.nan
    np.testing.assert_allclose(band_features(windows), _reference_band_features(windows), rtol=1e-12, atol=1e-12)


def test_band_features_from_a_shared_psd():
    rng = np.random.default_rng(7)
    windows = ((20 * rng.standard_normal((3, 19, N_TIMES))).cumsum(axis=2) / 8).astype(np.float32)
    expected = band_features(windows)
    # The same float64 PSD gives the same row.
    freqs, psd = welch_psd(windows[0], SFREQ)
    np.testing.assert_allclose(band_features_from_psd(freqs, psd), expected[0], rtol=1e-12)
    # The float32 PSD that compute_quality attaches to its report: equal within float32 rounding.
    reports = [compute_quality(w, SFREQ) for w in windows]
    shared = np.stack([band_features_from_psd(r.spectrum.freqs, r.spectrum.psd) for r in reports])
    np.testing.assert_allclose(shared, expected, atol=1e-5)
    # A batch of PSDs gives one row per window.
    batch = np.stack([r.spectrum.psd for r in reports])
    np.testing.assert_array_equal(band_features_from_psd(reports[0].spectrum.freqs, batch), shared)
    with pytest.raises(ValueError, match=r"psd: expected shape \(n_chans, n_freqs\)"):
        band_features_from_psd(freqs, psd[:, :-1])


def _pipeline_windows(path) -> np.ndarray:
    from eegfm.pipelines.datasets import discover
    from eegfm.pipelines.job.process import PreprocessConfig, Window, process_recording

    config = PreprocessConfig()
    items = discover([str(path)], dataset="edf")[0]  # 10 s windows sliding over the whole recording
    events = process_recording(items[0], b"k" * 32, config, config.config_hash())
    return np.stack([e.record.eeg.astype(np.float64)[:, :N_TIMES] for e in events if isinstance(e, Window)])


def test_another_corpus_reads_clean_against_its_own_recording_and_its_artifacts_still_show(data, shared_data):
    """Fitted on eegmat, the detector finds every window of another amplifier's recording (eegmmi,
    eyes open, 160 Hz, five times eegmat's amplitude) unlike its fitting corpus; scored against the
    recording itself, its clean windows read clean and the windows given artifacts (as large against
    its background as the eegmat tests' against eegmat's) stand out."""
    model = data[0]
    windows = _pipeline_windows(shared_data / "eegmmi" / "S001R03.edf")
    assert windows.shape[1:] == (19, N_TIMES)
    features = band_features(windows)
    assert np.mean(model.score_features(features) >= 0.5) >= 0.9 and model.novelty(features) > model.z_center
    assert np.mean(model.score_recording(features) >= 0.5) <= 0.1
    for kind in ("muscle", "flat"):
        dirty = 5.0 * _inject(windows[:3] / 5.0, kind, np.random.default_rng(0))
        scores = model.score_recording(np.concatenate([band_features(dirty), features[3:]]))
        assert (scores[:3] >= 0.5).all(), kind
        assert np.mean(scores[3:] >= 0.5) <= 0.1


def test_in_its_fitting_domain_a_recording_scores_as_against_the_corpus(data):
    model, _, test_windows = data
    features = band_features(test_windows[:30])
    assert np.mean(model.score_recording(features) >= 0.5) <= 0.05
    dirty = _inject(test_windows[:3], "muscle", np.random.default_rng(1))
    with_dirty = np.concatenate([band_features(dirty), features[3:]])
    assert (model.score_recording(with_dirty)[:3] >= 0.5).all() and (model.score_features(with_dirty)[:3] >= 0.5).all()
    # Too few windows for a typical one: in domain, scored against the corpus ...
    pair = np.concatenate([band_features(dirty[:1]), features[:1]])
    np.testing.assert_array_equal(model.score_recording(pair), model.score_features(pair))


def test_too_short_a_recording_out_of_domain_is_left_to_the_rules(data, shared_data):
    windows = _pipeline_windows(shared_data / "eegmmi" / "S001R03.edf")[:2]
    dirty = 5.0 * _inject(windows[:1] / 5.0, "muscle", np.random.default_rng(0))
    pair = band_features(np.concatenate([dirty, windows[1:]]))
    assert (data[0].score_features(pair) >= 0.5).all()  # against the corpus: both "artifacts"
    np.testing.assert_array_equal(data[0].score_recording(pair), np.zeros(2))
