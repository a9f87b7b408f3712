"""A fine-tuned run in S3 (moto's S3 server on localhost, the real boto3 client through Beam's
filesystems) is fetched once, cached, and served like the local run."""

from __future__ import annotations

import json

import numpy as np
import pytest

from eegfm.core.config import ConfigError
from eegfm.inference.model_store import fetch_model
from eegfm.inference.predictor import Predictor
from tests.core.test_stores import AWS_ENV, BUCKET, beam_options, s3  # noqa: F401 - fixtures


@pytest.fixture
def on_s3(s3, beam_options, monkeypatch, tmp_path):  # noqa: F811 - the imported fixtures
    endpoint, client = s3
    for name, value in {**AWS_ENV, "AWS_ENDPOINT_URL": endpoint, "EEGFM_CACHE": str(tmp_path / "cache")}.items():
        monkeypatch.setenv(name, value)
    from apache_beam.io.filesystems import FileSystems

    FileSystems._pipeline_options = None  # options (the endpoint) are read again from the environment
    return client


def test_a_run_in_s3_is_fetched_once_and_predicts_as_the_local_one(on_s3, finetuned, raw_sites, tmp_path):
    from eegfm.serving.models import main as publish

    url = f"s3://{BUCKET}/runs/ft"
    assert publish([str(finetuned), url]) == 0
    keys = {o["Key"] for o in on_s3.list_objects_v2(Bucket=BUCKET, Prefix="runs/ft/")["Contents"]}
    assert {
        "runs/ft/run.json",
        "runs/ft/eval.json",
        "runs/ft/model/config.json",
        "runs/ft/model/model.safetensors",
        "runs/ft/model/preprocess.json",
    } <= keys and not any("checkpoints" in k for k in keys)
    local = fetch_model(url)
    weights = "model/model.safetensors"
    assert (local / weights).read_bytes() == (finetuned / weights).read_bytes()
    assert (local / "run.json").is_file() and str(tmp_path / "cache") in str(local)
    # and its evaluation, which the served model reports
    assert (local / "eval.json").read_bytes() == (finetuned / "eval.json").read_bytes()
    stamp = (local / "model" / "config.json").stat().st_mtime_ns
    assert fetch_model(url + "/model") != local  # the model folder's URL is its own cache entry
    assert fetch_model(url) == local and (local / "model" / "config.json").stat().st_mtime_ns == stamp  # cached

    recording = str(raw_sites / "hospital1" / "Subject02_1.edf")
    [remote], [here] = Predictor(url).predict([recording]), Predictor(finetuned).predict([recording])
    np.testing.assert_array_equal([w.outputs for w in remote.windows], [w.outputs for w in here.windows])
    assert Predictor(url).describe()["evaluation"] == Predictor(finetuned).describe()["evaluation"] is not None


def test_a_store_folder_without_a_model_is_refused_by_name(on_s3):
    on_s3.put_object(Bucket=BUCKET, Key="runs/empty/notes.txt", Body=b"x")
    with pytest.raises(ConfigError, match="expected a fine-tuning run folder.*found"):
        fetch_model(f"s3://{BUCKET}/runs/empty")


def test_a_model_published_again_is_fetched_again_though_its_files_keep_their_sizes(on_s3, finetuned):
    import time

    from eegfm.inference.model_versions import publish_model

    url = f"s3://{BUCKET}/runs/again"
    publish_model(finetuned, url)
    weights = (fetch_model(url) / "model" / "model.safetensors").read_bytes()
    time.sleep(1.1)  # the store's modification times are what tell the two publications apart
    changed = weights[:-1] + bytes([weights[-1] ^ 0xFF])  # new weights of the same architecture: same size
    on_s3.put_object(Bucket=BUCKET, Key="runs/again/model/model.safetensors", Body=changed)
    assert (fetch_model(url) / "model" / "model.safetensors").read_bytes() == changed


def test_publishing_leaves_out_an_onnx_graph_older_than_the_weights(on_s3, finetuned, tmp_path):
    import os
    import shutil

    from eegfm.inference.model_versions import publish_model

    run = tmp_path / "run"
    shutil.copytree(finetuned / "model", run / "model", ignore=shutil.ignore_patterns("model.onnx"))
    stale = run / "model" / "model.onnx"
    stale.write_bytes(b"an export of earlier weights")
    os.utime(stale, (1, 1))
    written = publish_model(run, f"s3://{BUCKET}/runs/stale")
    assert written[-1].endswith("model/model.safetensors") and not any(w.endswith(".onnx") for w in written)
    os.utime(stale)  # exported after the weights: published, before them
    written = publish_model(run, f"s3://{BUCKET}/runs/fresh")
    assert any(w.endswith("model/model.onnx") for w in written) and written[-1].endswith("model.safetensors")


def test_a_benchmark_export_is_published_as_a_version_and_served_from_the_store(on_s3, fused_export, raw_sites):
    from eegfm.serving.models import main as models

    model_url = f"s3://{BUCKET}/models/fused"
    assert models(["publish", str(fused_export), model_url, "--alias", "production"]) == 0
    keys = {o["Key"] for o in on_s3.list_objects_v2(Bucket=BUCKET, Prefix="models/fused/")["Contents"]}
    assert any(k.endswith("/fused.json") for k in keys) and any(
        k.endswith("/network-0-0/model.safetensors") for k in keys
    )
    local = fetch_model(f"{model_url}@production")
    assert (local / "fused.json").read_bytes() == (fused_export / "fused.json").read_bytes()
    recording = str(raw_sites / "hospital1" / "Subject02_1.edf")
    [remote], [here] = (
        Predictor(f"{model_url}@production").predict([recording]),
        Predictor(fused_export).predict([recording]),
    )
    np.testing.assert_allclose([w.outputs for w in remote.windows], [w.outputs for w in here.windows], atol=1e-9)
    [digest] = [k.split("/")[3] for k in keys if k.endswith("/version.json")]
    record = json.loads(
        on_s3.get_object(Bucket=BUCKET, Key=f"models/fused/versions/{digest}/version.json")["Body"].read()
    )
    assert record["card"]["row"] == "eegfm"  # the card says which benchmark row this model is
