"""ONNX export details beyond the parity contract (tests/model/test_contract.py)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from model import positions_for
from model.export import OnnxEEGFM, export_onnx
from tests.model.conftest import make_batch, make_model


def test_exported_graph_has_dynamic_batch_and_time_and_metadata(onnx_export):
    model, path = onnx_export("tiny")
    graph = onnx.load(str(path), load_external_data=False).graph
    shapes = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in graph.input}
    assert list(shapes) == ["eeg", "positions", "channel_mask", "spectrogram", "ecg", "age", "sex"]
    batch, chans, time = shapes["eeg"]
    assert isinstance(batch, str) and chans == 19 and isinstance(time, str)
    assert shapes["ecg"] == [batch, time] and shapes["positions"] == [batch, 19, 3]
    assert isinstance(shapes["spectrogram"][2], str)
    assert [o.name for o in graph.output] == ["logits", "embedding"]
    runner = OnnxEEGFM(path)
    assert runner.id2label == model.config.id2label and runner.patch_size == 256
    # the model is handed back as it was found
    assert model.config.gnn_impl == "pyg" and not model.training


def test_runner_accepts_channel_subsets_of_the_exported_size(onnx_export):
    model, path = onnx_export("tiny")
    runner = OnnxEEGFM(path)
    inputs = make_batch(2, 5)
    mask = torch.ones(2, 19)
    mask[1, :4] = 0
    with torch.no_grad():
        reference = model(inputs["eeg"], channel_mask=mask)
    logits, embedding = runner(inputs["eeg"], channel_mask=mask)
    np.testing.assert_allclose(logits, reference.logits.numpy(), atol=1e-4, rtol=0)


@pytest.mark.slow
def test_torch_geometric_path_exports_too(tmp_path):
    model = make_model("tiny", seed=4)
    path = export_onnx(model, tmp_path / "pyg.onnx", gnn_impl="pyg")
    assert any(node.op_type.startswith("Scatter") for node in onnx.load(str(path)).graph.node)
    inputs = make_batch(3, 6, modalities=("ecg",), seed=4)
    with torch.no_grad():
        reference = model(**inputs)
    logits, _ = OnnxEEGFM(path)(**inputs)
    np.testing.assert_allclose(logits, reference.logits.numpy(), atol=1e-4, rtol=0)


@pytest.mark.slow
def test_adapted_and_causal_models_export(tmp_path):
    model = make_model("tiny", seed=5, causal=True, modalities=["clinical"])
    model.add_adapters("lora", rank=4)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_b" in name:
                parameter.normal_(std=0.05)
    path = export_onnx(model, tmp_path / "lora.onnx")
    inputs = make_batch(2, 8, modalities=("clinical",), seed=5)
    with torch.no_grad():
        reference = model(**inputs)
    logits, embedding = OnnxEEGFM(path)(**inputs)
    np.testing.assert_allclose(embedding, reference.pooled.numpy(), atol=1e-4, rtol=0)


@pytest.mark.slow
def test_montage_subset_export_without_modalities(tmp_path):
    model = make_model("tiny", seed=6, modalities=[])
    path = export_onnx(model, tmp_path / "eight.onnx", n_chans=8)
    runner = OnnxEEGFM(path)
    assert runner.input_names == ["eeg", "positions", "channel_mask"]
    positions = positions_for(["Fc5", "C3", "Cp1", "Fz", "Pz", "O2", "T8", "Af4"])
    inputs = make_batch(3, 7, n_chans=8, seed=6)
    with torch.no_grad():
        reference = model(inputs["eeg"], positions=positions)
    logits, _ = runner(inputs["eeg"], positions=positions)
    np.testing.assert_allclose(logits, reference.logits.numpy(), atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match="positions: required for 8 channels"):
        runner(inputs["eeg"])
