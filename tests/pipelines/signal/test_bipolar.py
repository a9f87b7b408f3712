"""Electrode potentials from bipolar derivations (pipelines.signal.bipolar)."""

from __future__ import annotations

import numpy as np

from eegfm.contract.channels import derivation
from eegfm.pipelines.readers import open_recording
from eegfm.pipelines.signal.bipolar import BipolarReader, bipolar_plan

# CHB-MIT's montage as its EDF files carry it (the readers number the second T8-P8).
CHB_MIT = (
    "FP1-F7",
    "F7-T7",
    "T7-P7",
    "P7-O1",
    "FP1-F3",
    "F3-C3",
    "C3-P3",
    "P3-O1",
    "FP2-F4",
    "F4-C4",
    "C4-P4",
    "P4-O2",
    "FP2-F8",
    "F8-T8",
    "T8-P8-0",
    "P8-O2",
    "FZ-CZ",
    "CZ-PZ",
    "P7-T7",
    "T7-FT9",
    "FT9-FT10",
    "FT10-T8",
    "T8-P8-1",
)


def _derivations(potentials: dict[str, np.ndarray], names=CHB_MIT) -> np.ndarray:
    return np.stack([potentials[a] - potentials[b] for a, b in map(derivation, names)])


def test_the_largest_chain_gives_each_electrode_against_the_chains_mean():
    rng = np.random.default_rng(0)
    sites = (
        "Fp1",
        "F7",
        "T7",
        "P7",
        "O1",
        "F3",
        "C3",
        "P3",
        "Fp2",
        "F4",
        "C4",
        "P4",
        "O2",
        "F8",
        "T8",
        "P8",
        "FT9",
        "FT10",
        "Fz",
        "Cz",
        "Pz",
    )
    reference = rng.normal(0, 30, 400)  # whatever the original reference was, it is gone
    potentials = {s: rng.normal(0, 20, 400) + reference for s in sites}
    plan = bipolar_plan(("ECG",) + CHB_MIT + ("--0", "--1"))
    assert set(plan.electrodes) == set(sites) - {"Fz", "Cz", "Pz"} and len(plan.derivations) == 21
    assert plan.left_out == ("FZ-CZ", "CZ-PZ")  # a chain of its own: no common reference with the rest
    chain = np.stack([potentials[e] for e in plan.electrodes])
    derived = plan.matrix @ _derivations(potentials)[[i - 1 for i in plan.derivations]]
    np.testing.assert_allclose(derived, chain - chain.mean(axis=0), atol=1e-9)
    # both recordings of T8-P8 are used (averaged by the least squares)
    assert {"T8-P8-0", "T8-P8-1"} <= {(("ECG",) + CHB_MIT)[i] for i in plan.derivations}


def test_referential_montages_and_a_bad_bridge_are_told_apart():
    assert bipolar_plan(["EEG Fp1-REF", "EEG F3-REF", "EEG C3-REF"]) is None
    assert bipolar_plan(["Fp1-Cz", "F3-Cz", "C3-Cz", "P3-Cz"]) is None  # all against Cz: referential
    assert bipolar_plan(["Fp1", "F3", "ECG"]) is None
    # Without the FT9-FT10 bridge the hemispheres are two chains of 9 electrodes and 10 derivations
    # each: one is kept, the same every run.
    plan = bipolar_plan(CHB_MIT, exclude=["FT9-FT10"])
    assert set(plan.electrodes) == {"Fp2", "F4", "C4", "P4", "O2", "F8", "T8", "P8", "FT10"}
    assert "FP1-F7" in plan.left_out and "FT9-FT10" not in plan.left_out + tuple(plan.electrodes)


def test_a_bipolar_reader_presents_the_electrodes_and_keeps_the_other_channels(shared_data, tmp_path):
    from tests.pipelines.job.test_process import _write_edf

    with open_recording(shared_data / "eegmat" / "Subject00_2.edf") as edf:
        data, names = edf.read(0, 5000), [n.split(" ", 1)[-1] for n in edf.info.ch_names]
    potentials = dict(zip(names, data))
    chain = ("Fp1-F3", "F3-C3", "C3-P3", "P3-O1", "Fp2-F4", "F4-C4", "C4-P4", "P4-O2", "Fp1-Fp2", "O1-O2")
    _write_edf(
        tmp_path / "b.edf", list(chain) + ["ECG"], np.vstack([_derivations(potentials, chain), potentials["ECG"][None]])
    )
    with open_recording(tmp_path / "b.edf") as edf:
        plan = bipolar_plan(edf.info.ch_names)
        reader = BipolarReader(edf, plan)
        assert reader.info.ch_names == plan.electrodes + ("ECG",) and reader.segments == edf.segments
        got = reader.read(1000, 3000)
    truth = np.stack([potentials[e][1000:3000] for e in plan.electrodes])
    # the EDF keeps 16 bits over +-3000 uV: within its quantization
    np.testing.assert_allclose(got[:-1], truth - truth.mean(axis=0), atol=0.2)
    np.testing.assert_allclose(got[-1], potentials["ECG"][1000:3000], atol=0.1)
