"""The quality report: its pinned names, its vector, the learned score and the shared spectrum."""

from __future__ import annotations

import numpy as np
import pytest

from eegfm.pipelines.quality import QUALITY_NAMES, QualityConfig, QualityReport, compute_quality, validate_window
from eegfm.pipelines.signal.features import WindowSpectrum, window_spectrum
from tests.pipelines.quality.conftest import SFREQ


def test_quality_names_are_the_pinned_contract():
    # The manifest records these names and the TFRecord `quality` vector follows this order:
    # changing them is a data-contract change; names are only ever appended, so a reader of an
    # earlier manifest's positions still finds its metrics where they were.
    assert QUALITY_NAMES == (
        "nonfinite_fraction",
        "snr_db",
        "flat_fraction",
        "clip_fraction",
        "ptp_uv",
        "ptp_uv_median",
        "muscle_ratio",
        "line_noise_db",
        "pop_channels",
        "bad_channel_fraction",
        "channel_quality",
        "artifact_ratio",
        "rule_score",
        "artifact_ptp_uv",
        "rhythmic_ptp_uv",
    )


def test_vector_follows_names(window):
    report = compute_quality(window)
    vector = report.vector()
    assert vector.dtype == np.float32 and vector.shape == (len(QUALITY_NAMES),)
    for i, name in enumerate(QUALITY_NAMES):
        assert vector[i] == np.float32(getattr(report, name))
    assert list(report.as_dict()) == list(QUALITY_NAMES)


def test_learned_score_combines_by_maximum(window):
    report = compute_quality(window)
    combined = report.with_ae_score(0.93)
    assert combined.artifact_score == 0.93 and combined.ae_score == 0.93
    assert report.with_ae_score(0.0).artifact_score == report.rule_score
    keep, reasons = validate_window(combined, QualityConfig(max_artifact_score=0.9))
    assert not keep and reasons == ["artifact_score: artifact_score=0.93 > max_artifact_score=0.9"]
    with pytest.raises(ValueError, match=r"ae_score: expected a value in \[0, 1\]; got 1.5"):
        report.with_ae_score(1.5)


def test_report_is_a_frozen_dataclass(window):
    report = compute_quality(window)
    assert isinstance(report, QualityReport)
    with pytest.raises(AttributeError):
        report.rule_score = 0.0  # type: ignore[misc]


def test_the_spectrum_is_shared_and_can_be_passed_in(window):
    w32 = window.astype(np.float32)
    report = compute_quality(w32)
    assert isinstance(report.spectrum, WindowSpectrum) and report.spectrum.psd.dtype == np.float32
    spectrum = window_spectrum(w32, SFREQ)
    np.testing.assert_array_equal(report.spectrum.psd, spectrum.psd)
    np.testing.assert_array_equal(report.spectrum.freqs, spectrum.freqs)
    again = compute_quality(w32, spectrum=spectrum)
    assert np.shares_memory(again.spectrum.psd, spectrum.psd)  # used, not recomputed
    np.testing.assert_array_equal(again.vector(), report.vector())
    assert report.with_ae_score(0.2).spectrum is report.spectrum
    with pytest.raises(ValueError, match=r"spectrum: expected the spectrum of this window"):
        compute_quality(w32[:, :1000], spectrum=spectrum)
    with pytest.raises(TypeError, match="spectrum: expected a pipelines.signal.features.WindowSpectrum"):
        compute_quality(w32, spectrum=(spectrum.freqs, spectrum.psd))
