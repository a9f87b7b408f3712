"""The contract every preset x head must keep: shapes, backward, save/load,
ONNX parity, variable length, channel subsets, missing channels and modalities, determinism.

Every test runs over every preset x head. The default run (``make test``) covers ``tiny`` with
every head and ``base`` with ``hms6`` (ONNX: ``tiny`` with all five heads in one exported graph,
``base`` with ``hms6``). The slow suite (``make test-all``) adds ``base`` with the other heads,
``large`` (48.9 M parameters) with every head, and one real ``export_onnx`` per preset x head
(15-25 s each for tiny/base on one core, about a minute for large).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from transformers import AutoConfig, AutoModel

from eegfm.contract.channels import CANONICAL_CHANNELS
from eegfm.model import MODALITIES, EEGFMModel, positions_for
from tests.model.conftest import (
    HEADS,
    PRESETS,
    expected_logits_shape,
    make_batch,
    make_model,
    make_targets,
)

ALL = tuple(MODALITIES)
slow = pytest.mark.slow


def _is_default(preset: str, head: str) -> bool:
    return preset == "tiny" or (preset, head) == ("base", "hms6")


PRESET_HEAD = [
    pytest.param(p, h, marks=() if _is_default(p, h) else slow, id=f"{p}-{h}") for p in PRESETS for h in HEADS
]


@pytest.fixture(scope="module")
def models() -> dict:
    """One model per preset x head, built lazily (large is slow to build)."""
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

    # backward: every trainable parameter gets a finite gradient (tests/model/test_ddp.py checks
    # the batches without optional modalities)
    model.train()
    model.zero_grad(set_to_none=True)
    loss = model(**inputs, labels=make_targets(head, 2)).loss
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    without_grad = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert without_grad == []
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
    saved, restored = model.state_dict(), loaded.state_dict()
    assert saved.keys() == restored.keys() and all(torch.equal(saved[k], restored[k]) for k in saved)
    with torch.no_grad():
        again = loaded(**inputs)
    # The same weights, bit for bit; the outputs to float32 rounding: on some CPUs they differ in
    # the last bits, as the math libraries' summation order can depend on where tensors lie.
    torch.testing.assert_close(again.logits, out.logits, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(again.pooled, out.pooled, rtol=1e-5, atol=1e-6)


def test_auto_config_round_trip(tmp_path):
    model = make_model("tiny")
    model.config.save_pretrained(tmp_path)
    config = AutoConfig.from_pretrained(tmp_path)
    assert type(config).__name__ == "EEGFMConfig"
    saved, original = config.to_dict(), model.config.to_dict()
    saved.pop("_name_or_path"), original.pop("_name_or_path")
    assert saved == original


# ------------------------------------------------------------------------------------------------
# ONNX parity
# ------------------------------------------------------------------------------------------------


def _onnx_cases(preset: str) -> list[tuple[str, dict[str, torch.Tensor]]]:
    """Inputs that one exported graph must take: batch, time, channels and modalities vary."""
    nan = float("nan")
    cases = [("batch 1, 5 s, EEG only", make_batch(1, 5))]
    full = make_batch(3, 7, modalities=ALL, n_frames=50, seed=1)  # 50 frames: 2 beyond a token
    full["channel_mask"] = torch.ones(3, 19)
    full["channel_mask"][0, [2, 7]] = 0
    full["ecg"][1] = nan  # absent for one sample only
    full["age"][2] = nan
    cases.append(("batch 3, 7 s, every modality, some absent, channel mask", full))
    order = torch.randperm(19, generator=torch.Generator().manual_seed(12))[:12]
    twelve = make_batch(2, 6, n_chans=12, modalities=("clinical",), seed=2)
    twelve["positions"] = positions_for([CANONICAL_CHANNELS[i] for i in order])
    cases.append(("12 channels in another order", twelve))
    three = make_batch(2, 5, n_chans=3, seed=3)  # fewer electrodes than graph neighbours
    three["positions"] = positions_for(["Cz", "O1", "Fp2"])
    cases.append(("3 channels", three))
    if preset == "tiny":  # the longest window of the contract, plus a remainder under a patch
        long = make_batch(1, 60, modalities=("ecg", "clinical"), seed=4)
        long["eeg"] = torch.cat([long["eeg"], long["eeg"][..., :100]], dim=-1)
        long["ecg"] = torch.cat([long["ecg"], long["ecg"][..., :100]], dim=-1)
        cases.append(("60 s and 100 samples", long))
    return cases


# The default run keeps the tiny every-head parity; the base preset's (60 s) runs with the slow tests.
ONNX_PARAMS = [
    pytest.param("tiny", "all", id="tiny-every-head"),
    pytest.param("base", "hms6", marks=slow, id="base-hms6"),
] + [
    pytest.param(p, h, marks=slow, id=f"{p}-{h}-export_onnx")
    for p in PRESETS
    for h in HEADS
    if (p, h) != ("base", "hms6")
]


@pytest.mark.parametrize("preset,head", ONNX_PARAMS)
def test_onnx_parity_dynamic_batch_channels_and_time(preset, head, onnx_export):
    """ONNX Runtime matches PyTorch within 1e-4 on one exported graph for every input shape."""
    from eegfm.model.export import OnnxEEGFM

    models, path = onnx_export(preset, head)
    runner = OnnxEEGFM(path, threads=2)
    assert runner.n_chans is None  # the channel axis is dynamic
    outputs = {name: "logits" if i == 0 else f"logits_{name}" for i, name in enumerate(models)}
    errors = {name: 0.0 for name in models}
    embedding_error = 0.0
    for description, inputs in _onnx_cases(preset):
        got = runner.session.run(["embedding", *outputs.values()], runner.feed(**inputs))
        for (name, model), logits in zip(models.items(), got[1:]):
            with torch.no_grad():
                reference = model(**inputs)
            error = float(np.abs(logits - reference.logits.numpy()).max())
            assert logits.shape == tuple(reference.logits.shape), (description, name)
            assert error <= 1e-4, f"{description}, {name}: max |logits difference| {error:.2e}"
            errors[name] = max(errors[name], error)
        difference = float(np.abs(got[0] - reference.pooled.numpy()).max())
        assert difference <= 1e-4, f"{description}: max |embedding difference| {difference:.2e}"
        embedding_error = max(embedding_error, difference)
    report = ", ".join(f"{name} {error:.1e}" for name, error in errors.items())
    print(f"\nONNX parity {preset}: max |logits diff| {report}; max |embedding diff| {embedding_error:.1e}")


# ------------------------------------------------------------------------------------------------
# Inputs: variable length, channel subsets and orders, missing channels, missing modalities
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("preset,head", PRESET_HEAD)
def test_variable_length(preset, head, models):
    model = models(preset, head)
    for seconds in (5, 17, 60) if preset == "tiny" else (5, 60):
        inputs = make_batch(1, seconds, modalities=("ecg",))
        with torch.no_grad():
            out = model(**inputs)
        assert out.patch_tokens.shape[1] == seconds
        assert out.logits.shape == expected_logits_shape(head, 1)
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


@pytest.mark.parametrize("preset,head", PRESET_HEAD)
def test_channel_subsets_and_orders(preset, head, models):
    model = models(preset, head)
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
    torch.testing.assert_close(permuted.logits, out.logits, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(permuted.channel_tokens, out.channel_tokens[:, order], atol=1e-5, rtol=1e-4)
    # very small montages still have a graph (fewer neighbours than graph_neighbours)
    with torch.no_grad():
        small = model(inputs["eeg"][:, :2], positions=positions[:, :2])
    assert small.logits.shape == expected_logits_shape(head, 2) and torch.isfinite(small.logits).all()


def test_channel_identity_comes_from_positions():
    model = make_model("tiny")
    inputs = make_batch(1, 5)
    canonical = positions_for(
        [
            "Fp1",
            "F3",
            "C3",
            "P3",
            "F7",
            "T3",
            "T5",
            "O1",
            "Fz",
            "Cz",
            "Pz",
            "Fp2",
            "F4",
            "C4",
            "P4",
            "F8",
            "T4",
            "T6",
            "O2",
        ]
    )
    with torch.no_grad():
        default = model(**inputs).logits
        explicit = model(**inputs, positions=canonical).logits
        # 10-10 aliases name the same electrodes
        aliases = model(
            **inputs,
            positions=positions_for(
                [
                    "Fp1",
                    "F3",
                    "C3",
                    "P3",
                    "F7",
                    "T7",
                    "P7",
                    "O1",
                    "Fz",
                    "Cz",
                    "Pz",
                    "Fp2",
                    "F4",
                    "C4",
                    "P4",
                    "F8",
                    "T8",
                    "P8",
                    "O2",
                ]
            ),
        ).logits
        swapped = model(**inputs, positions=canonical[:, torch.arange(18, -1, -1)]).logits
    torch.testing.assert_close(explicit, default, rtol=0, atol=0)
    torch.testing.assert_close(aliases, default, rtol=0, atol=0)
    assert not torch.allclose(swapped, default, atol=1e-4)
    with pytest.raises(ValueError, match="positions: required for 8 channels"):
        model(torch.zeros(1, 8, 1280))
    with pytest.raises(KeyError, match="'Xy9'"):
        positions_for(["Cz", "Xy9"])


@pytest.mark.parametrize("preset,head", PRESET_HEAD)
def test_missing_channels_are_marked(preset, head, models):
    model = models(preset, head)
    inputs = make_batch(2, 5)
    mask = torch.ones(2, 19)
    mask[0, [2, 7, 15]] = 0  # interpolated or missing in the first sample only
    eeg = inputs["eeg"].clone()
    eeg[0, [2, 7, 15]] = 0.0
    with torch.no_grad():
        flagged = model(eeg, channel_mask=mask)
        unflagged = model(eeg)
        alone = model(eeg[1:], channel_mask=mask[1:])
        nothing_measured = model(eeg, channel_mask=torch.zeros(2, 19))
    assert torch.isfinite(flagged.logits).all() and torch.isfinite(nothing_measured.logits).all()
    # the flag changes the representation of the affected sample only
    assert not torch.allclose(flagged.pooled[0], unflagged.pooled[0], atol=1e-5)
    torch.testing.assert_close(flagged.pooled[1], unflagged.pooled[1], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(alone.pooled[0], flagged.pooled[1], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(alone.logits[0], flagged.logits[1], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("preset,head", PRESET_HEAD)
def test_missing_modalities(preset, head, models):
    model = models(preset, head)
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
    assert not torch.allclose(present.pooled, eeg_only.pooled, atol=1e-5)
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


@pytest.mark.parametrize("preset,head", PRESET_HEAD)
def test_determinism_under_a_seed(preset, head):
    a, b = make_model(preset, head, seed=7), make_model(preset, head, seed=7)
    c = make_model(preset, head, seed=8)
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
