import logging
import math
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch

from eegfm.core import stores as object_stores
from eegfm.core.config import ConfigError
from eegfm.training import tracking
from eegfm.training.tracking import (
    RUN_ID_FILE,
    ReconstructionMeter,
    Tracker,
    TrackingError,
    memory_stats,
    read_offline_run,
    reconstruction_metrics,
)
from tests.conftest import free_port


def test_offline_run_records_metrics_and_a_resumed_job_continues_the_same_run(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no netrc: no credentials
    with Tracker("eegfm-test", tmp_path / "run", {"lr": 1e-3, "preset": "tiny"}, run_name="t") as tracker:
        for step in range(3):
            tracker.log(
                {
                    "train/loss": 1.0 / (step + 1),
                    "train/tokens": np.int64(100 * step),
                    "recon/mse/site/s01": torch.tensor(0.25),
                },
                step=step,
            )
        tracker.summary({"best/val_loss": 0.5})
        run_id = tracker.run_id
    runs = sorted((tmp_path / "run" / "wandb").glob("offline-run-*"))
    assert [r.name.endswith(f"-{run_id}") for r in runs] == [True]
    recorded = read_offline_run(runs[0])
    history = [(row["_step"], row["train/loss"], row["train/tokens"]) for row in recorded["history"]]
    assert history == [(0, 1.0, 0), (1, 0.5, 100), (2, pytest.approx(1 / 3), 200)]
    assert recorded["summary"]["best/val_loss"] == 0.5
    assert recorded["summary"]["recon/mse/site/s01"] == 0.25
    assert recorded["config"]["lr"] == 1e-3 and recorded["config"]["preset"] == "tiny"
    assert (tmp_path / "run" / RUN_ID_FILE).read_text().strip() == run_id

    # A resumed job (same run_dir) continues the same run; "online" without credentials stays offline.
    with Tracker("eegfm-test", tmp_path / "run", {"lr": 1e-3}, mode="online") as resumed:
        assert resumed.mode == "offline" and resumed.run_id == run_id
        resumed.log({"train/loss": 0.1}, step=3)
    # A second run directory; within the same second wandb names it "offline-run-<time>-<id>-1"
    runs = sorted((tmp_path / "run" / "wandb").glob(f"offline-run-*-{run_id}*"))
    assert len(runs) == 2 and read_offline_run(runs[-1])["history"][0]["train/loss"] == 0.1


class _Refusing(BaseHTTPRequestHandler):
    """A W&B server stand-in that records every request and answers 401."""

    seen: list[str] = []

    def _answer(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        _Refusing.seen.append(f"{self.command} {self.path}")
        body = b'{"data": null, "errors": [{"message": "unauthorized"}]}'
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, *args) -> None:
        """Quiet."""


@pytest.fixture
def wandb_server():
    """The URL of a local server standing in for W&B, and the list of requests it received."""
    _Refusing.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Refusing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}", _Refusing.seen
    server.shutdown()


def test_an_offline_run_sends_nothing_to_the_wandb_server(tmp_path, wandb_server):
    # wandb 0.31 posted its SDK telemetry (OpenTelemetry metrics) to the server at exit from an
    # offline run, unless the process-wide settings are offline too. A fresh process, as a job is
    # (the tests' own WANDB_MODE=offline is left out, as a user's shell has none).
    url, seen = wandb_server
    script = (
        "import sys\nfrom eegfm.training.tracking import Tracker\n"
        "with Tracker('eegfm-test', sys.argv[1], {'lr': 1e-3}) as t:\n"
        "    t.log({'train/loss': 1.0}, step=0)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(WANDB_BASE_URL=url, HOME=str(tmp_path / "home"))
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "run")],
        cwd=Path(__file__).parents[2],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert seen == [] and "Failed to export" not in done.stderr
    (run,) = (tmp_path / "run" / "wandb").glob("offline-run-*")
    assert read_offline_run(run)["history"][0]["train/loss"] == 1.0


