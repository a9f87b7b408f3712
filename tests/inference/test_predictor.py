"""The predictor on real eegmat recordings: the same windows and probabilities as the model on the
pipeline's TFRecords, in PyTorch and in ONNX Runtime."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from eegfm.contract import layout
from eegfm.contract.schema import decode_example
from eegfm.contract.tfrecord import read_records
from eegfm.core.config import ConfigError
from eegfm.inference.predictor import PredictConfig, Predictor
from eegfm.model.batch import collate_records
from eegfm.model.inputs import inputs_for_modalities
from eegfm.model.modeling import EEGFMModel
from tests.inference.conftest import validate_prediction


def _records_of(data: Path, recording: Path) -> list[bytes]:
    """The pipeline's records cut from ``recording``, in time order."""
    sha = hashlib.sha256(recording.read_bytes()).hexdigest().encode()
    raws = [raw for shard in sorted(data.rglob("*.tfrecord")) for raw in read_records(shard)]
    mine = [raw for raw in raws if decode_example(raw).source_sha256 == sha]
    return sorted(mine, key=lambda raw: decode_example(raw).window_start_s)


@pytest.fixture(scope="module")
def torch_predictor(finetuned) -> Predictor:
    return Predictor(finetuned)


def test_fine_tuning_saves_its_datas_preprocessing_beside_the_model(finetuned, three_sites):
    spec = json.loads((finetuned / "model" / layout.PREPROCESS_SPEC).read_text())
    manifest = json.loads((three_sites / "manifest.json").read_text())
    assert spec["config"] == manifest["config"] and spec["config_hash"] == manifest["config_hash"]
    assert spec["channels"] == manifest["channels"] and spec["artifact_model"] is None  # run without one


def test_predictions_equal_the_models_on_the_pipelines_records(torch_predictor, finetuned, three_sites, raw_sites):
    recording = raw_sites / "hospital1" / "Subject02_2.edf"
    [prediction] = torch_predictor.predict([str(recording)], redact=False)
    assert prediction.status == "processed" and prediction.input == str(recording)
    raws = _records_of(three_sites, recording)
    assert len(raws) == len(prediction.windows) == 6  # 62 s of EEG in 10 s windows
    assert [w.start_s for w in prediction.windows] == [decode_example(r).window_start_s for r in raws]
    model = EEGFMModel.from_pretrained(finetuned / "model")
    expected = model.predict(**inputs_for_modalities(collate_records(raws), model.config.modalities)).numpy()
    got = np.array([w.outputs for w in prediction.windows])
    np.testing.assert_allclose(got[:, 1], expected, atol=1e-6)  # eegmat's binary head: P(task)
    assert np.allclose(got.sum(1), 1.0) and prediction.labels == ("rest", "task")
    assert [w.artifact_score for w in prediction.windows] == pytest.approx(
        [decode_example(r).artifact_score for r in raws], abs=1e-6
    )
    summary = prediction.summary()
    assert summary["predicted"] in ("rest", "task") and sum(summary["windows_by_label"].values()) == 6


def test_uncalibrated_and_overlapping_windows(finetuned, torch_predictor, raw_sites):
    recording = str(raw_sites / "hospital0" / "Subject00_1.edf")
    [calibrated] = torch_predictor.predict([recording])
    overlapping = Predictor(finetuned, PredictConfig(stride_seconds=5.0, calibrated=False))
    [dense] = overlapping.predict([recording])
    assert len(dense.windows) == 2 * len(calibrated.windows) - 1  # 5 s apart over 10 s windows
    assert [w.start_s for w in dense.windows[::2]] == [w.start_s for w in calibrated.windows]
    temperature = torch_predictor.temperature
    assert temperature != 1.0 and overlapping.temperature == 1.0
    # The windows that coincide differ only by the temperature
    raw = np.log(np.array([w.outputs for w in dense.windows[::2]]))
    scaled = np.exp(raw / temperature)
    np.testing.assert_allclose(
        scaled / scaled.sum(1, keepdims=True), np.array([w.outputs for w in calibrated.windows]), atol=1e-6
    )


def test_onnx_runtime_gives_the_same_probabilities(finetuned, torch_predictor, raw_sites):
    recording = str(raw_sites / "hospital2" / "Subject05_1.edf")
    onnx = Predictor(finetuned, PredictConfig(backend="onnx", batch_size=4))
    graph = finetuned / "model" / "model.onnx"
    assert graph.is_file()
    exported = graph.stat().st_mtime_ns
    [by_torch], [by_onnx] = torch_predictor.predict([recording]), onnx.predict([recording])
    np.testing.assert_allclose([w.outputs for w in by_onnx.windows], [w.outputs for w in by_torch.windows], atol=1e-5)
    # the MC-dropout samples are the graph's sample_logits output: every field agrees
    for got, expected in zip(by_onnx.windows, by_torch.windows, strict=True):
        assert got.predicted_class == expected.predicted_class
        assert got.clinical_recommendation == expected.clinical_recommendation
        assert got.model_version == expected.model_version and got.uncertainty["passes"] == 20
        for key in ("entropy", "mutual_information"):
            assert got.uncertainty[key] == pytest.approx(expected.uncertainty[key], abs=1e-5)
        assert got.confidence == pytest.approx(expected.confidence, abs=1e-5)
    assert by_onnx.summary()["flagged_episodes"] == by_torch.summary()["flagged_episodes"]
    assert by_onnx.summary()["minutes_by_class"] == by_torch.summary()["minutes_by_class"]
    assert max(w.uncertainty["mutual_information"] for w in by_torch.windows) > 0
    validate_prediction(by_onnx.as_dict())
    assert onnx.describe()["backend"] == "onnx" and onnx.backend.runner.temperature == torch_predictor.temperature
    Predictor(finetuned, PredictConfig(backend="onnx"))
    assert graph.stat().st_mtime_ns == exported  # exported once, reused


