"""ICA cleaning on real EEG with injected eye blinks (ground truth known)."""

import numpy as np
import pytest

from eegfm.contract.channels import CANONICAL_CHANNELS as CH
from eegfm.pipelines.job.process import _clean
from eegfm.pipelines.readers import open_recording
from eegfm.pipelines.signal.harmonize import harmonize, plan_harmonization
from eegfm.pipelines.signal.ica import fit_ica_cleaner

SFREQ = 500.0
# Blink field: strongest at the frontopolar electrodes, fading toward the vertex.
BLINK_GAIN = {
    "Fp1": 1.0,
    "Fp2": 1.0,
    "F7": 0.6,
    "F8": 0.6,
    "F3": 0.5,
    "F4": 0.5,
    "Fz": 0.5,
    "C3": 0.2,
    "C4": 0.2,
    "Cz": 0.2,
}


@pytest.fixture(scope="module")
def blinky(shared_data):
    with open_recording(shared_data / "eegmat" / "Subject03_1.edf") as reader:
        raw = reader.read(0, int(60 * SFREQ))
        names = reader.info.ch_names
    clean = harmonize(raw, names).data.astype(np.float64)
    t = np.arange(clean.shape[1]) / SFREQ
    blink = sum(150.0 * np.exp(-0.5 * ((t - c) / 0.08) ** 2) for c in np.arange(1.5, 59, 3.1))
    dirty = clean.copy()
    for name, gain in BLINK_GAIN.items():
        dirty[CH.index(name)] += gain * blink
    return names, raw, clean, dirty, blink


def test_blinks_are_removed_and_posterior_channels_untouched(blinky):
    _, _, clean, dirty, blink = blinky
    cleaner = fit_ica_cleaner(dirty, SFREQ, np.ones(19, dtype=int))
    assert cleaner.excluded_eog, "no eye component found"
    out = cleaner.apply(dirty)
    fp1 = CH.index("Fp1")
    assert np.corrcoef(dirty[fp1], blink)[0, 1] > 0.8
    assert abs(np.corrcoef(out[fp1], blink)[0, 1]) < 0.3
    for name in ("O1", "O2", "P3", "P4"):
        i = CH.index(name)
        assert np.corrcoef(out[i], clean[i])[0, 1] > 0.99, name
    # Cleaning is one fixed affine map: applying it to pieces equals applying it to the whole.
    halves = np.concatenate([cleaner.apply(dirty[:, :10000]), cleaner.apply(dirty[:, 10000:])], axis=1)
    np.testing.assert_allclose(halves, out, atol=1e-3)


def test_removed_artifact_reaches_interpolated_channels(blinky):
    names, raw, _, _, blink = blinky
    keep = [i for i, n in enumerate(names) if n != "EEG Fz"]
    names_kept = [names[i] for i in keep]
    plan = plan_harmonization(names_kept)
    dirty_raw = raw[keep].astype(np.float64).copy()
    for name, gain in BLINK_GAIN.items():
        if name != "Fz":
            dirty_raw[names_kept.index(f"EEG {name}")] += gain * blink
    dirty = harmonize(dirty_raw, names_kept, plan=plan).data
    mask = np.array([0 if c == "Fz" else 1 for c in CH])
    cleaner = fit_ica_cleaner(dirty, SFREQ, mask)
    out = _clean(cleaner, dirty, plan)
    fz = CH.index("Fz")
    # Fz was rebuilt from blink-laden neighbours; after cleaning it loses the blink too.
    assert np.corrcoef(dirty[fz], blink)[0, 1] > 0.5
    assert abs(np.corrcoef(out[fz], blink)[0, 1]) < 0.3


def test_the_manifest_records_what_ica_removed_per_recording(shared_data, tmp_path):
    from eegfm.pipelines.job.launcher import summarize
    from eegfm.pipelines.job.preprocess import run
    from eegfm.pipelines.privacy.deid import create_key

    source = shared_data / "eegmat" / "Subject03_1.edf"
    key = tmp_path / "key"
    create_key(str(key))
    manifest = run(
        [
            "--input",
            str(source),
            "--output",
            str(tmp_path / "out"),
            "--pseudonym_key_file",
            str(key),
            "--ica",
            "--runner",
            "DirectRunner",
            "--direct_running_mode",
            "in_memory",
        ]
    )
    (entry,) = [e for e in manifest["inputs"] if e["status"] == "processed"]
    # The pipeline fits on the first ica_fit_seconds (120 s) of the harmonized recording, as here.
    with open_recording(source) as reader:
        raw, names = reader.read(0, int(120 * SFREQ)), reader.info.ch_names
    cleaner = fit_ica_cleaner(harmonize(raw, names).data, SFREQ, np.ones(19, dtype=int))
    assert entry["ica"] == {
        "components": 15,
        "eog_removed": len(cleaner.excluded_eog),
        "emg_removed": len(cleaner.excluded_emg),
    }
    assert manifest["counts"]["ica_removed"] == {
        "eog": len(cleaner.excluded_eog),
        "emg": len(cleaner.excluded_emg),
        "recordings": 1,
    }
    assert f"{len(cleaner.excluded_eog)} eye, {len(cleaner.excluded_emg)} muscle in 1 recording" in summarize(
        manifest, 1.0
    )
