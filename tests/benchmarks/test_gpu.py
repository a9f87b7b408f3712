"""benchmarks/gpu.sh: its dry run on the CPU writes every section, and the report's bookkeeping
(ratios, verdicts, records that survive a killed step) on numbers shaped like a GPU run's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks.gpu import BY_NAME, launch
from benchmarks.gpu_steps import report as gpu_report
from benchmarks.gpu_steps.common import Record, pinned_versions, read_record, verdict
from benchmarks.gpu_steps.stack import differences
from benchmarks.gpu_steps.tensorrt_engine import load_windows, noise_windows

REPO = Path(__file__).resolve().parents[2]
SECTIONS = {"software_stack", "pretrain", "peers", "loader", "tensorrt", "horovod"}


def _gpu_sh(*args: str, timeout: float, cwd: Path = REPO, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(REPO / "benchmarks" / "gpu.sh"), *args],
        cwd=cwd,
        env=dict(os.environ, PYTHON=sys.executable, **env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory) -> tuple[dict, str]:
    output = tmp_path_factory.mktemp("gpu") / "gpu.json"
    done = _gpu_sh("--dry-run", "--output", str(output), timeout=400)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(output.read_text()), done.stdout


def test_dry_run_writes_every_section_marked_dry_run(dry_run):
    report, stdout = dry_run
    assert report["benchmark"] == "gpu" and report["dry_run"] is True and report["complete"] is True
    assert SECTIONS <= set(report)
    assert {line["section"] for line in report["summary"]} == SECTIONS
    for name in SECTIONS:
        section = report[name]
        assert section["dry_run"] is True, name
        assert section["met"] is None and section["target"], name  # a dry run judges no target
        assert section["status"] in ("ok", "not_run"), (name, section.get("why"), section.get("log_tail"))
        if section["status"] == "not_run":
            assert section["why"], name
        if name != "software_stack":
            assert section["gpu_plan"], name  # what the GPU run would measure
        assert name in stdout
    assert "on a GPU it measures" in stdout


def test_dry_run_lists_the_software_found_against_the_pinned(dry_run):
    stack = dry_run[0]["software_stack"]
    assert stack["status"] == "ok"
    pinned = pinned_versions()
    for dist in ("torch", "onnxruntime", "tensorrt", "horovod", "braindecode", "transformers", "triton"):
        entry = stack["packages"][dist]
        assert {"version", "pinned", "importable"} <= set(entry), dist
        assert entry["pinned"] == pinned.get(dist, entry["pinned"]), dist
    assert stack["packages"]["torch"]["version"].split("+")[0] == pinned["torch"]  # the pinned stack runs here
    assert stack["packages"]["braindecode"]["pinned_for_benchmarks"] == "1.8.1"
    assert stack["python"]["version"] and stack["python"]["pinned"] == "3.11"
    assert {"torch_cuda", "driver", "pinned"} <= set(stack["accelerator"])
    assert isinstance(stack["differences"], list)
    assert stack["eegfm_import"] and stack["wheels"]["installed"] is False


def test_dry_run_checks_each_step_on_the_cpu(dry_run):
    report = dry_run[0]
    pretrain = report["pretrain"]
    assert pretrain["status"] == "ok" and pretrain["gpu_plan"]["batches"] == [64, 256, 1024]
    (run,) = pretrain["runs"]
    assert run["preset"] == "tiny" and run["compile"] is False and run["windows_per_s"] > 0
    assert pretrain["steps"]["compiled"]["status"] == "not_run"
    loader = report["loader"]
    assert loader["loader"]["windows_per_s"] > 0
    assert loader["against_steps"]["times_hungriest_step"] == round(
        loader["loader"]["windows_per_s"] / run["windows_per_s"], 2
    )
    tensorrt = report["tensorrt"]
    assert tensorrt["onnxruntime"]["max_abs_diff_vs_torch_float32"] < 1e-4
    assert tensorrt["onnxruntime"]["latency_batch1"]["median_ms"] > 0
    assert tensorrt["engine"]["status"] == "not_run"  # no TensorRT, no GPU here
    peers = report["peers"]
    assert peers["status"] == "ok" or "braindecode" in peers["why"]
    horovod = report["horovod"]
    if horovod["status"] == "ok":  # the pinned stack builds Horovod for the CPU (gloo)
        assert horovod["allreduce"]["right"] and len(horovod["steps"]["losses"]) == 2


def test_an_uninstalled_eegfm_is_imported_from_the_repositorys_src(tmp_path):
    # A GPU machine's python has no eegfm installed: the steps and the report import src/eegfm.
    source = str(REPO / "src")
    (tmp_path / "sitecustomize.py").write_text(
        "import os, sys\n"
        f"if {source!r} not in os.environ.get('PYTHONPATH', ''):\n"
        f"    sys.path[:] = [p for p in sys.path if p != {source!r}]\n"
    )
    output = tmp_path / "gpu.json"
    only = ("--dry-run", "--only", "pretrain_eager", "--output", str(output))
    done = _gpu_sh(*only, timeout=300, cwd=tmp_path, PYTHONPATH=str(tmp_path))
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(output.read_text())
    assert "report_error" not in report
    assert report["software_stack"]["eegfm_import"].startswith("the repository's src/")
    assert report["pretrain"]["status"] == "ok", report["pretrain"].get("why")


def test_help_lists_the_options():
    done = _gpu_sh("--help", timeout=60)
    assert done.returncode == 0, done.stderr
    for option in ("--dry-run", "--output", "--windows", "--only", "--budget"):
        assert option in done.stdout


def test_a_step_past_its_budget_is_stopped_and_reported(tmp_path):
    options = {"dry_run": True, "batches": [2], "steps": 1}
    result = launch(BY_NAME["pretrain_eager"], options, 1.0, dict(os.environ), tmp_path)
    assert result["status"] == "timed_out" and "its 1 s budget" in result["why"]
    assert result["wall_s"] < 15 and "log_tail" in result


def test_a_record_keeps_what_was_written_before_a_torn_line(tmp_path):
    record = Record(tmp_path / "r.jsonl")
    record.set("device", "H100")
    record.add("runs", {"batch": 64})
    record.add("runs", {"batch": 256})
    with (tmp_path / "r.jsonl").open("a") as out:
        out.write('{"op": "add", "key": "runs", "val')  # killed mid-line
    assert read_record(tmp_path / "r.jsonl") == {"device": "H100", "runs": [{"batch": 64}, {"batch": 256}]}
    assert read_record(tmp_path / "missing.jsonl") == {}


def _run(batch: int, compile: bool, windows_per_s: float, mfu: float) -> dict:
    return {
        "batch": batch,
        "compile": compile,
        "windows_per_s": windows_per_s,
        "samples_per_s": windows_per_s,
        "mfu": mfu,
    }


EEGFM = [
    _run(64, False, 1223.0, 0.0037),
    _run(1024, False, 4330.0, 0.0193),
    _run(1024, True, 14219.0, 0.0634),
    {"batch": 256, "compile": True, "error": "OutOfMemoryError"},
]


def test_pretrain_judges_mfu_at_batch_1024_on_the_best_variant():
    ok = {"status": "ok", "runs": EEGFM[:2]}
    section = gpu_report.pretrain(ok, {"status": "timed_out", "runs": EEGFM[2:]}, False, {})
    assert section["status"] == "partial" and section["mfu_at_target_batch"] == 0.0634
    assert section["met"] is False and section["best"]["windows_per_s"] == 14219.0
    fast = gpu_report.pretrain({"status": "ok", "runs": [_run(1024, False, 1.0, 0.2)]}, {"status": "ok"}, False, {})
    assert fast["met"] is True and fast["status"] == "ok"


def test_peers_ratio_is_eager_against_eager_at_equal_batch():
    peers = {
        "status": "ok",
        "runs": [
            {"model": "CBraMod", "batch": 64, "windows_per_s": 500.0},
            {"model": "CBraMod", "batch": 1024, "windows_per_s": 1000.0},
            {"model": "LaBraM-base", "batch": 1024, "windows_per_s": 800.0},
        ],
    }
    section = gpu_report.peers(peers, EEGFM, False, {})
    rows = {row["batch"]: row for row in section["comparison"]}
    assert rows[64]["eegfm_eager_over_cbramod"] == round(1223 / 500, 2)
    assert rows[1024]["eegfm_eager_over_cbramod"] == 4.33 and rows[1024]["eegfm_best_over_cbramod"] == 14.22
    assert rows[1024]["eegfm_eager_over_labram"] == round(4330 / 800, 2)
    assert section["met"] is True
    slow = dict(peers, runs=[{"model": "CBraMod", "batch": 64, "windows_per_s": 1000.0}])
    assert gpu_report.peers(slow, EEGFM, False, {})["met"] is False
    assert gpu_report.peers(slow, EEGFM, True, {})["met"] is None  # a dry run judges nothing


def test_loader_is_set_against_the_hungriest_step():
    step = {"status": "ok", "loader": {"workers": 15, "windows_per_s": 50000.0}}
    section = gpu_report.loader(step, EEGFM, False, {})
    assert section["against_steps"]["times_hungriest_step"] == round(50000 / 14219, 2)
    assert section["met"] is False
    assert gpu_report.loader({"status": "not_run", "why": "no cramjam"}, EEGFM, False, {})["met"] is None


def test_verdict_needs_every_target_judged_to_be_met():
    assert verdict([True, True]) is True
    assert verdict([True, None]) is None and verdict([]) is None
    assert verdict([None, False]) is False


def test_differences_name_every_package_off_the_pin():
    found = {
        "torch": {"version": "2.11.0+cu130", "pinned": "2.13.0", "importable": True},
        "onnxruntime": {"version": "1.31.1", "pinned": "1.31.1", "importable": True},
        "tensorrt": {"version": "10.13.0", "pinned": None, "importable": True},
        "mne": {"version": None, "pinned": "1.13.2", "importable": False},
        "braindecode": {"version": None, "pinned": "0.8.1", "pinned_for_benchmarks": "1.8.1", "importable": False},
    }
    lines = differences(found, "3.12.3", {"torch_cuda": "13.0", "gpu": "NVIDIA H100 80GB HBM3", "driver": "580.1"})
    assert "torch: 2.11.0+cu130 here, 2.13.0 pinned" in lines
    assert "tensorrt: 10.13.0 here, not pinned" in lines and "mne: not installed here, 1.13.2 pinned" in lines
    assert not any(line.startswith("onnxruntime") for line in lines)
    assert any(line.startswith("python: 3.12.3 here") for line in lines)
    assert any("CUDA 13.0" in line for line in lines) and any("driver 580.1" in line for line in lines)
    assert sum(line.startswith("braindecode") for line in lines) == 2  # the lock's pin and the peers'


def test_windows_come_from_a_file_or_are_noise(tmp_path):
    noise = noise_windows(3, 2560)
    assert noise.shape == (3, 19, 2560) and np.allclose(noise.std(axis=-1), 20, rtol=1e-3)
    eeg, mask, source = load_windows(None, 2)
    assert eeg.shape == (2, 19, 2560) and mask.shape == (2, 19) and source is None
    saved = tmp_path / "w.npz"
    np.savez(saved, eeg=np.ones((2, 19, 3000), np.float32), channel_mask=np.zeros((2, 19), np.float32))
    eeg, mask, source = load_windows(str(saved), 3)  # fewer in the file: repeated
    assert eeg.shape == (3, 19, 2560) and not mask.any() and "2 windows" in source
    np.save(tmp_path / "short.npy", np.ones((1, 19, 100), np.float32))
    with pytest.raises(ValueError, match="expected"):
        load_windows(str(tmp_path / "short.npy"), 1)
