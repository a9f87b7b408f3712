"""Resampling to 256 Hz: exact ratios, anti-aliasing, timing, and streaming == one-shot."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from eegfm.contract.schema import SFREQ
from eegfm.core.dsp.resample import (
    Resampler,
    _fir_taps,
    plan_resample,
    resample,
)

RATES = (160.0, 200.0, 250.0, 256.0, 500.0, 512.0, 5000.0, 173.61)


def _read_eegmat(path) -> tuple[np.ndarray, float]:
    mne = pytest.importorskip("mne")
    raw = mne.io.read_raw_edf(path, preload=True, verbose="error")
    picks = [name for name in raw.ch_names if name.startswith("EEG ") and "A2-A1" not in name]
    assert len(picks) == 19
    return raw.get_data(picks=picks) * 1e6, raw.info["sfreq"]


@pytest.mark.parametrize(
    ("sfreq", "up", "down"),
    [(160, 8, 5), (200, 32, 25), (250, 128, 125), (256, 1, 1), (500, 64, 125), (512, 1, 2), (5000, 32, 625)],
)
def test_exact_ratios(sfreq, up, down):
    plan = plan_resample(sfreq, SFREQ)
    assert (plan.up, plan.down, plan.ratio_error) == (up, down, 0.0)


def test_float_rate_of_a_simple_fraction():
    # 1000/3 Hz is not a binary float; the nearest fraction is found and the tiny error reported.
    plan = plan_resample(1000 / 3, SFREQ)
    assert (plan.up, plan.down) == (96, 125)
    assert 0 < abs(plan.ratio_error) < 1e-15


def test_non_integer_rate_ratio_and_documented_error():
    plan = plan_resample(173.61, SFREQ)
    assert (plan.up, plan.down) == (3682, 2497)
    true_ratio = Fraction(256) / Fraction(173.61)
    assert plan.ratio_error == pytest.approx(float(Fraction(plan.up, plan.down) / true_ratio) - 1)
    # Under one output sample of drift per hour of recording.
    assert abs(plan.ratio_error) * 3600.0 < 1.0 / 256.0
    # A tighter bound picks a longer fraction; a looser one a shorter.
    assert plan_resample(173.61, SFREQ, max_ratio_error=1e-9).down > plan.down
    assert plan_resample(173.61, SFREQ, max_ratio_error=1e-3).down < plan.down


@pytest.mark.parametrize("sfreq", RATES)
def test_sine_recovered_at_exact_times(sfreq):
    n_times = int(8 * sfreq)
    t = np.arange(n_times) / sfreq
    x = np.stack([50 * np.sin(2 * np.pi * 10 * t), 20 * np.cos(2 * np.pi * 40 * t + 0.3)])
    y = resample(x, sfreq, SFREQ)
    plan = plan_resample(sfreq, SFREQ)
    assert y.dtype == np.float32
    assert y.shape == (2, plan.output_length(n_times))
    assert y.shape[1] == -(-n_times * plan.up // plan.down)
    times = np.array([plan.window_start_s(i) for i in range(y.shape[1])])
    expected = np.stack([50 * np.sin(2 * np.pi * 10 * times), 20 * np.cos(2 * np.pi * 40 * times + 0.3)])
    inner = slice(128, -128)  # edges see the zero padding beyond the recording
    assert np.abs(y[:, inner] - expected[:, inner]).max() < 0.2  # uV, of 50 / 20 uV amplitudes


@pytest.mark.parametrize(("sfreq", "tone"), [(500.0, 200.0), (500.0, 180.0), (5000.0, 300.0), (5000.0, 2300.0)])
def test_content_above_new_nyquist_is_removed_not_aliased(sfreq, tone):
    t = np.arange(int(6 * sfreq)) / sfreq
    x = 100 * np.sin(2 * np.pi * tone * t)[None]
    y = resample(x, sfreq, SFREQ)[0, 256:-256]
    assert np.sqrt(np.mean(y**2)) < 0.01 * 100 / np.sqrt(2)  # > 40 dB down


def test_dc_offset_does_not_ring_at_the_start():
    sfreq = 500.0
    t = np.arange(int(4 * sfreq)) / sfreq
    x = (3000.0 + 5 * np.sin(2 * np.pi * 7 * t))[None]
    y = resample(x, sfreq, SFREQ)[0]
    expected = 3000.0 + 5 * np.sin(2 * np.pi * 7 * np.arange(y.size) / 256.0)
    assert np.abs(y[:50] - expected[:50]).max() < 0.5  # zero padding alone would halve sample 0


@pytest.mark.parametrize("sfreq", [r for r in RATES if r != 256.0] + [1000 / 3, 1024.0, 128.0])
def test_matrix_polyphase_equals_scipy_resample_poly(sfreq):
    # The BLAS evaluation of the polyphase sum against scipy's own, in float64, on offset data.
    scipy_signal = pytest.importorskip("scipy.signal")
    rng = np.random.default_rng(int(sfreq))
    x = (rng.standard_normal((3, int(sfreq * 11.7) + 3)) * 40.0 + 150.0).astype(np.float32)
    plan = plan_resample(sfreq, SFREQ)
    offset = x[:, :1].astype(np.float64)
    taps = _fir_taps(plan.up, plan.down).astype(np.float64)
    expected = scipy_signal.resample_poly(x - offset, plan.up, plan.down, axis=1, window=taps) + offset
    got = resample(x, sfreq, SFREQ)
    assert got.shape == expected.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=0, atol=2e-4)


@pytest.mark.parametrize("sfreq", (500.0, 173.61, 5000.0, 160.0, 256.0))
def test_streaming_equals_one_shot(sfreq):
    rng = np.random.default_rng(int(sfreq))
    n_times = int(7.3 * sfreq)
    x = rng.standard_normal((3, n_times)).cumsum(axis=1) + 200.0
    sizes = [1, 0, 2, int(sfreq) // 3, 7, int(2.5 * sfreq)]
    chunks, start = [], 0
    while start < n_times:
        size = sizes[len(chunks) % len(sizes)]
        chunks.append(x[:, start : start + size])
        start += size
    one_shot = resample(x, sfreq, SFREQ)
    resampler = Resampler(sfreq, n_chans=x.shape[0], sfreq_out=SFREQ)
    streamed = np.concatenate([*map(resampler.push, chunks), resampler.flush()], axis=1)
    assert streamed.shape == one_shot.shape
    # float32 filtering: rounding differences grow with the values (a random walk to a few hundred)
    np.testing.assert_allclose(streamed, one_shot, rtol=1e-6, atol=1e-4)


def test_streaming_real_eeg_equals_one_shot(shared_data):
    x, sfreq = _read_eegmat(shared_data / "eegmat" / "Subject00_2.edf")
    one_shot = resample(x, sfreq, SFREQ)
    resampler = Resampler(sfreq, n_chans=x.shape[0], sfreq_out=SFREQ)
    step = int(7 * sfreq)
    parts = [resampler.push(x[:, i : i + step]) for i in range(0, x.shape[1], step)]
    parts.append(resampler.flush())
    streamed = np.concatenate(parts, axis=1)
    assert streamed.shape == one_shot.shape
    np.testing.assert_allclose(streamed, one_shot, rtol=0, atol=1e-3)
    # Bounded memory: the buffer holds only what the next output needs.
    assert resampler._buffer.shape[1] < 64


def test_window_start_mapping_is_exact():
    assert plan_resample(500.0, SFREQ).window_start_s(1280) == 5.0
    for index in (0, 1, 255, 256, 1280, 12_345_677):
        assert plan_resample(500.0, SFREQ).window_start_s(index) == index / 256  # dyadic: exact in binary
    plan = plan_resample(173.61, SFREQ)
    for index in (0, 1, 1000, 921_600):
        exact = Fraction(index * plan.down, plan.up) / Fraction(173.61)
        assert plan.window_start_s(index) == float(exact)
    # The approximated ratio is visible in the mapping: not index / 256 for long offsets.
    assert plan.window_start_s(921_600) != 921_600 / 256


def test_errors_name_the_parameter():
    with pytest.raises(ValueError, match=r"data: expected shape \(n_chans, n_times\)"):
        resample(np.zeros(10), 500.0, SFREQ)
    with pytest.raises(ValueError, match="sfreq_in: expected a finite rate > 0 Hz; got 0"):
        resample(np.zeros((1, 10)), 0.0, SFREQ)
    with pytest.raises(ValueError, match="n_chans"):
        Resampler(500.0, n_chans=0, sfreq_out=SFREQ)
    resampler = Resampler(500.0, n_chans=2, sfreq_out=SFREQ)
    with pytest.raises(ValueError, match="chunk: expected 2 channels"):
        resampler.push(np.zeros((3, 10)))
    resampler.flush()
    with pytest.raises(RuntimeError, match="push\\(\\) after flush\\(\\)"):
        resampler.push(np.zeros((2, 10)))
