"""The job and the training loader on object stores: s3:// against moto's S3 server and gs://
against gcp-storage-emulator, both real HTTP servers on localhost speaking the stores' APIs to
the real boto3 and google-cloud-storage clients that Beam's filesystems use. (AWS and GCS
themselves are not reachable here.)"""

import gzip
import json
import logging
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from eegfm.contract.tfrecord import read_records
from eegfm.core import stores as object_stores
from eegfm.core.run_lock import RUN_LOCK
from eegfm.core.stores import StoreUnreachableError, check_reachable, filesystems, storage_error
from eegfm.pipelines.readers import open_recording
from eegfm.training.data import EEGLoader, LoaderConfig, check_shards, describe
from tests.conftest import free_port
from tests.pipelines.readers.test_readers import _eegmat, _mff, _write_eeglab

REPO = Path(__file__).resolve().parents[2]
BUCKET = "eegfm-test"
KEY = b"0123456789abcdef0123456789abcdef\n"
AWS_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture
def beam_options():
    """Tests set Beam's process-wide filesystem options; each test leaves them as it found them."""
    saved = getattr(FileSystems, "_pipeline_options", None)
    yield
    FileSystems._pipeline_options = saved


@pytest.fixture(scope="module")
def s3():
    """``(endpoint, boto3 client)`` of a moto S3 server holding an empty bucket."""
    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # a line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        **{
            "aws_access_key_id": AWS_ENV["AWS_ACCESS_KEY_ID"],
            "aws_secret_access_key": AWS_ENV["AWS_SECRET_ACCESS_KEY"],
            "region_name": AWS_ENV["AWS_DEFAULT_REGION"],
        },
    )
    client.create_bucket(Bucket=BUCKET)
    yield endpoint, client
    server.stop()


@pytest.fixture(scope="module")
def mixed_tree(shared_data, split_fif, tmp_path_factory):
    """A local input tree: 2 eegmat recordings, a gzipped 2-channel FIF, BrainVision with numbered channels
    (its companions must travel with it), a zero-length EDF and a FIF split into parts (the parts after
    the first must travel with it). ``{relative path: bytes}``."""
    eegmat, formats = shared_data / "eegmat", shared_data / "formats"
    files = {f"eegmat/{name}": (eegmat / name).read_bytes() for name in ("Subject00_1.edf", "Subject00_2.edf")}
    files.update({f"meg/{part.name}": part.read_bytes() for part in (split_fif / "split").iterdir()})
    files["lab/rest_raw.fif.gz"] = gzip.compress(
        (formats / "fif" / "data_resting_EO_200Hz_raw.fif").read_bytes(), compresslevel=1, mtime=0
    )
    for name in ("test_NO.vhdr", "test_NO.vmrk", "test_NO.eeg"):
        files[f"lab/{name}"] = (formats / "brainvision" / name).read_bytes()
    # A renamed header still names test_NO.eeg and test_NO.vmrk: those are what travel with it.
    files["lab/renamed.vhdr"] = files["lab/test_NO.vhdr"]
    files["lab/empty.edf"] = b""
    files.update(_renamed_eeglab_files(eegmat / "Subject00_2.edf", tmp_path_factory.mktemp("eeglab")))
    files.update(_mff_files(eegmat / "Subject00_2.edf", tmp_path_factory.mktemp("mff")))
    root = tmp_path_factory.mktemp("tree")
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root, files


def _renamed_eeglab_files(edf, tmp) -> dict[str, bytes]:
    """Two-file EEGLAB recordings renamed after saving, as users rename them: a .set that still
    names its old .fdt (``kept_name.fdt``), and a .set/.fdt pair that both took a new name."""
    data, names, sfreq = _eegmat(edf, 15000)
    _write_eeglab(tmp / "a.set", data, names, sfreq, data_file="kept_name.fdt")
    _write_eeglab(tmp / "b.set", data * 0.5, names, sfreq, data_file="orig.fdt")
    return {
        "lab/renamed_set.set": (tmp / "a.set").read_bytes(),
        "lab/kept_name.fdt": (tmp / "kept_name.fdt").read_bytes(),
        "lab/renamed_pair.set": (tmp / "b.set").read_bytes(),
        "lab/renamed_pair.fdt": (tmp / "orig.fdt").read_bytes(),
    }


