"""The class-specificity and model-randomisation checks on models whose answer is known: they fire
on a class-blind model and on weight-independent attributions, and stay quiet where the classes
read different channels. Inputs are real resting EEG (eegmat)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from eegfm.inference.explain.attribution import ExplainConfig, explain_window
from eegfm.inference.explain.checks import class_specificity, randomised_copy, rank_correlation, verdict
from tests.inference.explain.models import HMS_LABELS, ChannelReader, ClassBlind, InputTimesConstant, real_window


@pytest.fixture(scope="module")
def window(shared_data) -> dict[str, torch.Tensor]:
    return {"eeg": real_window(shared_data), "channel_mask": torch.ones(1, 19)}


def test_rank_correlation_reads_rankings_and_names_constant_maps():
    a = np.arange(12.0).reshape(3, 4)
    assert rank_correlation(a, a**3) == pytest.approx(1.0)  # same ranking, other values
    assert rank_correlation(a, -a) == pytest.approx(-1.0)
    assert rank_correlation(np.zeros(5), np.zeros(5)) == 1.0  # two blank maps: identical
    assert rank_correlation(np.zeros(5), np.arange(5.0)) == 0.0
    with pytest.raises(ValueError, match="different sizes"):
        rank_correlation(np.zeros(4), np.zeros(5))


def test_the_median_tolerates_one_class_sharing_the_evidence_and_the_max_does_not():
    rng = np.random.default_rng(0)
    maps = rng.random((6, 19, 10))
    maps[1] = maps[0] * 2  # seizure and LPD read the same place
    median = class_specificity(maps, 0, HMS_LABELS, threshold=0.9, statistic="median")
    strict = class_specificity(maps, 0, HMS_LABELS, threshold=0.9, statistic="max")
    assert median["correlations"]["LPD"] == pytest.approx(1.0) and median["passed"]
    assert strict["value"] == pytest.approx(1.0) and not strict["passed"]
    assert class_specificity(maps[:1], 0, HMS_LABELS[:1], threshold=0.9)["applicable"] is False
    with pytest.raises(ValueError, match="statistic"):
        class_specificity(maps, 0, HMS_LABELS, threshold=0.9, statistic="mean")


def test_specificity_fires_on_a_class_blind_model(window):
    explanation = explain_window(ClassBlind(), window, HMS_LABELS, ExplainConfig())
    spec = explanation.specificity
    # logits a_c * g(x) + b_c: every class's map is a_c times one map (rank correlation +-1)
    assert min(abs(v) for v in spec["correlations"].values()) > 0.999 and not spec["passed"]
    assert sorted(set(np.sign(list(spec["correlations"].values())))) == [-1, 1]  # a_c of both signs
    assert not explanation.reliable
    assert f"class specificity: median |rank correlation| with the other classes' maps {spec['value']:.3f} > 0.9" in (
        explanation.why
    )


def test_specificity_stays_quiet_when_the_classes_read_different_channels(window):
    explanation = explain_window(ChannelReader(), window, HMS_LABELS, ExplainConfig())
    assert explanation.specificity["passed"] and explanation.specificity["value"] < 0.5  # measured 0.22
    for c in range(6):  # the centred logit: for the class's own channels, against the other classes'
        per_channel = explanation.maps[c].sum(axis=1)
        own = np.zeros(19, dtype=bool)
        own[3 * c : 3 * c + 3] = True
        assert (per_channel[own] > 0).all() and (per_channel[~own][:-1] < 0).all() and per_channel[-1] == 0
    assert explanation.reliable and explanation.why == ""
    raw = explain_window(ChannelReader(), window, HMS_LABELS, ExplainConfig(target="logit"))
    for c in range(6):  # the raw logit: on its own channels only
        assert set(np.flatnonzero(raw.maps[c].sum(axis=1))) == {3 * c, 3 * c + 1, 3 * c + 2}
    assert raw.specificity["value"] < 0.5  # measured 0.19


def test_randomisation_passes_weight_dependent_maps_and_fails_weight_independent_ones(window):
    reader = explain_window(ChannelReader(), window, HMS_LABELS, ExplainConfig())
    assert reader.randomisation["passed"] and reader.randomisation["correlation"] < 0.5  # measured 0.43
    constant = explain_window(InputTimesConstant(), window, HMS_LABELS, ExplainConfig())
    # attribution s_c * x / N: redrawing s_c rescales the map, its ranking stays
    assert constant.randomisation["correlation"] == pytest.approx(1.0) and not constant.randomisation["passed"]
    assert "model randomisation: |rank correlation| with the randomised model's map 1.000 > 0.5" in constant.why


def test_the_randomised_copy_keeps_each_tensors_scale_and_leaves_the_model_alone():
    model = ClassBlind()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    clone = randomised_copy(model, seed=1)
    for name, parameter in clone.named_parameters():
        assert torch.equal(dict(model.named_parameters())[name], before[name])
        original = before[name]
        if original.numel() > 100 and original.std() > 0:
            assert not torch.allclose(parameter, original)
            assert parameter.std().item() == pytest.approx(original.std().item(), rel=0.2)
            standard_error = original.std().item() / original.numel() ** 0.5
            assert parameter.mean().item() == pytest.approx(original.mean().item(), abs=5 * standard_error), name
    again = randomised_copy(model, seed=1)
    assert all(torch.equal(a, b) for a, b in zip(clone.parameters(), again.parameters(), strict=True))


def test_a_blank_map_is_never_reliable():
    passed = {"passed": True}
    reliable, why = verdict(passed, passed, np.zeros((19, 10)))
    assert not reliable and "constant" in why
