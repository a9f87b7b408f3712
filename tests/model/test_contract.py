"""The contract every preset x head must keep (design §5.10): shapes, backward, save/load,
ONNX parity, variable length, channel subsets, missing channels and modalities, determinism.

``tiny`` runs every check with every head; ``base`` and ``large`` run them at batch 2 x 5 s.
Exporting ``large`` to ONNX (~30 s) and building it three times for the determinism check are in
the slow suite; ``tiny`` and ``base`` cover those code paths in the default run.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from transformers import AutoConfig, AutoModel

from model import EEGFMModel, MODALITIES, positions_for
from tests.model.conftest import (
    HEADS,
    PRESETS,
    expected_logits_shape,
    make_batch,
    make_model,
    make_targets,
)

ALL = tuple(MODALITIES)
PRESET_HEAD = [(p, h) for p in PRESETS for h in HEADS]


@pytest.fixture(scope="module")
def models() -> dict:
    """One model per preset x head, built lazily (large is slow to build 5 times)."""
    cache: dict = {}

    def get(preset: str, head: str) -> EEGFMModel:
        if (preset, head) not in cache:
            cache[(preset, head)] = make_model(preset, head)
        return cache[(preset, head)]

    return get


@pytest.mark.parametrize("preset,head", PRESET_HEAD)
def test_forward_shapes_backward_and_save_load(preset, head, models, tmp_path):
    model = models(preset, head)
    width = model.config.hidden_size
    inputs = make_batch(2, 5, modalities=ALL)
    model.eval()
    with torch.no_grad():
        out = model(**inputs)
    assert out.logits.shape == expected_logits_shape(head, 2)
    assert out.pooled.shape == (2, width)
    assert out.patch_tokens.shape == (2, 5, width)
    assert out.channel_tokens.shape == (2, 19, 5, width)
    assert out.modality_gates.shape == (2, 3) and (out.modality_gates > 0).all()
    assert torch.isfinite(out.logits).all()

    # backward: the loss reaches every parameter that this input uses
    model.train()
    model.zero_grad(set_to_none=True)
    loss = model(**inputs, labels=make_targets(head, 2)).loss
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    without_grad = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    # the sample-mask projection is only used by masked pretraining
    assert without_grad == ["encoder.tokenizer.patches.masked.weight"]
    assert model.encoder.blocks[0].spatial.edge_logits[0].weight.grad.abs().sum() > 0
    model.zero_grad(set_to_none=True)
    model.eval()

    # save / load: identical outputs, config.json with labels, safetensors weights
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model_type"] == "eegfm" and config["head"] == head
    assert {int(k): v for k, v in config["id2label"].items()} == model.config.id2label
    assert config["label2id"] == {v: k for k, v in model.config.id2label.items()}
    assert (tmp_path / "model.safetensors").exists()
    loaded = AutoModel.from_pretrained(tmp_path)
    assert isinstance(loaded, EEGFMModel)
    loaded.eval()
    with torch.no_grad():
        again = loaded(**inputs)
    torch.testing.assert_close(again.logits, out.logits, rtol=0, atol=0)
    torch.testing.assert_close(again.pooled, out.pooled, rtol=0, atol=0)


def test_auto_config_round_trip(tmp_path):
    model = make_model("tiny")
    model.config.save_pretrained(tmp_path)
    config = AutoConfig.from_pretrained(tmp_path)
    assert type(config).__name__ == "EEGFMConfig"
    saved, original = config.to_dict(), model.config.to_dict()
    saved.pop("_name_or_path"), original.pop("_name_or_path")
    assert saved == original


@pytest.mark.parametrize("preset", ["tiny", "base", pytest.param("large", marks=pytest.mark.slow)])
def test_onnx_parity_dynamic_batch_and_time(preset, onnx_export):
    from model.export import OnnxEEGFM

    model, path = onnx_export(preset)
    runner = OnnxEEGFM(path, threads=2)
    cases = [
        make_batch(1, 5, modalities=()),  # no optional modality
        make_batch(3, 7, modalities=ALL, n_frames=50, seed=1),  # 50 frames: 2 beyond a token
    ]
    if preset == "tiny":  # longer inputs and a remainder only where it is cheap
        inputs = make_batch(2, 30, modalities=("ecg", "clinical"), seed=2)
        inputs["eeg"] = torch.cat([inputs["eeg"], inputs["eeg"][..., :100]], dim=-1)
        inputs["ecg"] = torch.cat([inputs["ecg"], inputs["ecg"][..., :100]], dim=-1)
        inputs["age"][0] = float("nan")
        cases.append(inputs)
    for inputs in cases:
        with torch.no_grad():
            reference = model(**inputs)
        logits, embedding = runner(**inputs)
        np.testing.assert_allclose(logits, reference.logits.numpy(), atol=1e-4, rtol=0)
        np.testing.assert_allclose(embedding, reference.pooled.numpy(), atol=1e-4, rtol=0)


@pytest.mark.parametrize("preset", PRESETS)
def test_variable_length(preset, models):
    model = models(preset, "hms6")
    lengths = (5, 17, 60) if preset == "tiny" else (5, 9)
    for seconds in lengths:
        inputs = make_batch(1, seconds, modalities=("ecg",))
        with torch.no_grad():
            out = model(**inputs)
        assert out.patch_tokens.shape[1] == seconds
        assert torch.isfinite(out.logits).all()


def test_remainder_shorter_than_a_patch_is_ignored():
    model = make_model("tiny")
    inputs = make_batch(2, 5 + 200 / 256, modalities=("ecg",))  # 5 s and 200 samples
    assert inputs["eeg"].shape[-1] == 5 * 256 + 200
    trimmed = {k: v[..., : 5 * 256] for k, v in inputs.items()}
    with torch.no_grad():
        torch.testing.assert_close(model(**inputs).logits, model(**trimmed).logits, rtol=0, atol=0)
    with pytest.raises(ValueError, match="eeg: expected at least one patch of 256 samples"):
        model(torch.zeros(1, 19, 255))


@pytest.mark.parametrize("preset", PRESETS)
def test_channel_subsets_and_orders(preset, models):
    model = models(preset, "hms6")
    # a 10-10 subset with electrodes outside the canonical 19 (eegmmi-style spelling)
    names = ["Fc5.", "C3", "Cp1", "Fz", "Pz", "O2", "T8", "Af4"]
    positions = positions_for(names)
    inputs = make_batch(2, 5, n_chans=len(names))
    with torch.no_grad():
        out = model(inputs["eeg"], positions=positions)
        # permuting channels together with their positions does not change the recording
        order = torch.randperm(len(names))
        permuted = model(inputs["eeg"][:, order], positions=positions[:, order])
    assert out.channel_tokens.shape[1] == len(names)
    torch.testing.assert_close(permuted.pooled, out.pooled, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(permuted.channel_tokens, out.channel_tokens[:, order], atol=1e-5, rtol=1e-4)
    # very small montages still have a graph (fewer neighbours than graph_neighbours)
    with torch.no_grad():
        small = model(inputs["eeg"][:, :3], positions=positions[:, :3])
    assert torch.isfinite(small.logits).all()


def test_channel_identity_comes_from_positions():
    model = make_model("tiny")
    inputs = make_batch(1, 5)
    canonical = positions_for(["Fp1", "F3", "C3", "P3", "F7", "T3", "T5", "O1", "Fz", "Cz", "Pz",
                               "Fp2", "F4", "C4", "P4", "F8", "T4", "T6", "O2"])
    with torch.no_grad():
        default = model(**inputs).logits
        explicit = model(**inputs, positions=canonical).logits
        # 10-10 aliases name the same electrodes
        aliases = model(**inputs, positions=positions_for(
            ["Fp1", "F3", "C3", "P3", "F7", "T7", "P7", "O1", "Fz", "Cz", "Pz",
             "Fp2", "F4", "C4", "P4", "F8", "T8", "P8", "O2"])).logits
        swapped = model(**inputs, positions=canonical[:, torch.arange(18, -1, -1)]).logits
    torch.testing.assert_close(explicit, default, rtol=0, atol=0)
    torch.testing.assert_close(aliases, default, rtol=0, atol=0)
    assert not torch.allclose(swapped, default, atol=1e-4)
    with pytest.raises(ValueError, match="positions: required for 8 channels"):
        model(torch.zeros(1, 8, 1280))
    with pytest.raises(KeyError, match="'Xy9'"):
        positions_for(["Cz", "Xy9"])


@pytest.mark.parametrize("preset", PRESETS)
def test_missing_channels_are_marked(preset, models):
    model = models(preset, "hms6")
    inputs = make_batch(2, 5)
    mask = torch.ones(2, 19)
    mask[0, [2, 7, 15]] = 0  # interpolated or missing in the first sample only
    eeg = inputs["eeg"].clone()
    eeg[0, [2, 7, 15]] = 0.0
    with torch.no_grad():
        flagged = model(eeg, channel_mask=mask)
        unflagged = model(eeg)
        alone = model(eeg[1:], channel_mask=mask[1:])
    assert torch.isfinite(flagged.logits).all()
    # the flag changes the representation of the affected sample only
    assert not torch.allclose(flagged.pooled[0], unflagged.pooled[0], atol=1e-5)
    torch.testing.assert_close(flagged.pooled[1], unflagged.pooled[1], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(alone.pooled[0], flagged.pooled[1], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("preset", PRESETS)
def test_missing_modalities(preset, models):
    model = models(preset, "hms6")
    full = make_batch(2, 5, modalities=ALL)
    nan = float("nan")
    with torch.no_grad():
        eeg_only = model(full["eeg"])
        present = model(**full)
        # NaN placeholders (the ONNX convention) equal omitted arguments, sample by sample
        placeholders = model(
            full["eeg"],
            spectrogram=torch.full_like(full["spectrogram"], nan),
            ecg=torch.full_like(full["ecg"], nan),
            age=torch.full((2,), nan),
            sex=torch.full((2,), nan),
        )
        mixed_ecg = full["ecg"].clone()
        mixed_ecg[1] = nan
        mixed = model(full["eeg"], ecg=mixed_ecg)
        only_first = model(full["eeg"][:1], ecg=full["ecg"][:1])
    torch.testing.assert_close(placeholders.logits, eeg_only.logits, rtol=0, atol=1e-6)
    assert (placeholders.modality_gates == 0).all() and (eeg_only.modality_gates == 0).all()
    assert not torch.allclose(present.logits, eeg_only.logits, atol=1e-5)
    torch.testing.assert_close(mixed.logits[1], eeg_only.logits[1], rtol=0, atol=1e-6)
    torch.testing.assert_close(mixed.logits[0], only_first.logits[0], atol=1e-5, rtol=1e-4)
    assert mixed.modality_gates[0, 1] > 0 and mixed.modality_gates[1, 1] == 0


def test_modalities_can_be_configured_out():
    model = make_model("tiny", modalities=["clinical"])
    assert list(model.encoder.fusion.tokenizers) == ["clinical"]
    with pytest.raises(ValueError, match="ecg: this model was configured without the 'ecg' modality"):
        model(torch.zeros(1, 19, 1280), ecg=torch.zeros(1, 1280))
    none = make_model("tiny", modalities=[])
    with torch.no_grad():
        out = none(torch.zeros(1, 19, 1280))
    assert none.encoder.fusion is None and out.modality_gates is None


@pytest.mark.parametrize("preset", ["tiny", "base", pytest.param("large", marks=pytest.mark.slow)])
def test_determinism_under_a_seed(preset):
    a, b = make_model(preset, seed=7), make_model(preset, seed=7)
    c = make_model(preset, seed=8)
    for (name, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters()):
        assert torch.equal(pa, pb), name
    assert not torch.equal(a.encoder.blocks[0].temporal.qkv.weight, c.encoder.blocks[0].temporal.qkv.weight)
    inputs = make_batch(2, 5, modalities=ALL)
    a.train(), b.train()  # dropout active: the seed must fix it too
    torch.manual_seed(3)
    out_a = a(**inputs).logits
    torch.manual_seed(3)
    out_b = b(**inputs).logits
    torch.testing.assert_close(out_a, out_b, rtol=0, atol=0)


def test_predict_and_float16_input():
    model = make_model("tiny")
    inputs = make_batch(2, 5)
    model.train()
    probabilities = model.predict(inputs["eeg"].half())  # the data contract stores float16
    assert probabilities.shape == (2, 6)
    torch.testing.assert_close(probabilities.sum(-1), torch.ones(2))
    assert model.training  # predict() restores the mode it found
    with torch.no_grad():
        model.eval()
        torch.testing.assert_close(model(inputs["eeg"].half().float()).logits.softmax(-1), probabilities)
