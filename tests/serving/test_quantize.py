"""Static INT8 quantization on the fine-tuned eegmat run, calibrated on its real preprocessed windows:
a smaller graph with quantized ops that ``eegfm-predict --backend onnx-int8`` serves close to float32."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest

from eegfm.core.config import ConfigError
from eegfm.inference.backends import int8_graph_for
from eegfm.inference.predictor import PredictConfig, Predictor
from eegfm.serving import predict, quantize
from tests.inference.conftest import validate_prediction

# Largest change of a class probability allowed against float32. Measured (benchmarks/quantize.py):
# 0.056 at most, 0.005 on average, on the 171 eegmat validation windows of a trained cpu-small model.
TOLERANCE = 0.06


@pytest.fixture(scope="module")
def run(finetuned, tmp_path_factory) -> Path:
    """A copy of the fine-tuned run (its model.onnx too, where exported): the INT8 graph goes beside it."""
    copy = tmp_path_factory.mktemp("int8") / "run"
    shutil.copytree(finetuned, copy, ignore=shutil.ignore_patterns("checkpoints", quantize.INT8_NAME))
    return copy


@pytest.fixture(scope="module")
def int8_graph(run, three_sites) -> Path:
    """``model.int8.onnx`` of the fine-tuned run, made by the command line (64 calibration windows)."""
    args = ["--model", str(run), "--data", str(three_sites), "--calibration_windows", "64"]
    assert quantize.main(args) == 0
    return run / "model" / quantize.INT8_NAME


def test_the_int8_graph_is_smaller_and_quantized(int8_graph, run):
    float_graph = run / "model" / "model.onnx"
    assert int8_graph.is_file() and float_graph.is_file()
    assert float_graph.stat().st_size / int8_graph.stat().st_size >= 2.0
    graph = onnx.load(str(int8_graph))
    ops = [node.op_type for node in graph.graph.node]
    assert ops.count("QuantizeLinear") > 10 and ops.count("DequantizeLinear") > 10
    int8_weights = [i for i in graph.graph.initializer if i.data_type == onnx.TensorProto.INT8 and len(i.dims) == 2]
    assert len(int8_weights) >= 10  # every block's linear layers
    meta = {p.key: p.value for p in graph.metadata_props}
    float_meta = {p.key: p.value for p in onnx.load(str(float_graph)).metadata_props}
    assert {k: meta[k] for k in float_meta} == float_meta  # labels, patch size, temperature, passes
    recipe = json.loads(meta["eegfm.quantization"])
    assert recipe["float32_modules"] == ["encoder.tokenizer"] and recipe["float32_nodes"] > 0
    assert recipe["calibration_batches"] == 4  # 64 windows, 16 a batch
    assert not any(node.metadata_props for node in graph.graph.node)


def test_the_tokenizer_stays_float_and_the_blocks_are_quantized(int8_graph, run):
    float_graph = onnx.load(str(run / "model" / "model.onnx"))
    kept = set(quantize.excluded_nodes(float_graph.graph, quantize.DEFAULT_EXCLUDE))
    graph = onnx.load(str(int8_graph)).graph
    weights = {i.name for i in float_graph.graph.initializer}
    made_by = {out: node.op_type for node in graph.node for out in node.output}
    linear = [
        n for n in graph.node if n.op_type in ("MatMul", "Gemm") and n.name in {m.name for m in float_graph.graph.node}
    ]
    dequantized = {n.name: any(made_by.get(i) == "DequantizeLinear" for i in n.input) for n in linear}
    float_linear = [n for n in float_graph.graph.node if n.op_type in ("MatMul", "Gemm")]
    with_weights = {n.name for n in float_linear if any(i in weights for i in n.input)}
    assert {n for n in with_weights if n in kept} and not any(dequantized[n] for n in with_weights & kept)
    assert all(dequantized[n] for n in with_weights - kept)  # every other layer with weights is int8


def test_eegfm_predict_with_the_int8_backend_is_close_to_float32(int8_graph, run, raw_sites, tmp_path):
    recordings = [str(raw_sites / "hospital2" / name) for name in ("Subject04_1.edf", "Subject04_2.edf")]
    reports = {}
    for backend in ("onnx", "onnx-int8"):
        out = tmp_path / backend
        args = ["--model", str(run), "--input", *recordings, "--output", str(out), "--no_plots"]
        assert predict.main([*args, "--backend", backend, "--batch_size", "8"]) == 0
        reports[backend] = json.loads((out / "recordings.json").read_text())
    assert reports["onnx-int8"]["backend"] == "onnx-int8"
    probabilities = {}
    for backend, report in reports.items():
        for recording in report["recordings"]:
            validate_prediction(recording)  # the schema; probabilities sum to 1
        windows = [w for r in report["recordings"] for w in r["window_predictions"]]
        probabilities[backend] = np.array([list(w["class_probabilities"].values()) for w in windows])
    assert len(probabilities["onnx-int8"]) == len(probabilities["onnx"]) > 20  # 182 s and 62 s in 10 s windows
    np.testing.assert_allclose(probabilities["onnx-int8"].sum(1), 1.0, atol=1e-6)
    difference = np.abs(probabilities["onnx-int8"] - probabilities["onnx"])
    assert difference.max() <= TOLERANCE
    assert difference.max() > 0  # the int8 graph ran, not the float one


def test_a_missing_float_model_or_calibration_data_is_named(run, three_sites, tmp_path, capsys):
    cases = [
        (["--model", str(tmp_path / "absent"), "--data", str(three_sites)], "--model"),
        (["--model", str(tmp_path), "--data", str(three_sites)], "config.json"),  # a folder without a model
        (["--model", str(run), "--data", str(tmp_path / "absent")], "--data"),
        (["--model", str(run), "--data", str(tmp_path)], "--data"),  # a folder without shards
    ]
    for args, named in cases:
        with pytest.raises(SystemExit) as exit_info:
            quantize.main(args)
        assert exit_info.value.code == 2
        error = capsys.readouterr().err.strip().splitlines()[-1]
        assert named in error and str(args[1 if named != "--data" else 3]) in error, error
    assert not (tmp_path / quantize.INT8_NAME).exists()


def test_the_int8_backend_says_how_to_make_a_missing_or_stale_graph(hms6_run, tmp_path):
    with pytest.raises(ConfigError, match=r"no model\.int8\.onnx; make it with: python -m eegfm\.serving\.quantize"):
        Predictor(hms6_run, PredictConfig(backend="onnx-int8"))
    model_dir = tmp_path / "model"
    shutil.copytree(hms6_run / "model", model_dir)
    (model_dir / quantize.INT8_NAME).write_bytes(b"")
    weights = model_dir / "model.safetensors"
    os.utime(model_dir / quantize.INT8_NAME, (weights.stat().st_mtime - 10,) * 2)
    with pytest.raises(ConfigError, match="older than model.safetensors"):
        int8_graph_for(model_dir)


def test_quantize_config_names_the_bad_field():
    with pytest.raises(ConfigError, match="method: expected one of 'minmax', 'percentile', 'entropy'"):
        quantize.QuantizeConfig(method="histogram")
    with pytest.raises(ConfigError, match="calibration_windows"):
        quantize.QuantizeConfig(calibration_windows=0)
    with pytest.raises(ConfigError, match="exclude"):
        quantize.QuantizeConfig(exclude="encoder.tokenizer")
