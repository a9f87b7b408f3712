"""ONNX export details beyond the parity contract (tests/model/test_contract.py)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from eegfm.contract.channels import CANONICAL_CHANNELS
from eegfm.model import positions_for
from eegfm.model.band_powers import head_spectral_width
from eegfm.model.export import OnnxEEGFM, export_onnx
from tests.model.conftest import make_batch, make_model


def test_exported_graph_has_dynamic_batch_channels_and_time_and_metadata(onnx_export):
    models, path = onnx_export("tiny", "all")
    model = models["hms6"]
    graph = onnx.load(str(path), load_external_data=False).graph
    shapes = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in graph.input}
    assert list(shapes) == ["eeg", "positions", "channel_mask", "spectrogram", "ecg", "age", "sex"]
    batch, chans, time = shapes["eeg"]
    assert all(isinstance(d, str) for d in (batch, chans, time)) and len({batch, chans, time}) == 3
    assert shapes["ecg"] == [batch, time] and shapes["positions"] == [batch, chans, 3]
    assert shapes["channel_mask"] == [batch, chans]
    assert isinstance(shapes["spectrogram"][2], str)
    assert [o.name for o in graph.output][:2] == ["logits", "embedding"]
    runner = OnnxEEGFM(path)
    assert runner.id2label == model.config.id2label and runner.patch_size == 256 and runner.n_chans is None
    # the models are handed back as they were found
    assert all(m.config.gnn_impl == "pyg" and not m.training for m in models.values())


def test_runner_fills_defaults_and_names_bad_inputs(onnx_export):
    models, path = onnx_export("tiny", "all")
    model = models["hms6"]
    runner = OnnxEEGFM(path)
    inputs = make_batch(2, 5)
    mask = torch.ones(19)  # one mask for the whole batch, tiled like positions
    mask[:4] = 0
    with torch.no_grad():
        reference = model(inputs["eeg"], channel_mask=mask)
    logits, embedding = runner(inputs["eeg"], channel_mask=mask)
    np.testing.assert_allclose(logits, reference.logits.numpy(), atol=1e-4, rtol=0)
    np.testing.assert_allclose(embedding, reference.pooled.numpy(), atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match="eeg: expected at least one patch of 256 samples; got n_times=200"):
        runner(np.zeros((1, 19, 200), np.float32))
    with pytest.raises(ValueError, match="eeg: expected an array"):
        runner(np.zeros((19, 2560), np.float32))
    with pytest.raises(ValueError, match="positions: required for 8 channels"):
        runner(np.zeros((1, 8, 2560), np.float32))
    with pytest.raises(ValueError, match=r"ecg: expected shape \(2, 1280\) to match eeg; got \(2, 1000\)"):
        runner(inputs["eeg"], ecg=np.zeros((2, 1000), np.float32))
    with pytest.raises(ValueError, match=r"spectrogram: expected shape \(2, 400, n_frames >= 4\); got \(2, 400, 3\)"):
        runner(inputs["eeg"], spectrogram=np.zeros((2, 400, 3), np.float32))


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


def test_the_covariance_branch_exports_with_the_same_outputs(tmp_path):
    """Its matrix logarithm is matrix products alone (``model.spd``): ONNX has no eigendecomposition.
    Any channel count, and an absent channel, as in PyTorch."""
    model = make_model("tiny", "binary", seed=3, covariance_channels=6, modalities=[])
    torch.nn.init.normal_(model.encoder.covariance_branch.proj.weight, std=0.05)  # fine-tuned: it moves the outputs
    runner = OnnxEEGFM(export_onnx(model, tmp_path / "covariance.onnx"), threads=1)
    for n_chans, seconds in ((19, 5), (8, 7)):
        case = make_batch(2, seconds, n_chans=n_chans, seed=n_chans)
        positions = positions_for(list(CANONICAL_CHANNELS)[:n_chans])
        mask = torch.ones(2, n_chans)
        mask[0, 1] = 0.0
        logits, embedding = runner(case["eeg"], positions=positions, channel_mask=mask)
        with torch.no_grad():
            expected = model(case["eeg"], positions=positions, channel_mask=mask)
        np.testing.assert_allclose(logits, expected.logits.numpy(), atol=1e-4, rtol=0)
        np.testing.assert_allclose(embedding, expected.pooled.numpy(), atol=1e-4, rtol=0)


def test_export_rejects_a_bad_channel_count(tmp_path):
    model = make_model("tiny")
    with pytest.raises(ValueError, match=r"n_chans: expected None \(dynamic\) or an integer in \[2, 512\]; got 1"):
        export_onnx(model, tmp_path / "x.onnx", n_chans=1)


@pytest.mark.slow
def test_fixed_channel_export_without_modalities(tmp_path):
    model = make_model("tiny", seed=6, modalities=[])
    path = export_onnx(model, tmp_path / "eight.onnx", n_chans=8)
    runner = OnnxEEGFM(path)
    assert runner.input_names == ["eeg", "positions", "channel_mask"] and runner.n_chans == 8
    positions = positions_for(["Fc5", "C3", "Cp1", "Fz", "Pz", "O2", "T8", "Af4"])
    inputs = make_batch(3, 7, n_chans=8, seed=6)
    with torch.no_grad():
        reference = model(inputs["eeg"], positions=positions)
    logits, _ = runner(inputs["eeg"], positions=positions)
    np.testing.assert_allclose(logits, reference.logits.numpy(), atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match="positions: required for 8 channels"):
        runner(inputs["eeg"])
    with pytest.raises(ValueError, match="eeg: this graph was exported for 8 channels; got 19"):
        runner(make_batch(1, 5)["eeg"])


def test_onnx_and_torch_agree_on_a_real_batch_with_spectrograms(onnx_export, shared_data):
    """The real HMS EEG's window as the pipeline writes it, with a Kaggle spectrogram (300 frames),
    a computed one (25) and none, collated by the loader and fed to both runtimes."""
    import dataclasses

    from eegfm.contract.schema import encode_example
    from eegfm.model.batch import collate_records
    from eegfm.model.inputs import inputs_for_modalities
    from eegfm.pipelines.datasets import LabeledWindow, SourceItem
    from eegfm.pipelines.job.process import process_recording
    from eegfm.pipelines.job.process_io import PreprocessConfig, Window

    models, path = onnx_export("tiny", "all")
    model = models["hms6"]
    assert "spectrogram" in model.config.modalities
    item = SourceItem(
        path=str(shared_data / "hms" / "train_eegs" / "1000913311.parquet"),
        dataset="hms",
        site="hms",
        task="hms6",
        windows=(LabeledWindow(0.0, 50.0, 1, (0.0, 3.0, 1.0, 0.0, 0.0, 0.0), "hms6", spectrogram_offset_s=0.0),),
        spectrogram_path=str(shared_data / "hms" / "train_spectrograms" / "1000189855.parquet"),
    )
    raws = []
    for variant, config in (
        (item, PreprocessConfig()),
        (dataclasses.replace(item, spectrogram_path=""), PreprocessConfig()),
        (item, PreprocessConfig(spectrogram=False)),
    ):
        events = process_recording(variant, b"k" * 32, config, config.config_hash())
        raws += [encode_example(e.record) for e in events if isinstance(e, Window)]
    batch = collate_records(raws)
    inputs = inputs_for_modalities(batch, model.config.modalities, spectrogram_pool=model.config.spectrogram_pool)
    assert inputs["spectrogram"].shape == (3, 400, 25) and torch.isnan(inputs["spectrogram"][2]).all()
    with torch.no_grad():
        reference = model(**inputs)
        without = model(**{k: v for k, v in inputs.items() if k != "spectrogram"})
    assert not torch.allclose(reference.logits[:2], without.logits[:2])  # the spectrogram counts
    torch.testing.assert_close(reference.logits[2], without.logits[2])  # an all-NaN row is absent
    logits, embedding = OnnxEEGFM(path)(**inputs)
    np.testing.assert_allclose(logits, reference.logits.numpy(), atol=1e-4, rtol=0)
    np.testing.assert_allclose(embedding, reference.pooled.numpy(), atol=1e-4, rtol=0)


@pytest.mark.parametrize("covariances", [False, True], ids=["band_powers", "band_powers_and_covariances"])
def test_a_head_reading_band_powers_exports_for_the_19_channels_with_the_same_outputs(tmp_path, covariances):
    """The Welch band powers and co-spectra are a convolution and the tangent map matrix products
    (``model.band_powers``, ``model.spd``): the window length stays dynamic, the channel count is
    fixed at the canonical 19, and a short window still answers. The covariances are mapped at a
    reference point (``head_covariance_metric`` riemann: a congruence before the logarithm, the
    identity's map and more)."""
    metric = "riemann" if covariances else "logeuclid"
    overrides = dict(head_band_powers=True, head_covariances=covariances, head_covariance_metric=metric, modalities=[])
    model = make_model("tiny", "binary", seed=4, **overrides)
    torch.nn.init.normal_(model.head.fc_bands.weight, std=0.02)  # fitted: it moves the outputs
    if covariances:  # a reference's inverse square root: symmetric positive definite, far from the identity
        rotation, _ = torch.linalg.qr(torch.randn(5, 19, 19, generator=torch.Generator().manual_seed(1)))
        model.encoder.head_covariance_whitening.copy_((rotation * torch.logspace(-1, 1, 19)) @ rotation.mT)
    runner = OnnxEEGFM(export_onnx(model, tmp_path / "bands.onnx"), threads=1)
    assert runner.n_chans == 19
    for seconds in (5, 1, 12):
        case = make_batch(2, seconds, seed=seconds)
        mask = torch.ones(2, 19)
        mask[1, 3] = 0.0
        logits, _ = runner(case["eeg"], channel_mask=mask)
        with torch.no_grad():
            expected = model(case["eeg"], channel_mask=mask)
        assert expected.band_features.shape == (2, head_spectral_width(19, True, covariances))
        np.testing.assert_allclose(logits, expected.logits.numpy(), atol=2e-4, rtol=0)
