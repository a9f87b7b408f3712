"""Cross-modal fusion: gates, absence handling, NaN conventions."""

from __future__ import annotations

import pytest
import torch

from eegfm.model import EEGFMConfig, encode_age, encode_sex
from eegfm.model.fusion import CrossModalFusion, sinusoidal_time
from tests.model.conftest import make_batch, make_model


def _fusion() -> CrossModalFusion:
    torch.manual_seed(0)
    fusion = CrossModalFusion(EEGFMConfig.from_preset("tiny")).eval()
    for module in fusion.modules():  # non-trivial weights everywhere (the init zeroes some)
        for parameter in module.parameters(recurse=False):
            torch.nn.init.normal_(parameter, std=0.2)
    return fusion


def test_absent_modalities_contribute_exactly_nothing():
    fusion = _fusion()
    tokens = torch.randn(3, 5, 64)
    nan = float("nan")
    with torch.no_grad():
        nothing, gates_nothing = fusion(tokens)
        placeholders, gates_placeholders = fusion(
            tokens,
            spectrogram=torch.full((3, 400, 8), nan),
            ecg=torch.full((3, 5 * 256), nan),
            age=torch.full((3,), nan),
            sex=torch.full((3,), nan),
        )
        with_age, gates_age = fusion(tokens, age=torch.tensor([30.0, nan, 70.0]))
    assert torch.equal(gates_nothing, torch.zeros(3, 3))
    torch.testing.assert_close(placeholders, nothing, rtol=0, atol=0)
    assert torch.equal(gates_placeholders, torch.zeros(3, 3))
    # the clinical modality counts as present where age is known
    assert gates_age[0, 2] > 0 and gates_age[1, 2] == 0 and gates_age[2, 2] > 0
    torch.testing.assert_close(with_age[1], nothing[1], rtol=0, atol=0)
    assert not torch.allclose(with_age[0], nothing[0])


def test_the_spectrogram_tokenizer_takes_log_power_as_it_comes():
    """The input is already log1p µV²/Hz (the records' values): pooled and projected, not logged again."""
    tokenizer = _fusion().tokenizers["spectrogram"]
    log_power = torch.rand(2, 400, 8) * 8
    with torch.no_grad():
        tokens, present = tokenizer(log_power)
        pooled = log_power.reshape(2, 400, 2, 4).mean(-1).transpose(1, 2)  # spectrogram_pool 4
        t = (torch.arange(2.0) + 0.5 - 1.0) / 8.0
        expected = tokenizer.proj(tokenizer.norm(pooled)) + tokenizer.time(sinusoidal_time(t))
    assert present.tolist() == [1.0, 1.0]
    torch.testing.assert_close(tokens, expected)


def test_isolated_nan_values_in_a_spectrogram_read_as_zero():
    fusion = _fusion()
    tokens = torch.randn(2, 4, 64)
    spectrogram = torch.rand(2, 400, 12) * 10
    holes = spectrogram.clone()
    holes[0, 5:9, 2] = float("nan")  # Kaggle spectrograms contain such gaps
    zeros = spectrogram.clone()
    zeros[0, 5:9, 2] = 0.0
    with torch.no_grad():
        out_holes, gates = fusion(tokens, spectrogram=holes)
        out_zeros, _ = fusion(tokens, spectrogram=zeros)
    assert torch.isfinite(out_holes).all() and (gates[:, 0] > 0).all()
    torch.testing.assert_close(out_holes, out_zeros, rtol=0, atol=0)


def test_each_modality_changes_the_embedding_and_gates_are_learned():
    model = make_model("tiny")
    for module in model.encoder.fusion.modules():
        for name, parameter in module.named_parameters(recurse=False):
            if name in ("null", "sex", "kind"):
                torch.nn.init.normal_(parameter, std=0.5)
    full = make_batch(2, 5, modalities=("spectrogram", "ecg", "clinical"))
    with torch.no_grad():
        base = model(full["eeg"]).pooled
        for name in ("spectrogram", "ecg", "age", "sex"):
            assert not torch.allclose(model(full["eeg"], **{name: full[name]}).pooled, base, atol=1e-6), name
        male = model(full["eeg"], sex=torch.ones(2)).pooled
        female = model(full["eeg"], sex=torch.zeros(2)).pooled
    assert not torch.allclose(male, female, atol=1e-6)
    model.train()
    out = model(**full)
    out.logits.sum().backward()
    assert model.encoder.fusion.gate.spectrogram.weight.grad.abs().sum() > 0


def test_metadata_encoders():
    assert encode_sex(["F", "M", "", None, b"M"]).tolist()[:2] == [0.0, 1.0]
    assert torch.isnan(encode_sex(["", None])).all()
    ages = encode_age([34, None, 61.5])
    assert ages[0] == 34 and torch.isnan(ages[1])
    with pytest.raises(ValueError, match="sex: expected one of 'F', 'M' or ''"):
        encode_sex(["X"])


def test_a_fusion_of_every_modality_loads_into_one_of_a_subset_gate_by_gate():
    full = _fusion()
    config = EEGFMConfig.from_preset("tiny")
    config.modalities = ["spectrogram"]
    subset = CrossModalFusion(config).eval()
    missing, unexpected = subset.load_state_dict(full.state_dict(), strict=False)
    assert not missing and "gate.ecg.weight" in unexpected
    torch.testing.assert_close(subset.gate["spectrogram"].weight, full.gate["spectrogram"].weight)
    tokens, spectrogram = torch.randn(2, 5, 64), torch.rand(2, 400, 8)
    with torch.no_grad():
        fused_full, gates_full = full(tokens, spectrogram=spectrogram)
        fused_subset, gates_subset = subset(tokens, spectrogram=spectrogram)
    torch.testing.assert_close(gates_subset[:, 0], gates_full[:, 0])
    torch.testing.assert_close(fused_subset, fused_full)  # the absent ECG and clinical add nothing


def test_a_checkpoint_with_one_stacked_gate_still_loads():
    full = _fusion()
    state = full.state_dict()
    order = list(full.modalities)
    state["gate.weight"] = torch.cat([state.pop(f"gate.{m}.weight") for m in order])
    state["gate.bias"] = torch.cat([state.pop(f"gate.{m}.bias") for m in order])
    config = EEGFMConfig.from_preset("tiny")
    config.modalities = ["ecg"]
    subset = CrossModalFusion(config)
    subset.load_state_dict(state, strict=False)
    torch.testing.assert_close(subset.gate["ecg"].weight, full.gate["ecg"].weight)
    torch.testing.assert_close(subset.gate["ecg"].bias, full.gate["ecg"].bias)