def test_online_falls_back_to_offline_when_the_server_cannot_be_reached_or_refuses(
    tmp_path, monkeypatch, caplog, wandb_server
):
    monkeypatch.setenv("WANDB_API_KEY", "0123456789" * 4)
    monkeypatch.setattr(object_stores, "_REACHABLE", set())
    closed = free_port()  # nothing listens there
    monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{closed}")
    with caplog.at_level(logging.WARNING, logger="eegfm.training.tracking"):
        with Tracker("eegfm-test", tmp_path / "a", {}, mode="online") as tracker:  # W&B retried ~90 s and raised
            assert tracker.mode == "offline" and tracker.active
            tracker.log({"x": 1.0}, step=0)
    assert f"cannot reach the W&B server at 127.0.0.1:{closed} (Connection refused" in caplog.text
    # A server that answers but refuses the key: wandb.init raises; the job goes on offline.
    url, seen = wandb_server
    monkeypatch.setenv("WANDB_BASE_URL", url)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="eegfm.training.tracking"):
        with Tracker("eegfm-test", tmp_path / "b", {}, mode="online") as tracker:
            assert tracker.mode == "offline" and tracker.active
            tracker.log({"x": 2.0}, step=0)
    assert seen and "wandb.init failed online (CommError: " in caplog.text
    (run,) = (tmp_path / "b" / "wandb").glob("offline-run-*")
    assert read_offline_run(run)["history"][0]["x"] == 2.0