def _mff_files(edf, tmp) -> dict[str, bytes]:
    """An EGI MFF recording: a folder of files (E1..E128 and the reference), which must travel together."""
    with open_recording(edf) as reader:
        data = reader.read(0, 5000)[:19]
    folder = _mff(tmp / "rec.mff", np.vstack([np.tile(data, (7, 1))[:128], np.zeros((1, 5000))]))
    return {f"lab/rec.mff/{f.name}": f.read_bytes() for f in folder.iterdir()}


def _preprocess(args, env=None):
    done = subprocess.run(
        # the tests find inputs by name; redaction has its own (tests/pipelines/privacy/test_redact.py)
        [sys.executable, "-m", "eegfm.pipelines.job.preprocess", *args, "--keep_paths"],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=600,
    )
    return done


def _records(folder: str) -> dict[str, list[bytes]]:
    """Every record of every shard below ``folder`` (any file system), by site folder."""
    fs = filesystems(folder)
    found = fs.match([f"{folder}/*/part-*-of-*.tfrecord"])[0].metadata_list
    by_site: dict[str, list[bytes]] = {}
    for meta in sorted(found, key=lambda m: m.path):
        with fs.open(meta.path, compression_type=CompressionTypes.UNCOMPRESSED) as fh:
            by_site.setdefault(meta.path.split("/")[-2], []).extend(read_records(fh, "SNAPPY"))
    return by_site


def test_empty_and_small_files_on_s3(s3, beam_options):
    # Beam's S3 uploader alone fails on an empty file (a multipart upload with no part).
    endpoint, client = s3
    FileSystems.set_options(
        PipelineOptions(
            [
                "--s3_endpoint_url",
                endpoint,
                "--s3_access_key_id",
                "testing",
                "--s3_secret_access_key",
                "testing",
                "--s3_region_name",
                "us-east-1",
            ]
        )
    )
    fs = filesystems()
    fs.create(f"s3://{BUCKET}/unit/empty.jsonl").close()
    with fs.create(f"s3://{BUCKET}/unit/small.txt") as fh:
        fh.write(b"abc")
    assert client.get_object(Bucket=BUCKET, Key="unit/empty.jsonl")["Body"].read() == b""
    assert client.get_object(Bucket=BUCKET, Key="unit/small.txt")["Body"].read() == b"abc"


def test_keys_whose_names_look_like_patterns_are_listed_and_deleted_as_they_are(s3, beam_options, tmp_path):
    from eegfm.core.stores import delete, match_below, match_path

    endpoint, client = s3
    FileSystems.set_options(
        PipelineOptions(
            [
                "--s3_endpoint_url",
                endpoint,
                "--s3_access_key_id",
                "testing",
                "--s3_secret_access_key",
                "testing",
                "--s3_region_name",
                "us-east-1",
            ]
        )
    )
    for key in ("lit/out [x]/a.tfrecord", "lit/out [x]/b?.json", "lit/out x/a.tfrecord", "lit/out [x]2/c"):
        client.put_object(Bucket=BUCKET, Key=key, Body=b"1")
    for root in (f"s3://{BUCKET}/lit", str(tmp_path)):  # an object store and local disk alike
        if "://" not in root:
            for key in ("out [x]/a.tfrecord", "out [x]/b?.json", "out x/a.tfrecord", "out [x]2/c"):
                (tmp_path / key).parent.mkdir(exist_ok=True)
                (tmp_path / key).write_bytes(b"1")
        below = sorted(m.path for m in match_below(f"{root}/out [x]"))
        assert below == [f"{root}/out [x]/a.tfrecord", f"{root}/out [x]/b?.json"]
        assert [m.path for m in match_below(f"{root}/out [x]", "*.tfrecord")] == [f"{root}/out [x]/a.tfrecord"]
        assert [m.path for m in match_path(f"{root}/out [x]/b?.json")] == [f"{root}/out [x]/b?.json"]
        assert match_path(f"{root}/out [x]/nothing") == []
        delete(below)
        assert match_below(f"{root}/out [x]") == [] and len(match_below(f"{root}/out x")) == 1


