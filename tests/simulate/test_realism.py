"""The realism report's terms: the 1/f slope of a known power law, and corpus specs that say what is wrong."""

import numpy as np
import pytest

from eegfm.simulate import realism
from eegfm.simulate.realism_stats import SFREQ, spectral_slope, welch
from tests.conftest import SHARED_DATA


def _powerlaw(exponent, n=6, seed=0):
    rng = np.random.default_rng(seed)
    spectrum = np.fft.rfft(rng.standard_normal((n, 19, 2560)), axis=-1)
    freqs = np.fft.rfftfreq(2560, 1 / SFREQ)
    spectrum[..., 1:] *= freqs[1:] ** (-exponent / 2)
    spectrum[..., 0] = 0
    return np.fft.irfft(spectrum, n=2560, axis=-1)


@pytest.mark.parametrize("exponent", [1.0, 1.7, 2.2])
def test_the_slope_of_a_known_power_law_is_recovered(exponent):
    freqs, psd = welch(_powerlaw(exponent))
    assert spectral_slope(freqs, psd.mean(axis=(0, 1))) == pytest.approx(-exponent, abs=0.1)


@pytest.mark.parametrize(
    "text, message",
    [
        ("eegmat", "expected NAME=DIR"),
        ("x=/no/such/dir", "DIR: expected an existing directory"),
        (f"x={SHARED_DATA}:sleepy", "STATE: expected one of closed, open, unknown"),
        ("simulated=.", "reserved"),
    ],
)
def test_bad_specs_say_what_is_wrong(text, message):
    with pytest.raises(realism.SpecError, match=message):
        realism.parse_spec(text)
