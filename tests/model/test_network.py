"""``model.network``: a saved eegfm model loaded as a plain torch module (what eegfm-predict and
eegfm-serve run) answers exactly what ``EEGFMModel.from_pretrained`` does, and refuses a weights
file that lacks one of the network's weights."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file

from eegfm.core.config import ConfigError
from eegfm.model.architectures import load_model_config, load_model_folder
from eegfm.model.modeling import EEGFMModel
from eegfm.model.network import EEGFMNetwork, load_network
from tests.model.conftest import make_batch, make_model


def _saved(tmp_path, **overrides):
    model = make_model("tiny", **overrides)
    with torch.no_grad():  # weights away from their initial values, so a skipped load shows
        for parameter in model.parameters():
            parameter.add_(0.01 * torch.randn_like(parameter))
    model.save_pretrained(tmp_path / "model")
    return tmp_path / "model"


@pytest.mark.parametrize(
    "overrides",
    [{}, {"adapter_kind": "lora", "head": "binary"}, {"spatial_filters": 4, "spectral_readout": True}],
    ids=["hms6", "lora-binary", "spatial-readout"],
)
def test_the_inference_load_answers_exactly_as_from_pretrained(tmp_path, overrides):
    folder = _saved(tmp_path, **overrides)
    reference = EEGFMModel.from_pretrained(folder, gnn_impl="gather").eval()
    network = load_model_folder(folder, for_inference=True)
    assert type(network) is EEGFMNetwork and network.config.gnn_impl == "gather"
    assert network.config.to_dict() == reference.config.to_dict()
    batch = make_batch(batch=2, seconds=5)
    with torch.no_grad():
        expected = reference.logits_with_samples(**batch)
        got = network.logits_with_samples(**batch)
        assert torch.equal(network(**batch).logits, reference(**batch).logits)
    assert all(torch.equal(a, b) for a, b in zip(got, expected))
    assert torch.equal(network.predict(**batch), reference.predict(**batch))
    assert not network.training


def test_the_config_of_a_saved_eegfm_model_is_its_config_json(tmp_path):
    folder = _saved(tmp_path)
    assert load_model_config(folder).to_dict() == EEGFMModel.from_pretrained(folder).config.to_dict() | {
        "_name_or_path": ""
    }


def test_a_weights_file_that_misses_a_weight_is_refused_and_an_extra_tensor_ignored(tmp_path, caplog):
    folder = _saved(tmp_path)
    weights = load_file(folder / "model.safetensors")
    expected = load_network(folder)
    save_file({**weights, "leftover": torch.zeros(3)}, folder / "model.safetensors")
    batch = make_batch(batch=1, seconds=2)
    with torch.no_grad():
        # the same weights at other offsets in the file: the kernels may round differently
        assert torch.allclose(load_network(folder)(**batch).logits, expected(**batch).logits, atol=1e-6)
    assert "leftover" in caplog.text
    missing = next(name for name in weights if name.startswith("head."))
    save_file({name: value for name, value in weights.items() if name != missing}, folder / "model.safetensors")
    with pytest.raises(ConfigError, match=f"no weights for {missing}"):
        load_network(folder)
