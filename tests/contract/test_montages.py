"""The review montages: each one's derivations by name (written out here, not read from the code),
their values on a real recording's 19 channels, and custom lists with their errors."""

from __future__ import annotations

import numpy as np
import pytest

from eegfm.contract.montages import (
    MONTAGES,
    MontageError,
    derivation_matrix,
    montage,
    parse_derivations,
)
from eegfm.contract.schema import CHANNELS

BANANA = (
    "Fp1-F7 F7-T3 T3-T5 T5-O1 Fp2-F8 F8-T4 T4-T6 T6-O2 Fp1-F3 F3-C3 C3-P3 P3-O1 Fp2-F4 F4-C4 C4-P4 P4-O2 Fz-Cz Cz-Pz"
).split()
TRANSVERSE = (
    "F7-Fp1 Fp1-Fp2 Fp2-F8 F7-F3 F3-Fz Fz-F4 F4-F8 T3-C3 C3-Cz Cz-C4 C4-T4 T5-P3 P3-Pz Pz-P4 P4-T6 T5-O1 O1-O2 O2-T6"
).split()


@pytest.fixture(scope="module")
def channels(shared_data) -> np.ndarray:
    """(19, n) µV of a real recording (eegmat, 500 Hz), its channels in CHANNELS order."""
    from eegfm.contract.channels import canonical_name
    from eegfm.pipelines.readers import open_recording

    with open_recording(shared_data / "eegmat" / "Subject10_2.edf") as reader:
        data = reader.read(0, 5000).astype(np.float64)
        rows = {canonical_name(label): i for i, label in enumerate(reader.info.ch_names)}
    return data[[rows[c] for c in CHANNELS]]


def names(key: str) -> list[str]:
    return [d.name for d in montage(key)[1]]


def test_each_montage_has_its_clinical_derivations_in_order():
    assert names("double_banana") == BANANA
    assert names("transverse") == TRANSVERSE
    assert names("referential") == list(CHANNELS)
    assert names("average") == [f"{c}-avg" for c in CHANNELS]
    groups = [d.group for d in montage("double_banana")[1]]
    assert groups[:4] == ["left temporal"] * 4 and groups[-2:] == ["midline"] * 2
    assert [d.group for d in montage("referential")[1]] == [
        "left" if c[-1] in "1357" else "midline" if c.endswith("z") else "right" for c in CHANNELS
    ]
    for key, (title, derivations) in MONTAGES.items():
        assert title and derivations
        # a group's derivations are contiguous: the page puts one gap between groups
        runs = [g for i, g in enumerate(d.group for d in derivations) if i == 0 or derivations[i - 1].group != g]
        assert len(runs) == len(set(runs)), key


def test_derivations_are_the_electrode_differences_on_real_eeg(channels):
    for key in MONTAGES:
        derivations = montage(key)[1]
        values = derivation_matrix(derivations).astype(np.float64) @ channels
        for row, derivation in zip(values, derivations, strict=True):
            first = channels[CHANNELS.index(derivation.first)]
            if derivation.second is None:
                expected = first
            elif derivation.second == "avg":
                expected = first - channels.mean(axis=0)
            else:
                expected = first - channels[CHANNELS.index(derivation.second)]
            np.testing.assert_allclose(row, expected, atol=1e-3, err_msg=f"{key} {derivation.name}")
    average = derivation_matrix(montage("average")[1]).astype(np.float64) @ channels
    assert np.abs(average.sum(axis=0)).max() < 1e-2 < np.abs(average).max()  # sums to 0 over the 19


def test_custom_derivations_parse_and_name_the_bad_entry():
    parsed = parse_derivations("Fp1-F7, cz-avg,O2,T7-T8")
    assert [d.name for d in parsed] == ["Fp1-F7", "Cz-avg", "O2", "T3-T4"]  # any case; 10-10 names
    assert [d.electrodes for d in parsed] == [("Fp1", "F7"), ("Cz",), ("O2",), ("T3", "T4")]
    assert {d.group for d in parsed} == {"custom"}
    for text, index in [("Fp1-F7,Fp1-XX", 1), ("Q1", 0), ("Fp1-F7-T3", 0), ("Cz-Cz", 0), ("Fp1,,O1", 1)]:
        with pytest.raises(MontageError, match=rf"^derivations\[{index}\]: expected 'A-B'.*Fp1 F3"):
            parse_derivations(text)
    for text in ("", ",".join(["Cz"] * 41)):
        with pytest.raises(MontageError, match=r"^derivations: expected 1 to 40"):
            parse_derivations(text)
    with pytest.raises(MontageError, match=r"^montage: expected one of referential, average"):
        montage("laplacian")
