"""The peers' masked patch pretraining (``model.patch_pretraining``) on real resting EEG."""

from __future__ import annotations

import pytest
import torch

from eegfm.model.architectures import get_architecture, list_pretrainable
from eegfm.model.patch_pretraining import patch_mask
from eegfm.training.config import load_config
from eegfm.training.finetune import initial_model, trainable

PEERS = ("cbramod", "labram")


def pretraining_model(name: str, **overrides):
    architecture = get_architecture(name)
    torch.manual_seed(0)
    return architecture.pretraining_class(architecture.config_class.from_preset("tiny", **overrides))


def test_every_peer_has_a_pretraining_model():
    assert list_pretrainable() == ["cbramod", "eegfm", "labram"]


def test_the_mask_hides_the_ratio_of_each_windows_tokens_reproducibly():
    mask = patch_mask(8, 19, 10, 0.5, torch.Generator().manual_seed(1))
    assert mask.shape == (8, 19, 10) and (mask.flatten(1).sum(1) == 95).all()
    assert torch.equal(mask, patch_mask(8, 19, 10, 0.5, torch.Generator().manual_seed(1)))
    assert not torch.equal(mask[0], mask[1])  # each window draws its own


@pytest.mark.parametrize("name", PEERS)
def test_a_hidden_patch_never_reaches_the_encoder(name, eegmat_windows):
    """The hidden patches' samples can be anything: the encoder's tokens do not change."""
    model = pretraining_model(name).eval()
    eeg = eegmat_windows[:2].float() / 100.0
    measured = torch.ones(2, 19)
    hidden = patch_mask(2, 19, eeg.shape[-1] // 256, 0.5, torch.Generator().manual_seed(0))
    changed = eeg.clone().unflatten(-1, (-1, 256))
    changed[hidden] = torch.randn_like(changed[hidden])
    with torch.no_grad():
        tokens = model.encoder.tokens(eeg, measured, hidden)
        again = model.encoder.tokens(changed.flatten(-2), measured, hidden)
        shown = model.encoder.tokens(changed.flatten(-2), measured, None)
    torch.testing.assert_close(again, tokens)
    assert not torch.allclose(shown, tokens)


@pytest.mark.parametrize("name", PEERS)
def test_pretraining_steps_on_real_eeg_lower_the_masked_loss(name, eegmat_windows):
    """From 1.0 (the zero predictor), 40 AdamW steps on 16 real 5 s windows learn the targets of
    hidden patches from their context: the patch samples (CBraMod) or their log spectra (LaBraM)."""
    model = pretraining_model(name).train()
    eeg = eegmat_windows[:16].float()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)

    def loss(step: int) -> torch.Tensor:
        return model(eeg, generator=torch.Generator().manual_seed(step)).loss

    with torch.no_grad():
        first = loss(10_000).item()
    for step in range(40):
        optimizer.zero_grad()
        loss(step).backward()
        optimizer.step()
    with torch.no_grad():
        last = loss(10_000).item()
    assert first == pytest.approx(1.0)
    assert last < 0.9 * first, (first, last)


@pytest.mark.parametrize("name", PEERS)
def test_fine_tuning_loads_the_pretrained_encoder_with_a_new_head(name, tmp_path):
    pretrained = pretraining_model(name)
    pretrained.save_pretrained(tmp_path / "encoder")
    cfg = load_config("cpu-tiny", "finetune", [f"architecture={name}", "task=eegmat", "model_overrides={}"])
    model, fresh = initial_model.load_model(tmp_path / "encoder", cfg)
    assert fresh and model.config.id2label == {0: "rest", 1: "task"} and model.config.head == "binary"
    for key, value in pretrained.encoder.state_dict().items():
        torch.testing.assert_close(model.encoder.state_dict()[key], value, msg=key)
    model.save_pretrained(tmp_path / "task")  # a fine-tuned model of the same labels continues, head kept
    again, fresh = initial_model.load_model(tmp_path / "task", cfg)
    assert not fresh and torch.equal(again.head.fc.weight, model.head.fc.weight)
    probe = load_config("cpu-tiny", "finetune", [f"architecture={name}", "task=eegmat", "mode=linear"])
    model, _ = initial_model.load_model(tmp_path / "encoder", probe)
    trainable.configure_mode(model, probe)  # the probe: the pretrained encoder frozen, the head trains
    assert {n.split(".")[0] for n, p in model.named_parameters() if p.requires_grad} == {"head"}
