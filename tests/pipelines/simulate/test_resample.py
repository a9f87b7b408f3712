"""Streaming resampler: chunk-independent and equal to a one-shot polyphase resampling."""

import numpy as np
import pytest
from scipy import signal

from eegfm.pipelines.simulate.resample import StreamingResampler


@pytest.mark.parametrize("sfreq", [160, 200, 250, 256, 500, 512])
def test_chunked_output_equals_one_shot_output(sfreq):
    x = np.random.default_rng(0).standard_normal((3, sfreq * 20))
    outputs = []
    for chunk_s in (20, 7, 1):
        resampler, parts = StreamingResampler(sfreq, 200, 3), []
        for start in range(0, x.shape[1], chunk_s * sfreq):
            parts.append(resampler.process(x[:, start : start + chunk_s * sfreq]))
        outputs.append(np.concatenate(parts, axis=1))
    for out in outputs[1:]:
        np.testing.assert_array_equal(out, outputs[0])
    assert 20 * 200 - outputs[0].shape[1] < 20  # only the filter's look-ahead is held back


@pytest.mark.parametrize("sfreq", [250, 256, 500])
def test_output_sample_m_is_the_signal_at_m_over_200_seconds(sfreq):
    t_in = np.arange(sfreq * 10) / sfreq
    x = np.sin(2 * np.pi * 7.0 * t_in)[None, :]
    y = StreamingResampler(sfreq, 200, 1).process(x)[0]
    t_out = np.arange(len(y)) / 200
    interior = slice(200, len(y) - 200)
    np.testing.assert_allclose(y[interior], np.sin(2 * np.pi * 7.0 * t_out[interior]), atol=2e-3)
    reference = signal.resample_poly(x[0], 200, sfreq)
    np.testing.assert_allclose(y[interior], reference[interior], atol=2e-3)


def test_misaligned_chunks_are_rejected():
    with pytest.raises(ValueError, match="multiple of 5"):
        StreamingResampler(250, 200, 1).process(np.zeros((1, 12)))
