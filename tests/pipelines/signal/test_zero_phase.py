"""Zero-phase application: streaming equals one-shot, integer input, FFT sizes and their gains."""

from __future__ import annotations

import numpy as np
import pytest

from eegfm.core.dsp.resample import resample
from eegfm.pipelines.signal.filters import FilterConfig, design_filters
from eegfm.pipelines.signal.zero_phase import StreamingFilter, _fft_size, _zero_phase_gain, apply_filters
from tests.pipelines.signal.test_filters import SFREQ, _assert_matches_sosfiltfilt, _pink_noise, _read


def test_streaming_filter_equals_one_shot_on_real_eeg(shared_data):
    x, sfreq, _ = _read(shared_data / "eegmat" / "Subject00_2.edf")
    x = resample(x, sfreq, SFREQ)
    design = design_filters(SFREQ, FilterConfig(), 50)
    one_shot = apply_filters(x, design)
    stream = StreamingFilter(design, n_chans=x.shape[0])
    step = int(5 * SFREQ)  # chunks much shorter than the look-ahead margin
    parts = [stream.push(x[:, i : i + step]) for i in range(0, x.shape[1], step)]
    parts.append(stream.flush())
    streamed = np.concatenate(parts, axis=1)
    assert streamed.shape == one_shot.shape
    # Equal apart from float32 rounding (the FFT's scales with the unfiltered signal, drift and all).
    assert np.abs(streamed - one_shot).max() < 1e-4 * one_shot.std()
    _assert_matches_sosfiltfilt(one_shot, x, design)
    _assert_matches_sosfiltfilt(streamed, x, design)
    # The early blocks waited for their look-ahead; memory stayed bounded.
    assert parts[0].shape[1] == 0 and stream._buffer.shape[1] <= design.margin + step


def test_finish_filters_the_last_chunk_once_and_equals_push_then_flush(shared_data):
    x, sfreq, _ = _read(shared_data / "eegmat" / "Subject00_2.edf")
    x = resample(x, sfreq, SFREQ)
    design = design_filters(SFREQ, FilterConfig(), 50)
    # The whole recording in one call is the one-shot filter, bit for bit.
    np.testing.assert_array_equal(StreamingFilter(design, x.shape[0]).finish(x), apply_filters(x, design))
    half = x.shape[1] // 2
    pushed = StreamingFilter(design, x.shape[0])
    first = pushed.push(x[:, :half])
    a = np.concatenate([first, pushed.push(x[:, half:]), pushed.flush()], axis=1)
    finished = StreamingFilter(design, x.shape[0])
    b = np.concatenate([finished.push(x[:, :half]), finished.finish(x[:, half:])], axis=1)
    assert a.shape == b.shape == x.shape
    assert np.abs(a - b).max() < 1e-4 * a.std()  # float32 rounding
    _assert_matches_sosfiltfilt(a, x, design)
    _assert_matches_sosfiltfilt(b, x, design)
    with pytest.raises(RuntimeError, match="finish"):
        finished.finish(x[:, :10])


def test_integer_samples_filter_like_their_float_values():
    # Raw ADC counts near the int16 limits: the offset is subtracted in floating point, not int16.
    x = _pink_noise(np.random.default_rng(3), 2, 5000, scale=2000.0).clip(-32000, 32000).astype(np.int16)
    x[:, 0] = -30000
    design = design_filters(SFREQ, FilterConfig(), 50)
    expected = apply_filters(x.astype(np.float64), design)
    np.testing.assert_allclose(apply_filters(x, design), expected, atol=1e-4 * expected.std())
    stream = StreamingFilter(design, n_chans=2)
    streamed = np.concatenate([stream.push(x[:, :2000]), stream.finish(x[:, 2000:])], axis=1)
    np.testing.assert_allclose(streamed, expected, atol=1e-4 * expected.std())


def test_fft_sizes_are_few_close_and_carry_the_designed_response():
    sizes = {n: _fft_size(n) for n in range(1, 400_000, 37)}
    for n, size in sizes.items():
        assert n <= size <= max(16, 1.2 * n)
        m = size >> (size.bit_length() - 5)  # the size's leading 5 bits: 16, 18, 20, 24, 27 or 30
        assert m in (16, 18, 20, 24, 27, 30) and m << (size.bit_length() - 5) == size
    assert len(set(sizes.values())) < 80  # recordings of similar length share a cached gain
    design = design_filters(SFREQ, FilterConfig(), 50)
    gain = _zero_phase_gain(design, 4096)
    assert _zero_phase_gain(design, 4096) is gain
    freqs = np.fft.rfftfreq(4096, 1 / SFREQ)
    expected = 10 ** (design.response_db(freqs) / 20)  # zero-phase dB: 20 log10 of |H|^2
    np.testing.assert_allclose(gain, expected, rtol=1e-5, atol=1e-12)


def test_streaming_single_chunk_and_short_recording_equal_one_shot():
    rng = np.random.default_rng(11)
    design = design_filters(SFREQ, FilterConfig(), 60)
    for n_times in (300, 5000):  # shorter and longer than the edge padding
        x = _pink_noise(rng, 3, n_times) + 100.0
        stream = StreamingFilter(design, n_chans=3)
        first = stream.push(x)
        streamed = np.concatenate([first, stream.flush()], axis=1)
        np.testing.assert_array_equal(streamed, apply_filters(x, design))
    with pytest.raises(RuntimeError, match="flush\\(\\) called twice"):
        stream.flush()
