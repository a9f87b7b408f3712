"""A single NaN or infinite input sample rejects exactly the windows whose resampling reads it.

The sample is set to 0 before resampling; the windows it reaches are found on the input samples,
through the resampling filter's support, not by the input nearest each output instant (which
missed about half the positions between two output instants)."""

from __future__ import annotations

import mne
import numpy as np
import pytest
from scipy.signal import resample_poly

from eegfm.contract.schema import SFREQ
from eegfm.core.dsp.resample import plan_resample, resample
from eegfm.pipelines.datasets import SourceItem
from eegfm.pipelines.job.process import Outcome, PreprocessConfig, RejectedWindow, Window, process_recording

KEY = b"a-test-key-of-32-bytes-for-hmac!"
WINDOW = 2560  # 10 s at 256 Hz, the default window
N_WINDOWS = 4
RATES = (128.0, 160.0, 200.0, 250.0, 256.0, 500.0, 512.0, 1000.0, 173.61)


def _reach(sfreq: float, n_times: int, at: int) -> np.ndarray:
    """The output samples an impulse at input ``at`` moves (the rest 0): what the resampler
    actually reads, found independently of `ResamplePlan.input_span`. (Even the filter's end taps,
    about 1e-20, leave a float32 trace; a NaN would over-reach, through the zeros that pad the
    resampler's tap matrices.)"""
    x = np.zeros((1, n_times), dtype=np.float32)
    x[0, at] = 1.0
    return np.flatnonzero(resample(x, sfreq, SFREQ)[0])


@pytest.mark.parametrize("sfreq", RATES)
def test_input_span_is_what_the_resampler_reads(sfreq):
    plan = plan_resample(sfreq, SFREQ)
    n_times = int(3 * sfreq)
    n_out = plan.output_length(n_times)
    for at in np.unique(np.linspace(1, n_times - 1, 23).astype(int)):
        reach = _reach(sfreq, n_times, at)
        spans = np.array([plan.input_span(m, m + 1) for m in range(n_out)])
        reads = np.flatnonzero((spans[:, 0] <= at) & (at < spans[:, 1]))
        np.testing.assert_array_equal(reach, reads, err_msg=f"{sfreq} Hz, input sample {at}")
        # A run of outputs reads the union of what each reads.
        first, stop = plan.input_span(int(reach[0]), int(reach[-1]) + 1)
        assert first <= at < stop
        if reach[-1] + 1 < n_out:
            assert plan.input_span(int(reach[-1]) + 1, n_out)[0] > at
        if reach[0] > 0:
            assert plan.input_span(0, int(reach[0]))[1] <= at


def _run(path) -> tuple[list, list]:
    config = PreprocessConfig()
    events = list(
        process_recording(SourceItem(path=str(path), dataset="edf", site="t"), KEY, config, config.config_hash())
    )
    assert isinstance(events[-1], Outcome) and events[-1].status == "processed", events[-1]
    return [e.record for e in events if isinstance(e, Window)], [e for e in events if isinstance(e, RejectedWindow)]


@pytest.fixture(scope="module")
def eegmat_40s(shared_data):
    """Subject00_1 (500 Hz), the first 40 s: four 10 s windows, every one clean."""
    raw = mne.io.read_raw_edf(shared_data / "eegmat" / "Subject00_1.edf", preload=True, verbose="error")
    raw.crop(0.0, 40.0, include_tmax=False)
    return raw.get_data(), raw.info


def _positions(sfreq: float, n_times: int) -> list[int]:
    """About 50 input samples: on and around the window boundaries (within the resampling
    filter's reach, so between and on the taps nearest an output instant) and inside windows."""
    plan = plan_resample(sfreq, SFREQ)
    reach = 12 if plan.is_identity else -(-plan.half_len // plan.up) + 1  # input samples
    picks = set()
    for k in (1, 2):
        edge = k * WINDOW * sfreq / 256.0  # window boundary on the input clock
        picks.update(int(np.floor(edge)) + d for d in range(-reach - 2, reach + 3))
    picks.update(int(s) for s in np.linspace(1, n_times - 1, 12))
    return sorted(p for p in picks if 0 < p < n_times)


@pytest.mark.parametrize("sfreq", [500.0, 200.0, 256.0])
def test_one_nan_or_inf_sample_rejects_exactly_the_windows_it_reaches(eegmat_40s, tmp_path, sfreq):
    data, info = eegmat_40s
    if sfreq != info["sfreq"]:
        data = resample_poly(data, int(sfreq), int(info["sfreq"]), axis=1)
        info = mne.create_info(info.ch_names, sfreq, "eeg")
    n_times = data.shape[1]
    assert plan_resample(sfreq, SFREQ).output_length(n_times) == N_WINDOWS * WINDOW

    def write(values, name):
        path = tmp_path / f"{name}_raw.fif"
        mne.io.RawArray(values, info, verbose="error").save(path, overwrite=True, verbose="error")
        return path

    clean, none_rejected = _run(write(data, "clean"))
    assert [float(w.window_start_s) for w in clean] == [0.0, 10.0, 20.0, 30.0] and not none_rejected
    fp1 = info.ch_names.index("EEG Fp1")
    missed = []
    positions = _positions(sfreq, n_times)
    assert len(positions) >= 40
    for at in positions:
        reach = _reach(sfreq, n_times, at)
        expected = sorted(
            {10.0 * k for k in range(N_WINDOWS) if ((reach >= k * WINDOW) & (reach < (k + 1) * WINDOW)).any()}
        )
        assert expected
        for value in (np.nan, np.inf):
            bad = data.copy()
            bad[fp1, at] = value
            windows, rejected = _run(write(bad, "bad"))
            got = sorted(r.window_start_s for r in rejected)
            if got != expected:
                missed.append((value, at, expected, got))
                continue
            assert all(r.reasons[0] == "non_finite: 1 samples were NaN or infinite in the source" for r in rejected), (
                rejected
            )
            kept = {float(w.window_start_s): w for w in windows}
            assert sorted(kept) == sorted({0.0, 10.0, 20.0, 30.0} - set(expected))
            for w in clean:
                if float(w.window_start_s) in kept:
                    ours, theirs = kept[float(w.window_start_s)].eeg.astype(np.float32), w.eeg.astype(np.float32)
                    others = np.arange(len(ours)) != 0  # row 0 is Fp1
                    np.testing.assert_allclose(ours[others], theirs[others], rtol=2**-10, atol=0.05)
                    # The zero-phase band-pass carries a trace of the zeroed Fp1 sample past the
                    # resampling filter's reach; a fraction of the value it replaced.
                    np.testing.assert_allclose(
                        ours[0], theirs[0], rtol=2**-10, atol=0.5 * abs(data[fp1, at]) * 1e6 + 0.05
                    )
    assert not missed, f"{len(missed)} of {2 * len(positions)} placements missed: {missed[:5]}"
