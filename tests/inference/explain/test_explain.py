"""Integrated gradients of the real eegfm model, its attention, the window JSON and the figure."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from captum.attr import IntegratedGradients

from eegfm.contract.schema import CHANNELS
from eegfm.core.config import ConfigError
from eegfm.inference.explain.attention import attention_maps, attention_probabilities
from eegfm.inference.explain.attribution import ExplainConfig, binned, explain_window, integrated_gradients
from eegfm.model.config import EEGFMConfig
from eegfm.model.modeling import EEGFMModel
from eegfm.model.temporal import SelfAttention
from eegfm.serving.explain.plot import plot_explanation
from eegfm.serving.explain.report import explanation_json
from tests.inference.explain.models import HMS_LABELS, ChannelReader, real_window


@pytest.fixture(scope="module")
def tiny() -> EEGFMModel:
    torch.manual_seed(0)
    return EEGFMModel(EEGFMConfig.from_preset("tiny", head="hms6", modalities=[])).eval()


@pytest.fixture(scope="module")
def window(shared_data) -> dict[str, torch.Tensor]:
    return {"eeg": real_window(shared_data), "channel_mask": torch.ones(1, 19)}


def test_the_attributions_add_up_to_each_logits_change_where_even_steps_do_not(tiny, window):
    attributions, error = integrated_gradients(tiny, window, [0, 3], steps=8, internal_batch_size=64)
    assert attributions.shape == (2, 19, 2560) and np.isfinite(attributions).all()
    assert error.max() < 0.01
    # Captum's evenly spread points over the whole path miss where the logits change (its first
    # thousandth, the patch embedding being layer-normalised): that is why the path is cut in decades.
    ig = IntegratedGradients(lambda x: tiny(x).logits)
    _, delta = ig.attribute(window["eeg"], baselines=0.0, target=0, n_steps=32, return_convergence_delta=True)
    with torch.no_grad():
        change = (tiny(window["eeg"]).logits - tiny(torch.zeros_like(window["eeg"])).logits)[0, 0]
    assert abs(delta.item()) / abs(change.item()) > 10 * error[0]


def test_maps_sum_attribution_per_channel_and_second():
    attributions = np.zeros((1, 2, 600))
    attributions[0, 1, 300] = -2.0  # second 1 of channel 1
    attributions[0, 0, 10] = 1.0
    attributions[0, 1, 301] = 0.5
    grid = binned(attributions, 1.0)
    assert grid.shape == (1, 2, 2)  # 600 samples: two whole seconds at 256 Hz, the rest left out
    assert grid[0].tolist() == [[1.0, 0.0], [0.0, -1.5]]
    assert binned(attributions, 1.0, absolute=True)[0].tolist() == [[1.0, 0.0], [0.0, 2.5]]


def test_attention_is_recomputed_exactly_as_the_module_applied_it(tiny, window):
    seen = []
    module = tiny.encoder.blocks[0].temporal
    handle = module.register_forward_hook(lambda m, args, out: seen.append((args, out)))
    with torch.no_grad():
        tiny(**window)
    handle.remove()
    (x, rotary, causal), output = seen[0]
    probabilities = attention_probabilities(module, x, rotary, causal)
    n, length, width = x.shape
    values = module.qkv(x).view(n, length, 3, module.n_heads, module.head_dim).permute(2, 0, 3, 1, 4)[2]
    rebuilt = module.out((probabilities @ values).transpose(1, 2).reshape(n, length, width))
    assert isinstance(module, SelfAttention)
    torch.testing.assert_close(rebuilt, output, rtol=1e-4, atol=1e-5)
    maps = attention_maps(tiny, window)
    assert set(maps) == {"channel_pool", "temporal", "patch"}
    assert maps["channel_pool"].shape == (1, 19, 10) and maps["patch"].shape == (1, 10)
    torch.testing.assert_close(maps["channel_pool"].sum(dim=1), torch.ones(1, 10))  # a softmax over channels
    with torch.no_grad():  # the hooks are gone and changed nothing
        torch.testing.assert_close(tiny(**window).logits, tiny(**window).logits)
    assert not module._forward_hooks


def test_the_window_json_names_canonical_channels_and_the_checks(window, tmp_path):
    config = ExplainConfig(top_k=3, target="logit")  # the raw logit: class c on its own channels only
    explanation = explain_window(ChannelReader(), window, HMS_LABELS, config)
    report = json.loads(json.dumps(explanation_json(explanation, config, start_s=30.0)))
    assert {"start_s", "predicted", "method", "channels", "classes", "checks", "attention"} <= set(report)
    assert report["explanation_reliable"] is True and report["why"] == ""
    assert report["channels"] == list(CHANNELS) and report["method"]["baseline"].startswith("zeros")
    assert set(report["classes"]) == set(HMS_LABELS)
    for c, label in enumerate(HMS_LABELS):
        entry = report["classes"][label]
        assert {t["channel"] for t in entry["top_channels"]} == set(CHANNELS[3 * c : 3 * c + 3])
        assert all(t["contribution"] > 0 for t in entry["top_channels"])  # power read with positive weights
        assert all(30.0 <= t["start_s"] < 40.0 for t in entry["top_seconds"]) and len(entry["top_seconds"]) == 3
        assert 0 <= entry["probability"] <= 1 and entry["completeness_error"] < 0.01
    assert set(report["checks"]) == {"class_specificity", "model_randomisation"}
    png = plot_explanation(explanation, window["eeg"][0].numpy(), "a window", tmp_path / "fig" / "w0.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 50_000


def test_the_figure_has_the_attention_panel_of_a_real_model(tiny, window, tmp_path):
    from eegfm.serving.explain.plot import draw_explanation

    explanation = explain_window(tiny, window, HMS_LABELS, ExplainConfig(steps=2))
    figure = draw_explanation(explanation, window["eeg"][0].numpy(), "a window")
    titles = [axis.get_title() for axis in figure.axes]
    assert "attention: channel pooling weights" in titles
    assert sum(title.endswith("; integrated gradients") for title in titles) == 6
    predicted = HMS_LABELS[explanation.predicted]
    assert titles[0].startswith(f"{predicted} (predicted): p = {explanation.probabilities[explanation.predicted]:.3f}")


def test_a_binary_heads_one_logit_is_explained_as_its_positive_label_without_specificity(window):
    torch.manual_seed(0)
    model = EEGFMModel(EEGFMConfig.from_preset("tiny", head="binary", modalities=[])).eval()
    explanation = explain_window(model, window, ["rest", "task"], ExplainConfig(steps=2))
    assert explanation.labels == ["task"] and explanation.maps.shape == (1, 19, 10)
    with torch.no_grad():
        assert explanation.probabilities[0] == pytest.approx(torch.sigmoid(model(**window).logits).item(), rel=1e-5)
    assert explanation.specificity == {**explanation.specificity, "applicable": False, "passed": True}
    report = explanation_json(explanation, ExplainConfig())
    assert list(report["classes"]) == ["task"] and report["predicted"] == "task"


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("steps", 1, "steps"),
        ("specificity_statistic", "mean", "specificity_statistic"),
        ("specificity_threshold", 1.5, "specificity_threshold"),
        ("randomisation_threshold", "high", "randomisation_threshold"),
    ],
)
def test_the_config_names_a_bad_field(field, value, message):
    with pytest.raises(ConfigError, match=message):
        ExplainConfig(**{field: value})