def test_storage_errors_name_the_path_and_the_stores_answer():
    from apache_beam.io.filesystem import BeamIOError

    inner = BeamIOError(
        "List operation failed with exceptions", {"s3://b/raw/": ValueError("Must provide one of client or options")}
    )
    outer = BeamIOError("exists() operation failed", {"s3://b/raw/": inner})
    assert storage_error(outer) == "s3://b/raw/: ValueError: Must provide one of client or options"
    assert storage_error(FileNotFoundError("Not found:\n  s3://b/k")) == "FileNotFoundError: Not found: s3://b/k"


@pytest.fixture
def no_proxy_env(monkeypatch):
    """No proxy from the environment, and no endpoint remembered from earlier tests."""
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(object_stores, "_REACHABLE", set())


def test_an_unreachable_store_is_named_with_its_host_and_a_reachable_one_is_checked_once(s3, no_proxy_env, monkeypatch):
    endpoint, _ = s3
    port = free_port()
    options = PipelineOptions(["--s3_endpoint_url", f"http://127.0.0.1:{port}"])
    with pytest.raises(
        StoreUnreachableError,
        match=rf"^s3://b/raw/: cannot reach the store at 127\.0\.0\.1:{port} "
        r"\(Connection refused\); .* the endpoint \(--s3_endpoint_url",
    ):
        check_reachable(["/local/folder", "s3://b/raw/"], options)
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"127.0.0.1:{port}")
    with pytest.raises(
        StoreUnreachableError,
        match=rf"^gs://b/x: cannot reach the store at 127\.0\.0\.1:{port} .*"
        r"STORAGE_EMULATOR_HOST$",
    ):
        check_reachable(["gs://b/x"])
    # Through a proxy, the proxy is what must answer.
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{port}")
    with pytest.raises(StoreUnreachableError, match=rf"the store at the proxy 127\.0\.0\.1:{port} "):
        check_reachable(["s3://b/raw/"], PipelineOptions(["--s3_endpoint_url", "https://s3.example.invalid"]))
    monkeypatch.delenv("HTTPS_PROXY")
    # A name that cannot resolve (RFC 2606 reserves .invalid).
    with pytest.raises(StoreUnreachableError, match=r"s3\.example\.invalid:443 \(its name does not resolve"):
        check_reachable(["s3://b/raw/"], PipelineOptions(["--s3_endpoint_url", "https://s3.example.invalid"]))
    check_reachable([f"s3://{BUCKET}/a", f"s3://{BUCKET}/b"], PipelineOptions(["--s3_endpoint_url", endpoint]))
    assert object_stores._REACHABLE == {("127.0.0.1", int(endpoint.rsplit(":", 1)[1]))}


def test_an_unreachable_store_fails_the_job_and_training_at_once(shared_data, tmp_path, no_proxy_env):
    # Beam would retry each request with exponential backoff: 2 minutes for gs://, over 10 for s3://.
    port = free_port()
    (tmp_path / "key").write_bytes(KEY)
    done = _preprocess(
        [
            "--input",
            "s3://b/raw/",
            "--output",
            str(tmp_path / "out"),
            "--pseudonym_key_file",
            str(tmp_path / "key"),
            "--s3_endpoint_url",
            f"http://127.0.0.1:{port}",
        ],
        env={**AWS_ENV, "HTTPS_PROXY": "", "HTTP_PROXY": ""},
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"error: s3://b/raw/: cannot reach the store at 127.0.0.1:{port} (Connection refused)" in done.stderr
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "eegfm.training.pretrain",
            "--data",
            "gs://b/out",
            "--output",
            str(tmp_path / "run"),
            "--config",
            "cpu-tiny",
            "--max_steps",
            "2",
            "--wandb",
            "disabled",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "STORAGE_EMULATOR_HOST": f"127.0.0.1:{port}", "HTTPS_PROXY": "", "HTTP_PROXY": ""},
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert (
        f"pretrain: --data gs://b/out: gs://b/out/*/part-*-of-*.tfrecord: cannot reach the store at 127.0.0.1:{port}"
        in done.stderr
    )


