"""The report's trace page on a real window (eegmat, through the pipeline): the 18 double-banana
derivations as the differences of their electrodes, drawn negative up with a calibration bar."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from eegfm.contract.channels import CANONICAL_CHANNELS
from eegfm.contract.montages import DOUBLE_BANANA
from eegfm.contract.schema import SFREQ, decode_example
from eegfm.contract.tfrecord import read_records
from eegfm.evaluation.report.sections_predictions import PAGE_SECONDS, _draw_traces, bipolar


def test_a_window_is_drawn_in_the_double_banana_negative_up(three_sites):
    shard = next(iter(sorted(three_sites.rglob("*.tfrecord"))))
    eeg = np.asarray(decode_example(next(iter(read_records(shard)))).eeg, dtype=np.float32)
    derivations = bipolar(eeg)
    assert derivations.shape == (18, eeg.shape[1]) and len(set(DOUBLE_BANANA)) == 18
    fz, cz, pz = (CANONICAL_CHANNELS.index(c) for c in ("Fz", "Cz", "Pz"))
    np.testing.assert_allclose(derivations[DOUBLE_BANANA.index(("Fz", "Cz"))], eeg[fz] - eeg[cz])
    np.testing.assert_allclose(derivations[DOUBLE_BANANA.index(("Cz", "Pz"))], eeg[cz] - eeg[pz])
    axes = Figure().subplots()
    _draw_traces(axes, eeg)
    low, high = axes.get_ylim()
    assert low > high  # inverted: a negative deflection goes up
    lines = axes.get_lines()
    traces = [line for line in lines if len(line.get_xdata()) > 3]
    assert len(traces) == 18 and all(len(t.get_xdata()) == int(PAGE_SECONDS * SFREQ) for t in traces)
    [bar] = [line for line in lines if line.get_color() == "tab:red"]
    xs, ys = bar.get_xdata(), bar.get_ydata()
    assert max(ys) - min(ys) == 100.0 and max(xs) - min(xs) == 1.0  # 100 µV by 1 s
    assert [t.get_text() for t in axes.get_yticklabels()][:2] == ["Fp1-F7", "F7-T3"]
