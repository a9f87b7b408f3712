"""Site profiles: validation, YAML round trip, naming conventions that harmonize back."""

import pytest

from eegfm.contract.channels import CANONICAL_CHANNELS, auxiliary_kind, canonical_name
from eegfm.core.config import ConfigError
from eegfm.simulate.sites import (
    AUX_KINDS,
    CHANNEL_STYLES,
    SiteProfile,
    archetypes,
    aux_label,
    default_sites,
    eeg_label,
)


def test_archetypes_differ_in_what_makes_hospitals_differ():
    sites = archetypes()
    assert len(sites) == 4
    for field in (
        "channel_style",
        "sfreq",
        "line_freq",
        "physical_dimension",
        "reference",
        "missing_channels",
        "edf_plus",
    ):
        assert len({repr(getattr(s, field)) for s in sites}) > 1, field
    emu, icu = sites[0], sites[1]
    assert emu.prevalence()[0] == max(emu.prevalence())  # seizure-rich monitoring unit
    assert icu.prevalence()[4] > icu.prevalence()[0]  # GRDA-rich ICU


@pytest.mark.parametrize("style", CHANNEL_STYLES)
@pytest.mark.parametrize("ten_ten", [False, True])
@pytest.mark.parametrize("upper", [False, True])
def test_every_label_style_maps_back_to_the_canonical_channel(style, ten_ten, upper):
    for channel in CANONICAL_CHANNELS:
        assert canonical_name(eeg_label(channel, style, ten_ten=ten_ten, upper=upper)) == channel
    for kind in AUX_KINDS:
        label = aux_label(kind, style, upper=upper)
        assert canonical_name(label) is None
        assert auxiliary_kind(label) == {"photic": "stim"}.get(kind, kind)


def test_vendor_styles_look_like_the_real_exports():
    assert eeg_label("Fp1", "tuh") == "EEG FP1-REF"
    assert eeg_label("T3", "tuh", ten_ten=True) == "EEG T7-REF"
    assert eeg_label("Cz", "physionet") == "Cz.."
    assert eeg_label("T5", "physionet", ten_ten=True) == "P7.."
    assert eeg_label("Fp2", "nihon_kohden") == "EEG Fp2-Ref"
    assert eeg_label("Fp1", "plain", upper=True) == "FP1"


def test_profiles_round_trip_through_yaml(tmp_path):
    for site in archetypes():
        path = tmp_path / f"{site.name}.yaml"
        path.write_text(site.to_yaml())
        assert SiteProfile.from_yaml(path) == site


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"sfreq": 300}, "sfreq: expected one of"),
        ({"line_freq": 55.0}, "line_freq: expected one of 50.0, 60.0"),
        ({"channel_style": "bci"}, "channel_style: expected one of 'tuh'"),
        ({"missing_channels": ("Fp1", "Xx")}, "missing_channels: expected canonical names"),
        ({"missing_channels": ("Fp1", "Fp2", "F3", "F4", "C3")}, "at most 4"),
        ({"class_prevalence": {"Seizure": 1.0, "Spike": 1.0}}, r"class_prevalence: expected keys"),
        ({"class_prevalence": {"Seizure": 0.0}}, "must not all be 0"),
        ({"aux_channels": ("ecg", "resp")}, r"aux_channels\[\]: expected one of"),
        ({"name": "my site"}, "name: expected letters"),
        ({"sfreq": 128, "line_freq": 60.0}, "below 0.45 \\* sfreq"),
    ],
)
def test_bad_profiles_name_the_field_and_allowed_values(change, message):
    with pytest.raises(ConfigError, match=message):
        SiteProfile(**change)


def test_more_sites_cycle_archetypes_with_seeded_perturbations():
    sites = default_sites(9, seed=5)
    names = [s.name for s in sites]
    assert len(set(names)) == 9 and names[4] == "emu2" and names[8] == "emu3"
    assert sites[4].channel_style == sites[0].channel_style
    assert default_sites(9, seed=5) == sites
    assert default_sites(9, seed=6)[4] != sites[4]
    with pytest.raises(ConfigError, match="n_sites: expected an integer >= 1; got 0"):
        default_sites(0)