def test_missing_objects_fail_the_command_with_the_option_and_path(s3):
    endpoint, client = s3
    client.put_object(Bucket=BUCKET, Key="errors/raw/a.edf", Body=b"")
    options = [
        "--s3_endpoint_url",
        endpoint,
        "--s3_access_key_id",
        "testing",
        "--s3_secret_access_key",
        "testing",
        "--s3_region_name",
        "us-east-1",
    ]
    done = _preprocess(
        [
            "--input",
            f"s3://{BUCKET}/errors/raw/",
            "--output",
            f"s3://{BUCKET}/errors/out",
            "--pseudonym_key_file",
            f"s3://{BUCKET}/errors/no.key",
            *options,
        ]
    )
    assert done.returncode == 2
    assert f"--pseudonym_key_file s3://{BUCKET}/errors/no.key: cannot read it (FileNotFoundError: " in done.stderr
    assert "Traceback" not in done.stderr
    client.put_object(Bucket=BUCKET, Key="errors/pseudonym.key", Body=KEY)
    done = _preprocess(
        [
            "--input",
            "s3://no-such-bucket/raw/",
            "--output",
            f"s3://{BUCKET}/errors/out",
            "--pseudonym_key_file",
            f"s3://{BUCKET}/errors/pseudonym.key",
            *options,
        ]
    )
    assert done.returncode == 2
    assert "--input s3://no-such-bucket/raw/: matched no files" in done.stderr
    assert "Traceback" not in done.stderr
    # No credentials anywhere: an error at once, not minutes of Beam's retries.
    bare = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    bare.update(AWS_EC2_METADATA_DISABLED="true", AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "eegfm.pipelines.job.preprocess",
            "--input",
            f"s3://{BUCKET}/errors/raw/",
            "--output",
            "unused",
            "--pseudonym_key_file",
            f"s3://{BUCKET}/errors/pseudonym.key",
            "--s3_endpoint_url",
            endpoint,
            "--keep_paths",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=bare,
        timeout=120,
    )
    assert done.returncode == 2
    assert f"error: s3://{BUCKET}/errors/raw/: no AWS credentials found: pass --s3_access_key_id" in done.stderr