def test_a_folder_is_predicted_recording_by_recording_and_a_bad_file_is_quarantined(
    torch_predictor, raw_sites, tmp_path
):
    (tmp_path / "Subject01_1.edf").symlink_to(raw_sites / "hospital0" / "Subject01_1.edf")
    (tmp_path / "cut.edf").write_bytes((raw_sites / "hospital0" / "Subject01_2.edf").read_bytes()[:3000])
    results = {Path(p.input).name: p for p in torch_predictor.predict([str(tmp_path)], redact=False)}
    assert set(results) == {"Subject01_1.edf", "cut.edf"}
    assert results["Subject01_1.edf"].status == "processed" and results["Subject01_1.edf"].windows
    cut = results["cut.edf"]
    assert cut.status == "quarantined" and cut.stage == "read" and "cut.edf" in cut.reason and not cut.windows


def test_what_cannot_serve_is_refused_by_name(encoder, finetuned, tmp_path):
    with pytest.raises(ConfigError, match="expected a fine-tuning run folder"):
        Predictor(tmp_path)
    with pytest.raises(ConfigError, match="pretraining encoder"):
        Predictor(encoder)
    with pytest.raises(ConfigError, match="batch_size"):
        PredictConfig(batch_size=0)
    with pytest.raises(ConfigError, match="backend"):
        PredictConfig(backend="tflite")


def test_tensorrt_is_refused_by_name_where_it_cannot_run(finetuned):
    import importlib.util

    import torch

    if importlib.util.find_spec("tensorrt") is not None and torch.cuda.is_available():
        pytest.skip("TensorRT and a GPU are here: test_tensorrt_engine_agrees_with_torch runs instead")
    with pytest.raises(ConfigError, match="--backend tensorrt: (the tensorrt package|no CUDA device)"):
        Predictor(finetuned, PredictConfig(backend="tensorrt", device="cuda"))


def test_tensorrt_engine_agrees_with_torch(finetuned, torch_predictor, raw_sites):
    pytest.importorskip("tensorrt")
    import torch

    if not torch.cuda.is_available():
        pytest.skip("TensorRT needs an NVIDIA GPU")
    recording = str(raw_sites / "hospital2" / "Subject05_2.edf")
    engine = Predictor(finetuned, PredictConfig(backend="tensorrt", device="cuda", precision="fp16"))
    [by_torch], [by_engine] = torch_predictor.predict([recording]), engine.predict([recording])
    np.testing.assert_allclose(
        [w.outputs for w in by_engine.windows], [w.outputs for w in by_torch.windows], atol=1e-2
    )  # fp16 engine
    assert list(finetuned.joinpath("model").glob("model.*.engine"))


def test_the_datas_artifact_autoencoder_travels_with_the_model_and_scores_windows(
    finetuned, three_sites, raw_sites, tmp_path
):
    import shutil

    from eegfm.contract.preprocess_spec import save_preprocess_spec
    from eegfm.pipelines.quality.artifact_autoencoder import ArtifactAutoencoder

    # the pipeline output as a run with its autoencoder would leave it: fitted on its windows
    data = tmp_path / "data"
    shutil.copytree(three_sites, data)
    raws = [raw for shard in sorted(data.rglob("*.tfrecord")) for raw in read_records(shard)]
    windows = np.stack([decode_example(raw).eeg.astype(np.float32) for raw in raws])
    ArtifactAutoencoder(epochs=5).fit(windows).save(data / layout.ARTIFACT_MODEL)
    manifest = json.loads((data / "manifest.json").read_text())
    (data / layout.MANIFEST).write_text(json.dumps({**manifest, "artifact_model": layout.ARTIFACT_MODEL}))
    model_dir = tmp_path / "run" / "model"
    shutil.copytree(finetuned / "model", model_dir)
    save_preprocess_spec([str(data)], model_dir)
    shutil.rmtree(data)  # the model folder alone serves
    assert (model_dir / layout.ARTIFACT_MODEL).is_file()

    recording = str(raw_sites / "hospital0" / "Subject01_1.edf")
    with_ae = Predictor(model_dir)
    rules_only = Predictor(model_dir, PredictConfig(artifact_model=False))
    assert with_ae.describe()["artifact_model"] == "autoencoder and rules"
    [scored], [ruled] = with_ae.predict([recording]), rules_only.predict([recording])
    ae = np.array([w.artifact_score for w in scored.windows])
    rules = np.array([w.artifact_score for w in ruled.windows])
    assert np.all(ae >= rules) and np.any(ae > rules)
    np.testing.assert_allclose([w.outputs for w in scored.windows], [w.outputs for w in ruled.windows])


def test_model_version_covers_an_ensembles_members(tmp_path):
    from eegfm.inference.predictor import model_version

    single = tmp_path / "single"
    single.mkdir()
    (single / "config.json").write_text("{}")
    (single / "model.safetensors").write_bytes(b"weights")
    ensemble = tmp_path / "ensemble"
    (ensemble / "members" / "0-eegfm").mkdir(parents=True)
    (ensemble / "ensemble.json").write_text("{}")
    member = ensemble / "members" / "0-eegfm"
    (member / "config.json").write_text("{}")
    (member / "model.safetensors").write_bytes(b"weights")
    before = model_version(ensemble)
    assert before.startswith("sha256:") and before != model_version(single)
    (member / "model.safetensors").write_bytes(b"retrained")  # a member retrained: another version
    assert model_version(ensemble) != before