def test_credentials_are_looked_up_for_the_server_runs_go_to(tmp_path, monkeypatch):
    for name in ("WANDB_API_KEY", "WANDB_IDENTITY_TOKEN_FILE", "WANDB_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    netrc = tmp_path / "netrc"
    netrc.write_text("machine api.forge.coreweave.com\n  login user\n  password " + "k" * 40 + "\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    assert tracking._base_url() == "https://api.forge.coreweave.com"  # wandb 0.31's default server
    assert tracking._has_credentials(tracking._base_url())  # `wandb login` wrote it for that host
    assert not tracking._has_credentials("https://api.wandb.ai")
    monkeypatch.setenv("WANDB_BASE_URL", "https://wandb.hospital.example/")
    assert tracking._base_url() == "https://wandb.hospital.example"
    assert not tracking._has_credentials(tracking._base_url())
    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    assert tracking._has_credentials(tracking._base_url())


def test_only_numbers_under_safe_names_are_accepted_on_every_rank(tmp_path):
    for tracker in (Tracker("p", tmp_path / "a", {}, mode="disabled"), Tracker("p", tmp_path / "b", {}, rank=1)):
        assert not tracker.active and tracker.run_id is None
        with pytest.raises(TrackingError) as err:
            tracker.log({"patient": "Jane Doe 1962-03-04"}, step=0)
        assert "expected a number; got a str of length 19" in str(err.value)
        assert "Jane" not in str(err.value)  # never echoed into logs
        with pytest.raises(TrackingError, match=r"metric name 'loss of Jane' is not allowed"):
            tracker.log({"loss of Jane": 1.0}, step=0)
        with pytest.raises(TrackingError, match=r"expected a scalar; got a tensor of shape \(2,\)"):
            tracker.summary({"x": torch.zeros(2)})
        with pytest.raises(TrackingError, match=r"step: expected a non-negative integer; got -1"):
            tracker.log({"x": 1.0}, step=-1)
        tracker.log({"x": 1.0, "nan_is_fine": math.nan, "flag": True}, step=0)
        tracker.finish()
    assert not (tmp_path / "b").exists()  # rank 1 writes nothing
    with pytest.raises(ConfigError, match=r"mode: expected one of 'offline', 'online', 'disabled'; got 'cloud'"):
        Tracker("p", tmp_path, {}, mode="cloud")


def test_reconstruction_metrics_known_values():
    # Two rows (sites A and B), two channels, four samples.
    target = torch.tensor([[[1.0, 2.0, 3.0, 4.0], [1.0, 1.0, 1.0, 1.0]], [[0.0, 1.0, 0.0, 1.0], [2.0, 4.0, 6.0, 8.0]]])
    pred = torch.tensor([[[2.0, 4.0, 6.0, 8.0], [0.0, 0.0, 0.0, 0.0]], [[0.0, 1.0, 0.0, 1.0], [8.0, 6.0, 4.0, 2.0]]])
    mask = torch.tensor([[[1, 1, 1, 1], [1, 1, 0, 0]], [[0, 0, 0, 0], [1, 1, 1, 1]]], dtype=torch.bool)
    out = reconstruction_metrics(pred, target, mask, ["Fp1", "Cz"], ["A", "B"])
    # Fp1: only row A counts: errors 1, 4, 9, 16 -> mse 7.5; pred = 2 * target -> corr 1.
    assert out["recon/mse/ch/Fp1"] == pytest.approx(7.5)
    assert out["recon/corr/ch/Fp1"] == pytest.approx(1.0)
    # Cz: row A samples 0-1 (error 1 each) and row B (errors 36, 4, 4, 36) -> 82 / 6.
    assert out["recon/mse/ch/Cz"] == pytest.approx(82 / 6)
    # Site B: only Cz, a reversed ramp -> corr -1; site A: target 1,2,3,4,1,1 vs 2,4,6,8,0,0.
    assert out["recon/corr/site/B"] == pytest.approx(-1.0)
    assert out["recon/mse/site/B"] == pytest.approx(20.0)
    expected_a = np.corrcoef([1, 2, 3, 4, 1, 1], [2, 4, 6, 8, 0, 0])[0, 1]
    assert out["recon/corr/site/A"] == pytest.approx(expected_a)
    assert out["recon/mse/all"] == pytest.approx((30 + 2 + 80) / 10)
    # A shorter prediction (whole patches) is compared on its own length.
    short = reconstruction_metrics(pred[..., :2], target, mask, ["Fp1", "Cz"], ["A", "B"])
    assert short["recon/mse/ch/Fp1"] == pytest.approx(2.5)


def test_reconstruction_metrics_leave_out_empty_and_constant_groups():
    target = torch.ones(2, 1, 4)
    mask = torch.tensor([[[1, 1, 1, 1]], [[0, 0, 0, 0]]], dtype=torch.bool)
    out = reconstruction_metrics(torch.zeros(2, 1, 4), target, mask, ["O1"], ["s1", "s2"])
    assert out == {"recon/mse/all": 1.0, "recon/mse/ch/O1": 1.0, "recon/mse/site/s1": 1.0}
    with pytest.raises(ValueError, match=r"site_ids: expected one site per batch row \(2\); got 1"):
        reconstruction_metrics(torch.zeros(2, 1, 4), target, mask, ["O1"], ["s1"])


def test_the_meter_adds_up_batches_and_ranks_as_one_batch():
    # A log interval's metrics are those of all its micro-batches on all ranks taken together.
    gen = torch.Generator().manual_seed(0)
    target = torch.randn(6, 3, 20, generator=gen)
    pred = target + 0.5 * torch.randn(6, 3, 20, generator=gen)
    mask = torch.rand(6, 3, 20, generator=gen) > 0.4
    sites = ["A", "B", "A", "C", "B", "A"]
    names = ["Fp1", "Cz", "O2"]
    whole = reconstruction_metrics(pred, target, mask, names, sites)
    assert {k.split("/")[-1] for k in whole if "/site/" in k} == {"A", "B", "C"}
    rank0, rank1 = ReconstructionMeter(names), ReconstructionMeter(names)
    rank0.add(pred[:2], target[:2], mask[:2], sites[:2])
    rank0.add(pred[2:3], target[2:3], mask[2:3], sites[2:3])
    rank1.add(pred[3:], target[3:], mask[3:], sites[3:])
    states = [rank0.pop(), rank1.pop()]
    assert ReconstructionMeter.report(states, names) == pytest.approx(whole)
    assert rank0.pop() == {"channels": None, "sites": {}}  # popped: the next interval starts afresh
    assert ReconstructionMeter.report([rank0.pop()], names) == {}


def test_memory_stats_reports_peak_rss():
    stats = memory_stats("cpu")
    assert set(stats) == {"memory/peak_rss_mb"} and 10 < stats["memory/peak_rss_mb"] < 1e6
