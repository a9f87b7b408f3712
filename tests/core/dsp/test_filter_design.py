"""The numpy designs against scipy.signal, which they replace on the job's import path."""

import subprocess
import sys

import numpy as np
import pytest
from scipy import signal

from eegfm.core.dsp.filter_design import (
    butter_sos,
    hann_periodic,
    kaiser_lowpass,
    notch_sos,
    sos_impulse_response,
    sos_response,
)

FS = (160.0, 256.0, 500.0, 5000.0)


def _freqs(fs: float) -> np.ndarray:
    # Log-spaced down to a thousandth of a hertz, where a high-pass edge's double zeros at z = 1
    # leave a response of 1e-20 that naive evaluation gets wrong.
    return np.concatenate([np.geomspace(1e-3, fs / 2 * 0.999, 400), [0.0, fs / 2]])


@pytest.mark.parametrize("fs", FS)
@pytest.mark.parametrize("order", [1, 2, 3, 4, 5, 8])
@pytest.mark.parametrize("btype,cutoff", [("highpass", 0.375), ("highpass", 7.0), ("lowpass", 40.0), ("lowpass", 75.0)])
def test_butterworth_response_equals_scipy(fs, order, btype, cutoff):
    ours = butter_sos(order, cutoff, btype, fs)
    theirs = signal.butter(order, cutoff, btype, fs=fs, output="sos")
    assert ours.shape == theirs.shape
    freqs = _freqs(fs)
    _, expected = signal.sosfreqz(theirs, worN=freqs, fs=fs)
    got = sos_response(ours, freqs, fs)
    np.testing.assert_allclose(np.abs(got), np.abs(expected), rtol=1e-8, atol=1e-14)
    np.testing.assert_allclose(got, expected, rtol=1e-8, atol=1e-12)
    # The same poles, so the same recursion: scipy's own sosfilt agrees on an impulse.
    impulse = np.zeros(4096)
    impulse[0] = 1.0
    np.testing.assert_allclose(signal.sosfilt(ours, impulse), signal.sosfilt(theirs, impulse), atol=1e-12)


@pytest.mark.parametrize(
    "fs,freq,quality",
    [
        (fs, freq, quality)
        for fs in FS
        for freq, quality in [(50.0, 50.0), (60.0, 30.0), (100.0, 50.0), (50.0, 2.0)]
        if freq < fs / 2
    ],
)
def test_notch_equals_scipy_iirnotch(fs, freq, quality):
    b, a = signal.iirnotch(freq, quality, fs=fs)
    np.testing.assert_allclose(notch_sos(freq, quality, fs), signal.tf2sos(b, a), rtol=1e-12, atol=1e-15)
    freqs = _freqs(fs)
    _, expected = signal.freqz(b, a, worN=freqs, fs=fs)
    np.testing.assert_allclose(sos_response(notch_sos(freq, quality, fs), freqs, fs), expected, atol=1e-12)


def _cascade(fs: float) -> np.ndarray:
    notches = [notch_sos(f, f / 2.0, fs) for f in (50.0, 100.0) if f < fs / 2]
    return np.concatenate([*notches, butter_sos(4, 0.375, "highpass", fs), butter_sos(5, 45.0, "lowpass", fs)])


@pytest.mark.parametrize("fs", [160.0, 256.0, 500.0, 5000.0])
def test_impulse_response_equals_sosfilt_of_an_impulse(fs):
    sos = _cascade(fs)
    n = int(min(fs * 600, max(fs * 120, 2**16)))  # the length pipelines.signal.filters measures
    impulse = np.zeros(n)
    impulse[0] = 1.0
    expected = signal.sosfilt(sos, impulse)
    got = sos_impulse_response(sos, n)
    # sosfilt itself is off by up to 3e-13 at 5000 Hz (against an extended-precision recursion).
    np.testing.assert_allclose(got, expected, atol=1e-11 * np.abs(expected).max())
    # Where the filters module reads it: the tail's share of the mass, down to 1e-7, and the
    # tail's mass itself to 1e-5 of its own size (an error that does not shrink with the response,
    # e.g. an inverse FFT's, moves the 1e-7 point at 5000 Hz).
    tail_ours = np.cumsum(np.abs(got)[::-1])[::-1]
    tail_scipy = np.cumsum(np.abs(expected)[::-1])[::-1]
    for tol in (1e-3, 1e-7):
        assert np.argmax(tail_ours <= tol * tail_ours[0]) == np.argmax(tail_scipy <= tol * tail_scipy[0])
    end = int(np.argmax(tail_scipy <= 1e-7 * tail_scipy[0]))
    np.testing.assert_allclose(tail_ours[:end], tail_scipy[:end], rtol=1e-5)


