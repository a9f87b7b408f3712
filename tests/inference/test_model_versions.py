"""Versions and aliases of a model in S3 (moto's server, the real boto3 client through Beam) and GCS
(gcp-storage-emulator, in a subprocess as google-auth needs): published once per content, aliased,
re-aliased, fetched by alias and by digest, and served as the local run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from eegfm.core.config import ConfigError
from eegfm.inference import model_versions
from eegfm.inference.model_store import fetch_model
from eegfm.inference.predictor import Predictor
from eegfm.serving.models import main as store_cli
from tests.core.test_stores import AWS_ENV, BUCKET, REPO, beam_options, gcs, s3  # noqa: F401 - fixtures
from tests.inference.test_model_store import on_s3  # noqa: F401 - the fixture


@pytest.fixture
def retrained(finetuned, tmp_path):
    """The fine-tuned run with other serving files (its evaluation re-measured), and benchmark numbers."""
    run = tmp_path / "retrained"
    shutil.copytree(finetuned, run, ignore=shutil.ignore_patterns("checkpoints"))
    evaluation = json.loads((run / "eval.json").read_text())
    (run / "eval.json").write_text(json.dumps({**evaluation, "remeasured": True, "data": str(tmp_path)}))
    (run / "benchmark.json").write_text(json.dumps({"windows_per_second": 123.0, "input": "/data/Subject02_1.edf"}))
    return run


def _objects(client, prefix: str) -> dict[str, object]:
    return {o["Key"]: o["LastModified"] for o in client.list_objects_v2(Bucket=BUCKET, Prefix=prefix)["Contents"]}


def test_versions_are_published_once_aliased_moved_and_served(on_s3, finetuned, retrained, raw_sites, capsys):  # noqa: F811 - on_s3, the imported fixture
    model = f"s3://{BUCKET}/models/ft"
    assert store_cli(["publish", str(finetuned), model, "--alias", "staging"]) == 0
    first = capsys.readouterr().out.strip().rsplit("sha256:", 1)[1]
    stored = _objects(on_s3, "models/ft/")
    assert f"models/ft/versions/{first}/model/model.safetensors" in stored
    assert f"models/ft/versions/{first}/version.json" in stored and "models/ft/aliases/staging.json" in stored
    assert not any("checkpoints" in key for key in stored)
    record = json.loads(on_s3.get_object(Bucket=BUCKET, Key=f"models/ft/versions/{first}/version.json")["Body"].read())
    assert record["digest"] == f"sha256:{first}"
    assert record["evaluation"] == json.loads((finetuned / "eval.json").read_text())
    weights = next(f for f in record["files"] if f["path"] == "model/model.safetensors")
    assert weights["size"] == (finetuned / "model" / "model.safetensors").stat().st_size

    # the same files again: the same version, none of its files written again
    assert model_versions.publish_version(finetuned, model) == first
    assert _objects(on_s3, f"models/ft/versions/{first}/") == {
        k: v for k, v in stored.items() if k.startswith(f"models/ft/versions/{first}/")
    }

    second = model_versions.publish_version(retrained, model, alias="production")
    assert second != first
    record = json.loads(on_s3.get_object(Bucket=BUCKET, Key=f"models/ft/versions/{second}/version.json")["Body"].read())
    assert record["benchmark"] == {"windows_per_second": 123.0} and record["evaluation"]["remeasured"] is True
    assert str(retrained.parent) not in json.dumps(record) and "Subject02" not in json.dumps(record)

    # production back to the first version, then moved to the second by the CLI
    assert store_cli(["alias", f"{model}@sha256:{first[:8]}", "production"]) == 0
    assert model_versions.aliases(model) == {"staging": first, "production": first}
    assert store_cli(["alias", f"{model}@{second[:10]}", "production"]) == 0
    assert model_versions.aliases(model) == {"staging": first, "production": second}
    capsys.readouterr()
    assert store_cli(["list", model]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in listed] == [f"sha256:{first}", f"sha256:{second}"]
    assert listed[0].endswith("staging") and listed[1].endswith("production") and "T" in listed[0].split()[1]

    # fetched by alias and by digest: one copy of the version, served as the local run
    by_alias = fetch_model(f"{model}@production")
    assert fetch_model(f"{model}@sha256:{second}") == by_alias == fetch_model(f"{model}@{second[:6]}")
    assert (by_alias / "eval.json").read_bytes() == (retrained / "eval.json").read_bytes()
    assert (fetch_model(f"{model}@staging") / "eval.json").read_bytes() == (finetuned / "eval.json").read_bytes()
    recording = str(raw_sites / "hospital1" / "Subject02_1.edf")
    [remote], [here] = Predictor(f"{model}@production").predict([recording]), Predictor(retrained).predict([recording])
    np.testing.assert_array_equal([w.outputs for w in remote.windows], [w.outputs for w in here.windows])


def test_unknown_aliases_versions_and_bad_alias_names_are_refused_by_name(on_s3, finetuned, capsys):  # noqa: F811 - on_s3, the imported fixture
    model = f"s3://{BUCKET}/models/errors"
    digest = model_versions.publish_version(finetuned, model, alias="staging")
    with pytest.raises(ConfigError, match=r"@prod: no such alias; known aliases: staging \(or a version"):
        fetch_model(f"{model}@prod")
    with pytest.raises(
        ConfigError, match=rf"@sha256:abc: is not a version of this model; known versions: sha256:{digest[:12]}$"
    ):
        fetch_model(f"{model}@sha256:abc")
    with pytest.raises(ConfigError, match=r"alias 'Prod!': expected a name matching \[a-z\]\[a-z0-9_-\]\*"):
        model_versions.publish_version(finetuned, model, alias="Prod!")
    with pytest.raises(SystemExit):
        store_cli(["alias", f"{model}@staging", "2nd"])
    assert "expected a name matching [a-z][a-z0-9_-]*" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="no such alias; known aliases: none"):
        fetch_model(f"s3://{BUCKET}/models/nothing@production")


def test_a_local_folder_with_an_at_sign_is_still_a_plain_run(finetuned, tmp_path):
    run = tmp_path / "run@2"
    shutil.copytree(finetuned / "model", run / "model")
    assert fetch_model(str(run)) == run


def test_versions_in_a_local_folder_are_served_from_where_they_are(finetuned, tmp_path):
    model = tmp_path / "store" / "ft"
    digest = model_versions.publish_version(finetuned, str(model), alias="staging")
    weights = model / "versions" / digest / "model" / "model.safetensors"
    stamp = weights.stat().st_mtime_ns
    assert model_versions.publish_version(finetuned, str(model), alias="production") == digest
    assert weights.stat().st_mtime_ns == stamp and model_versions.aliases(str(model))["production"] == digest
    assert fetch_model(f"{model}@production") == weights.parents[1] == fetch_model(f"{model}@{digest[:4]}")


def test_versions_in_gcs(gcs, finetuned, tmp_path):  # noqa: F811 - the imported fixture
    env, bucket = gcs
    env = {**os.environ, **env, "EEGFM_CACHE": str(tmp_path / "cache")}
    model = f"gs://{BUCKET}/models/ft"
    publish = ["publish", str(finetuned), model, "--alias", "staging"]
    done = subprocess.run(
        [sys.executable, "-m", "eegfm.serving.models", *publish],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    digest = done.stdout.strip().rsplit("sha256:", 1)[1]
    assert "publishing" in done.stderr and bucket.blob(f"models/ft/versions/{digest}/version.json").exists()
    fetch = (
        "import sys\n"
        "from eegfm.inference.model_store import fetch_model\n"
        "from eegfm.serving.models import main\n"
        "main(['alias', sys.argv[1] + '@staging', 'production'])\n"
        "print(fetch_model(sys.argv[1] + '@production'))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", fetch, model], cwd=REPO, capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    local = done.stdout.strip().splitlines()[-1]
    weights = "model/model.safetensors"
    assert open(os.path.join(local, weights), "rb").read() == (finetuned / weights).read_bytes()
    assert (
        json.loads(bucket.blob("models/ft/aliases/production.json").download_as_bytes())["digest"] == f"sha256:{digest}"
    )