def test_a_public_bucket_is_read_without_credentials(s3, shared_data, tmp_path):
    # OpenNeuro's layout: a public bucket anyone may read, whose objects are public-read; one
    # object here is private, as a bucket can hold both.
    endpoint, client = s3
    client.create_bucket(Bucket="public-eeg", ACL="public-read")
    for name, acl in (
        ("Subject00_2.edf", "public-read"),
        ("Subject01_2.edf", "public-read"),
        ("Subject02_2.edf", "private"),
    ):
        client.put_object(
            Bucket="public-eeg", Key=f"ds/{name}", Body=(shared_data / "eegmat" / name).read_bytes(), ACL=acl
        )
    (tmp_path / "key").write_bytes(KEY)
    bare = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    bare.update(AWS_EC2_METADATA_DISABLED="true", AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull)
    args = [
        sys.executable,
        "-m",
        "eegfm.pipelines.job.preprocess",
        "--input",
        "s3://public-eeg/ds/",
        "--output",
        str(tmp_path / "out"),
        "--pseudonym_key_file",
        str(tmp_path / "key"),
        "--s3_endpoint_url",
        endpoint,
        "--s3_region_name",
        "us-east-1",
        "--no_artifact_model",
    ]
    done = subprocess.run(args, cwd=REPO, capture_output=True, text=True, env=bare, timeout=120)
    assert done.returncode == 2 and "no AWS credentials found" in done.stderr  # signed requests need them
    # Unsigned requests, in the launcher (listing) and in 2 worker processes (reading the recordings)
    # started as new interpreters, as Dataflow's are (forked warm workers inherit the launcher's).
    done = subprocess.run(
        [
            *args,
            "--s3_anonymous",
            "--keep_paths",
            "--direct_running_mode",
            "multi_processing",
            "--direct_num_workers",
            "2",
            "--cold_workers",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=bare,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    status = {e["source"].rsplit("/", 1)[1]: (e["status"], e.get("reason", "")) for e in manifest["inputs"]}
    assert status["Subject00_2.edf"][0] == status["Subject01_2.edf"][0] == "processed"
    private = status["Subject02_2.edf"]
    assert private == (
        "quarantined",
        "Subject02_2.edf: cannot read file (S3ClientError: ('An error occurred (403) "
        "when calling the HeadObject operation: Forbidden', 403))",
    ), private
    assert manifest["counts"]["windows"] > 0
    done = subprocess.run(
        [*args[:6], "s3://public-eeg/out", *args[7:], "--s3_anonymous"],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=bare,
        timeout=120,
    )
    assert done.returncode == 2
    assert (
        "--s3_anonymous: unsigned requests cannot write or read a private key; --output s3://public-eeg/out"
        in done.stderr
    )


@pytest.mark.slow  # the GCS round trip stays in the default run
def test_the_job_reads_and_writes_s3_like_local_disk(s3, mixed_tree, tmp_path, beam_options, monkeypatch):
    endpoint, client = s3
    root, files = mixed_tree
    for name, data in files.items():
        client.put_object(Bucket=BUCKET, Key=f"raw/{name}", Body=data)
    client.put_object(Bucket=BUCKET, Key="keys/pseudonym.key", Body=KEY)
    (tmp_path / "pseudonym.key").write_bytes(KEY)
    s3_options = [
        "--s3_endpoint_url",
        endpoint,
        "--s3_access_key_id",
        "testing",
        "--s3_secret_access_key",
        "testing",
        "--s3_region_name",
        "us-east-1",
    ]

    done = _preprocess(
        [
            "--input",
            f"s3://{BUCKET}/raw/",
            "--output",
            f"s3://{BUCKET}/out",
            "--pseudonym_key_file",
            f"s3://{BUCKET}/keys/pseudonym.key",
            *s3_options,
        ]
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Finished listing" not in done.stderr  # Beam's root-logger chatter is kept out
    local = _preprocess(
        [
            "--input",
            str(root),
            "--output",
            str(tmp_path / "out"),
            "--pseudonym_key_file",
            str(tmp_path / "pseudonym.key"),
        ]
    )
    assert local.returncode == 0, local.stderr[-3000:]

    manifest = json.loads(client.get_object(Bucket=BUCKET, Key="out/manifest.json")["Body"].read())
    status = {e["source"].rsplit("/", 1)[-1]: e for e in manifest["inputs"]}
    assert {e["source"] for e in manifest["inputs"]} == {f"s3://{BUCKET}/raw/{n}" for n in files} | {
        f"s3://{BUCKET}/raw/lab/rec.mff"
    }
    assert status["Subject00_1.edf"]["status"] == status["Subject00_2.edf"]["status"] == "processed"
    # Fetched as stored, not gunzipped on the way: MNE reads it and finds its 2 channels.
    assert "Channels found: 'F4-A1', 'CZ-A2'" in status["rest_raw.fif.gz"]["reason"]
    assert status["test_NO.vhdr"]["status"] == "quarantined"  # read with its .vmrk/.eeg companions
    assert "only 0 of the 19 10-20 channels are present" in status["test_NO.vhdr"]["reason"]
    assert "only 0 of the 19 10-20 channels are present" in status["renamed.vhdr"]["reason"]
    # EEGLAB data files travel with their .set, renamed or not (read here as on local disk)
    assert status["renamed_set.set"]["status"] == status["renamed_pair.set"]["status"] == "processed"
    assert status["empty.edf"]["status"] == "quarantined"
    assert status["empty.edf"]["reason"].startswith("empty.edf: ")
    # The parts after the first are fetched with it and read through it, once.
    assert status["rest_raw.fif"]["status"] == "processed" and status["rest_raw.fif"]["windows"] == 6
    assert status["rest_raw.fif"]["split_parts"] == ["rest_raw.fif", "rest_raw-1.fif", "rest_raw-2.fif"]
    assert status["rest_raw-1.fif"]["status"] == status["rest_raw-2.fif"]["status"] == "ignored"
    # An MFF folder is fetched whole and read as one recording (numbered sensors: quarantined), its
    # digest over its files the one a local run takes.
    assert "Channels found: 'E1', 'E2'" in status["rec.mff"]["reason"] and status["signal1.bin"]["status"] == "ignored"
    local_manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert status["rec.mff"]["source_sha256"] == next(
        e["source_sha256"] for e in local_manifest["inputs"] if e["source"].endswith("rec.mff")
    )
    quarantine = client.get_object(Bucket=BUCKET, Key="out/quarantine.jsonl")["Body"].read().decode()
    assert sum(json.loads(line)["kind"] == "input" for line in quarantine.splitlines()) == 5
    written = sorted(o["Key"][len("out/") :] for o in client.list_objects_v2(Bucket=BUCKET, Prefix="out/")["Contents"])
    local = (tmp_path / "out").rglob("*")  # but the lock a local output folder holds (eegfm.core.run_lock)
    assert written == sorted(str(p.relative_to(tmp_path / "out")) for p in local if p.is_file() and p.name != RUN_LOCK)
    assert "quarantine.jsonl" in written and not any("beam-temp" in name for name in written)

    # From here on this process finds the store as boto3 does by default: the environment.
    for name, value in {**AWS_ENV, "AWS_ENDPOINT_URL": endpoint}.items():
        monkeypatch.setenv(name, value)
    # Same inputs and key: the same records as the run on local disk, byte for byte.
    remote, on_disk = _records(f"s3://{BUCKET}/out"), _records(str(tmp_path / "out"))
    assert sorted(remote) == sorted(on_disk) and len(remote) == 3
    assert remote == on_disk
    assert sum(map(len, remote.values())) == manifest["counts"]["windows"] > 0

    # The training loader reads the output where it lies.
    info = describe(f"s3://{BUCKET}/out")
    assert info.counts["windows"] == manifest["counts"]["windows"] and len(info.sites) == 3
    # Its manifest lists each object's size as the store lists it: training's check passes.
    assert check_shards(f"s3://{BUCKET}/out") == [] and len(manifest["shard_bytes"]) == len(manifest["shards"])
    loader = EEGLoader(
        f"s3://{BUCKET}/out",
        LoaderConfig(batch_size=8, num_workers=0, shuffle=False),
        rank=0,
        world_size=1,
        infinite=False,
    )
    batches = list(loader)
    assert sum(len(b["label"]) for b in batches) == info.counts["windows"]
    assert {tuple(b["eeg"].shape[1:]) for b in batches} == {(19, 2560)}

    # The data-quality report reads it there too: the same picture's numbers as the local run's.
    from eegfm.pipelines.quality.site_report import artifact_scores, site_summary, write_report

    assert write_report(f"s3://{BUCKET}/out") == f"s3://{BUCKET}/out/report.png"  # beside the records
    assert client.get_object(Bucket=BUCKET, Key="out/report.png")["Body"].read()[:4] == b"\x89PNG"
    assert site_summary(manifest) == site_summary(local_manifest)
    remote_scores = artifact_scores(f"s3://{BUCKET}/out", manifest, 100)
    local_scores = artifact_scores(str(tmp_path / "out"), local_manifest, 100)
    assert {k: v.tolist() for k, v in remote_scores.items()} == {k: v.tolist() for k, v in local_scores.items()}


def test_a_gcs_output_without_credentials_fails_at_once(shared_data, tmp_path):
    # Beam would retry finding credentials for about 25 s, go on anonymously and fail at the first
    # write, or after 120 s of retries where storage.googleapis.com cannot be reached.
    bare = {k: v for k, v in os.environ.items() if k not in ("GOOGLE_APPLICATION_CREDENTIALS", "STORAGE_EMULATOR_HOST")}
    bare.update(
        CLOUDSDK_CONFIG=str(tmp_path / "gcloud"), GCE_METADATA_HOST="127.0.0.1:9", GCE_METADATA_IP="127.0.0.1:9"
    )  # no gcloud login, no metadata server
    (tmp_path / "key").write_bytes(KEY)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "eegfm.pipelines.job.preprocess",
            "--input",
            str(shared_data / "eegmat" / "Subject00_2.edf"),
            "--output",
            "gs://eegfm-test/out",
            "--pseudonym_key_file",
            str(tmp_path / "key"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=bare,
        timeout=120,
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert (
        "error: gs://eegfm-test/out: no Google Cloud credentials found: run `gcloud auth application-default "
        "login`" in done.stderr
    )


class _Metadata(BaseHTTPRequestHandler):
    """The GCE metadata server, as much of it as google-auth asks for: a VM's default service
    account and its access token. The emulator ignores the token; GCS would check it."""

    ANSWERS = {
        "": "",
        "/computeMetadata/v1/project/project-id": "eegfm-test",
        "/computeMetadata/v1/universe/universe-domain": "googleapis.com",
        "/computeMetadata/v1/instance/service-accounts/default": json.dumps(
            {
                "email": "loader@eegfm-test.iam.gserviceaccount.com",
                "aliases": ["default"],
                "scopes": ["https://www.googleapis.com/auth/cloud-platform"],
            }
        ),
        "/computeMetadata/v1/instance/service-accounts/default/token": json.dumps(
            {"access_token": "test-token", "expires_in": 3600, "token_type": "Bearer"}
        ),
    }
    # The real server answers for the account's email as for "default": google-auth asks by email
    # once a refresh has told it the address (a forked job's inherited credentials do).
    ANSWERS |= {
        path.replace("/default", "/loader@eegfm-test.iam.gserviceaccount.com"): answer
        for path, answer in ANSWERS.items()
        if "/service-accounts/default" in path
    }

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        body = self.ANSWERS.get(self.path.split("?", 1)[0].rstrip("/"))
        data = (body or "").encode()
        self.send_response(200 if body is not None else 404)
        self.send_header("Metadata-Flavor", "Google")
        self.send_header("Content-Type", "application/json" if data.startswith(b"{") else "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        """Quiet: http.server prints a line per request otherwise."""


@pytest.fixture
def gcs():
    """``(environment, bucket)``: gcp-storage-emulator with an empty bucket, and a metadata server
    that gives google-auth credentials as on a GCE VM (without any, Beam retries for 25 s and then
    connects anonymously). ``environment`` is for the processes under test."""
    from gcp_storage_emulator.server import create_server
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    metadata = ThreadingHTTPServer(("127.0.0.1", 0), _Metadata)
    threading.Thread(target=metadata.serve_forever, daemon=True).start()
    emulator = create_server("127.0.0.1", 0, in_memory=True, default_bucket=BUCKET)
    emulator.start()
    endpoint = f"http://127.0.0.1:{emulator._api._httpd.server_port}"
    env = {
        "STORAGE_EMULATOR_HOST": endpoint,
        "GCE_METADATA_HOST": f"127.0.0.1:{metadata.server_port}",
        "GCE_METADATA_IP": f"127.0.0.1:{metadata.server_port}",
    }
    client = storage.Client(
        project="eegfm-test", credentials=AnonymousCredentials(), client_options={"api_endpoint": endpoint}
    )
    yield env, client.bucket(BUCKET)
    emulator.stop()
    metadata.shutdown()


def test_the_job_reads_and_writes_gcs(shared_data, tmp_path, gcs):
    env, bucket = gcs
    bucket.blob("raw/eegmat/Subject01_1.edf").upload_from_filename(str(shared_data / "eegmat" / "Subject01_1.edf"))
    key = tmp_path / "pseudonym.key"
    key.write_bytes(KEY)
    done = _preprocess(
        ["--input", f"gs://{BUCKET}/raw/", "--output", f"gs://{BUCKET}/out", "--pseudonym_key_file", str(key)], env=env
    )
    assert done.returncode == 0, done.stderr[-3000:]
    manifest = json.loads(bucket.blob("out/manifest.json").download_as_bytes())
    assert manifest["counts"]["processed"] == 1 and manifest["counts"]["windows"] > 0
    assert bucket.blob("out/quarantine.jsonl").download_as_bytes() == b""

    # A training process (google-auth reads the metadata server's address when imported, so
    # not this one): every window, finite.
    count = (
        "from eegfm.training.data import EEGLoader, LoaderConfig\n"
        "import sys, torch\n"
        "config = LoaderConfig(batch_size=16, num_workers=0, shuffle=False)\n"
        "batches = list(EEGLoader(sys.argv[1], config, rank=0, world_size=1, infinite=False))\n"
        "assert all(torch.isfinite(b['eeg']).all() for b in batches)\n"
        "print(sum(len(b['label']) for b in batches))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", count, f"gs://{BUCKET}/out"],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert int(done.stdout.split()[-1]) == manifest["counts"]["windows"]