@pytest.mark.parametrize(
    "section",
    [
        [1.0, 0.5, 0.0, 1.0, -0.9, 0.0],  # first order
        [0.3, 0.2, 0.1, 1.0, -1.2, 0.35],  # two real poles (0.7, 0.5)
        [1.0, -2.0, 1.0, 1.0, -1.6, 0.64],  # a double pole at 0.8
        [1.0, 0.0, 0.0, 1.0, -1.6, 0.64 - 1e-14],  # two real poles 2e-7 apart
        [1.0, 0.0, 0.0, 1.0, 1.6, 0.6399],  # two negative real poles
        [1.0, 0.0, 0.0, 1.0, 0.3, -0.4],  # real poles of opposite signs
        [2.0, 1.0, 0.5, 2.0, -0.5, 0.2],  # complex poles, a0 != 1
        [1.0, 0.0, 0.0, 1.0, 1.2, 0.9],  # complex poles in the left half
        [0.5, 0.25, 0.0, 1.0, 0.0, 0.0],  # FIR
    ],
)
def test_impulse_response_of_every_kind_of_section(section):
    n = 2000  # every one of these has died out to below 1e-40 by then
    impulse = np.zeros(n)
    impulse[0] = 1.0
    expected = signal.lfilter(section[:3], section[3:], impulse)
    np.testing.assert_allclose(sos_impulse_response(np.array([section]), n), expected, atol=1e-12)


@pytest.mark.parametrize("numtaps,cutoff", [(201, 0.1), (1281, 1 / 64), (21, 0.5), (640 * 20 + 1, 1 / 640)])
def test_kaiser_lowpass_equals_firwin(numtaps, cutoff):
    expected = signal.firwin(numtaps, cutoff, window=("kaiser", 5.0))
    np.testing.assert_allclose(kaiser_lowpass(numtaps, cutoff, 5.0), expected, rtol=1e-10, atol=1e-15)


@pytest.mark.parametrize("n", [1, 2, 7, 256, 512, 2560])
def test_hann_equals_scipy_periodic_hann(n):
    np.testing.assert_allclose(hann_periodic(n), signal.get_window("hann", n), atol=1e-15)


@pytest.mark.parametrize(
    "call,message",
    [
        (lambda: butter_sos(0, 1.0, "lowpass", 256.0), "order: expected a positive integer; got 0"),
        (lambda: butter_sos(4, 1.0, "bandpass", 256.0), "btype: expected one of lowpass, highpass; got 'bandpass'"),
        (lambda: butter_sos(4, 128.0, "lowpass", 256.0), "cutoff: expected a frequency in (0, 128) Hz"),
        (lambda: notch_sos(50.0, 0.0, 256.0), "quality: expected a positive number; got 0.0"),
        (lambda: notch_sos(130.0, 30.0, 256.0), "freq: expected a frequency in (0, 128) Hz"),
        (lambda: kaiser_lowpass(21, 1.0, 5.0), "cutoff: expected a fraction of Nyquist in (0, 1); got 1.0"),
        (lambda: sos_impulse_response(np.array([[1.0, 0, 0, 1.0, 0, 0]]), 0), "n: expected a positive number"),
        (lambda: hann_periodic(0), "n: expected a positive integer; got 0"),
    ],
)
def test_bad_arguments_name_the_parameter(call, message):
    with pytest.raises(ValueError) as err:
        call()
    assert message in str(err.value)


def test_the_job_imports_no_scipy_signal():
    # The reason this module exists: scipy.signal costs 0.6-0.7 s per process to import.
    code = (
        "import sys, eegfm.pipelines.job.preprocess, eegfm.pipelines.job.process, "
        "eegfm.pipelines.quality.artifact_autoencoder; "
        "print(sorted(m for m in sys.modules if m.startswith(('scipy.signal', 'scipy.stats'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("sfreq", [256.0, 500.0])
@pytest.mark.parametrize("order", [1, 4, 8])
@pytest.mark.parametrize(
    "l_freq,h_freq,line_freq", [(0.1, 100.0, 50), (0.5, 40.0, 60), (5.0, None, 50), (None, 100.0, None)]
)
def test_filter_lengths_equal_those_sosfilt_measures(sfreq, order, l_freq, h_freq, line_freq):
    # What pipelines.signal.filters takes from the impulse response: the edge padding (all but 1e-3 of
    # its mass) and the streaming look-ahead (all but 1e-7); a 720-setting sweep agreed as well.
    from eegfm.pipelines.signal.filters import FilterConfig, design_filters

    design = design_filters(
        sfreq, FilterConfig(line_freq=line_freq, l_freq=l_freq, h_freq=h_freq, order=order), line_freq
    )
    limit = int(min(sfreq * 600, max(sfreq * 120, 2**16)))
    impulse = np.zeros(limit)
    impulse[0] = 1.0
    mass = np.abs(signal.sosfilt(design.sos, impulse))
    tail = np.cumsum(mass[::-1])[::-1]
    padlen = int(np.argmax(tail <= 1e-3 * tail[0]))
    assert (design.padlen, design.margin) == (padlen, max(int(np.argmax(tail <= 1e-7 * tail[0])), padlen + 1))
