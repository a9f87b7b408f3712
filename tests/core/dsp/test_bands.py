"""The one band table and its views."""

from __future__ import annotations

import numpy as np

from eegfm.core.dsp.bands import BANDS, band_edges, band_power, bands_within


def test_views_of_the_band_table_clip_and_drop():
    assert bands_within(0.0, 100.0) == BANDS
    assert band_edges(bands_within(0.5, 45.0))[-1] == (30.0, 45.0)
    assert [name for name, _, _ in bands_within(1.0, 30.0)] == ["delta", "theta", "alpha", "beta"]
    assert bands_within(1.0, 30.0)[0] == ("delta", 1.0, 4.0)


def test_band_power_sums_bins_times_width_on_the_last_axis():
    freqs = np.arange(0.0, 10.0, 0.5)
    psd = np.ones((2, 3, freqs.size))
    assert np.allclose(band_power(freqs, psd, 1.0, 3.0), 2.0)  # 4 bins of 0.5 Hz
    assert band_power(freqs, psd, 1.0, 3.0).shape == (2, 3)
