"""python -m eegfm.evaluation.planted_seizures: a simulated ACNS seizure added to a real recording's own
background, only where and as said; a model without a Seizure class is refused."""

from __future__ import annotations

import mne
import numpy as np
import pytest

from eegfm.contract.channels import canonical_name
from eegfm.evaluation import planted_seizures


def test_a_planted_copy_is_the_recording_with_a_seizure_in_its_last_ten_seconds(shared_data, tmp_path):
    source = shared_data / "eegmat" / "Subject03_1.edf"
    made = planted_seizures.planted_copy(str(source), tmp_path, np.random.default_rng(0), 0.5, 60.0)
    planted = mne.io.read_raw_fif(made, preload=True, verbose="error")
    original = mne.io.read_raw_edf(source, preload=True, verbose="error").crop(60.0, 80.0 - 1 / 500)
    assert planted.n_times == original.n_times == 20 * 500
    added = (planted.get_data() - original.get_data()) * 1e6  # µV
    eeg = [i for i, name in enumerate(planted.ch_names) if canonical_name(name)]
    others = [i for i in range(len(planted.ch_names)) if i not in eeg]
    assert np.abs(added[:, : 10 * 500]).max() < 1e-3  # the first 10 s as recorded
    assert np.abs(added[others]).max() < 1e-3  # ECG and the ear derivation untouched
    ictal = added[eeg, 10 * 500 :]
    size = np.ptp(ictal, axis=1)
    assert size.max() > 50.0  # a seizure's first seconds, building up from its onset ...
    assert size.max() > 1.3 * size.min()  # ... largest at its focus


def test_too_short_a_recording_gives_none(shared_data, tmp_path):
    source = shared_data / "eegmat" / "Subject03_2.edf"  # 62 s
    assert planted_seizures.planted_copy(str(source), tmp_path, np.random.default_rng(0), 0.5, 50.0) is None


def test_a_model_without_a_seizure_class_is_refused(finetuned, shared_data, capsys):
    with pytest.raises(SystemExit):
        planted_seizures.main(["--model", str(finetuned), "--data", str(shared_data / "eegmat")])
    assert "--model: expected a model with a Seizure class; its classes are rest, task" in capsys.readouterr().err


def test_a_gain_multiplies_background_and_seizure_alike(shared_data, tmp_path):
    source = str(shared_data / "eegmat" / "Subject03_1.edf")
    (tmp_path / "plain").mkdir(), (tmp_path / "tripled").mkdir()
    plain = planted_seizures.planted_copy(source, tmp_path / "plain", np.random.default_rng(0), 0.5, 60.0)
    tripled = planted_seizures.planted_copy(source, tmp_path / "tripled", np.random.default_rng(0), 0.5, 60.0, 3.0)
    a, b = (mne.io.read_raw_fif(f, preload=True, verbose="error").get_data() for f in (plain, tripled))
    np.testing.assert_allclose(b, 3.0 * a, rtol=1e-5, atol=1e-12)


def test_a_gain_that_is_not_positive_is_refused_before_any_model_loads(tmp_path, capsys):
    with pytest.raises(SystemExit):
        planted_seizures.main(["--model", str(tmp_path / "none"), "--data", str(tmp_path), "--gain", "0"])
    assert "--gain: expected a factor above 0; got 0.0" in capsys.readouterr().err


def test_stretches_come_from_every_data_pattern_at_every_offset(hms6_run, shared_data, tmp_path):
    """Two globs (people no single glob names) and two offsets: a stretch at each offset of each
    recording, up to --recordings, every one scored or counted as dropped."""
    import json

    rest = shared_data / "eegmat"
    argv = ["--model", str(hms6_run), "--data", str(rest / "Subject0[1]_1.edf"), str(rest / "Subject0[2]_1.edf")]
    argv += ["--offset_s", "20", "60", "--recordings", "4", "--output", str(tmp_path)]
    assert planted_seizures.main(argv) == 0
    report = json.loads((tmp_path / "planted_seizures.json").read_text())
    assert report["recordings"] == 4
    assert report["ictal_windows_scored"] + report["ictal_windows_dropped"] == 4
