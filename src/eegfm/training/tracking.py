"""Experiment tracking with Weights & Biases, from rank 0 only, offline unless asked otherwise.

Offline by default: training runs on air-gapped hospital machines and in CI, and nothing leaves
the machine unless someone chose so (``wandb sync`` uploads later; :func:`read_offline_run` reads a
run back). Online without credentials or a server that answers falls back to offline with a warning.
Only numbers under safe names are logged: EEG metadata carries patient identifiers, and a string
logged by mistake would be uploaded for good. ``<run_dir>/wandb-run-id`` keeps a resumed job in
the same W&B run.
"""

from __future__ import annotations

import json
import math
import netrc
import numbers
import os
import re
import resource
import secrets
import struct
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch

from eegfm.core.config import ConfigError, check_option
from eegfm.core.logs import get_logger
from eegfm.core.stores import unreachable

log = get_logger(__name__)

MODES = ("offline", "online", "disabled")
RUN_ID_FILE = "wandb-run-id"
_METRIC_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:/+\-]{0,199}$")
_RUN_ID = re.compile(r"^[a-z0-9]{1,64}$")


class TrackingError(ValueError):
    """A metric (name or value) that may not be logged; the message names it."""


def _check_metrics(metrics: Mapping[str, Any], where: str) -> dict[str, float | int]:
    """Numbers only, under safe names; strings are refused without repeating their content."""
    if not isinstance(metrics, Mapping):
        raise TrackingError(f"{where}: expected a mapping of metric name -> number; got {type(metrics).__name__}")
    clean: dict[str, float | int] = {}
    for name, value in metrics.items():
        if not isinstance(name, str) or not _METRIC_NAME.match(name):
            raise TrackingError(
                f"{where}: metric name {name!r} is not allowed; names use letters, digits and _ . : / + - "
                "(at most 200 characters)"
            )
        if isinstance(value, torch.Tensor):
            if value.numel() != 1:
                raise TrackingError(
                    f"{where}: metric {name!r}: expected a scalar; got a tensor of shape {tuple(value.shape)}"
                )
            value = value.item()
        if hasattr(value, "dtype") and hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
            value = value.item()  # numpy scalars, including numpy bools
        if isinstance(value, (str, bytes)):
            raise TrackingError(
                f"{where}: metric {name!r}: expected a number; got a {type(value).__name__} of length "
                f"{len(value)} (text is never logged, so that no patient identifier can reach W&B)"
            )
        if not isinstance(value, numbers.Real):
            raise TrackingError(f"{where}: metric {name!r}: expected a number; got a {type(value).__name__}")
        clean[name] = int(value) if isinstance(value, (bool, numbers.Integral)) else float(value)
    return clean


def _base_url() -> str:
    """The W&B server runs go to: ``WANDB_BASE_URL``, else this wandb version's default (wandb
    0.31's is https://api.forge.coreweave.com, not the api.wandb.ai of earlier versions)."""
    if os.environ.get("WANDB_BASE_URL"):
        return os.environ["WANDB_BASE_URL"].rstrip("/")
    import wandb  # heavy (1 s): only where no WANDB_BASE_URL is set

    return str(wandb.Settings().base_url)


def _has_credentials(base_url: str) -> bool:
    """Whether wandb will find credentials for ``base_url``: an API key or identity-token file in
    the environment, or a ``wandb login`` entry in the netrc file (``NETRC``, else ~/.netrc)."""
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    host = urlparse(base_url).hostname or ""
    path = os.environ.get("NETRC") or os.path.expanduser("~/.netrc")
    try:
        return netrc.netrc(path).authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


class Tracker:
    """A W&B run for one training job (a context manager); a no-op on ranks other than 0, which
    still validate, so a bad metric fails in a single-process test too."""

    def __init__(
        self,
        project: str,
        run_dir: str | os.PathLike[str],
        config: Mapping[str, Any],
        *,
        mode: str = "offline",
        rank: int = 0,
        run_name: str | None = None,
        resume_id: str | None = None,
    ) -> None:
        check_option("mode", mode, MODES)
        if not isinstance(project, str) or not project:
            raise ConfigError(f"project: expected a non-empty string; got {project!r}")
        if not isinstance(config, Mapping):
            raise ConfigError(f"config: expected a mapping; got {type(config).__name__}")
        if resume_id is not None and not (isinstance(resume_id, str) and _RUN_ID.match(resume_id)):
            raise ConfigError(f"resume_id: expected lowercase letters and digits (a W&B run id); got {resume_id!r}")
        self.run_dir = Path(run_dir)
        self.rank = rank
        self.mode = mode
        self.run_id: str | None = None
        self._run: Any = None
        if rank != 0 or mode == "disabled":
            return
        if mode == "online":
            self._go_offline_unless_online_works()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.run_id = resume_id or self._stored_run_id() or secrets.token_hex(4)
        (self.run_dir / RUN_ID_FILE).write_text(self.run_id + "\n", encoding="utf-8")
        try:
            self._run = self._start(project, dict(config), run_name)
        except Exception as err:  # noqa: BLE001 - wandb.errors.Error and what its service raises
            if self.mode != "online":
                raise
            # A server that refuses the key or fails mid-handshake must not kill a job at start.
            import wandb  # heavy (1 s): only rank 0 needs it

            self._fall_back(f"wandb.init failed online ({type(err).__name__}: {' '.join(str(err).split())[:300]})")
            wandb.teardown()  # the failed run still holds its id in wandb's service
            self._run = self._start(project, dict(config), run_name)

    def _go_offline_unless_online_works(self) -> None:
        """Offline without credentials or an answering server (W&B would retry ~90 s, then raise)."""
        base_url = _base_url()
        if not _has_credentials(base_url):
            self._fall_back(f"wandb mode 'online' needs WANDB_API_KEY (or `wandb login`) for {base_url}")
        elif (failed := unreachable(base_url)) is not None:
            self._fall_back(f"cannot reach the W&B server at {failed[0]} ({failed[1]}; WANDB_BASE_URL={base_url})")

    def _fall_back(self, why: str) -> None:
        log.warning(
            "%s; logging offline instead, upload later with `wandb sync %s/wandb/offline-run-*`", why, self.run_dir
        )
        self.mode = "offline"

    def _stored_run_id(self) -> str | None:
        try:
            stored = (self.run_dir / RUN_ID_FILE).read_text(encoding="utf-8").strip()
        except OSError:
            return None
        return stored if _RUN_ID.match(stored) else None

    def _start(self, project: str, config: dict[str, Any], run_name: str | None) -> Any:
        import wandb  # imported here: 1 s, and ranks other than 0 never need it

        settings = wandb.Settings(
            mode=self.mode,
            silent=True,
            quiet=True,
            console="off",  # do not capture stdout/stderr into the run
            show_info=False,
            show_warnings=False,
            x_disable_stats=True,  # no system-metrics sampler process
            x_disable_meta=True,  # no host/git/program metadata
            x_disable_machine_info=True,
            disable_git=True,
            save_code=False,
            disable_job_creation=True,
        )
        if self.mode == "offline":
            # wandb 0.31's telemetry follows the process-wide settings and WANDB_ERROR_REPORTING,
            # not the run's: left alone, an offline run posted metrics to the W&B server at exit.
            os.environ.setdefault("WANDB_ERROR_REPORTING", "false")
            wandb.setup(settings=wandb.Settings(mode="offline"))
        return wandb.init(
            project=project,
            dir=str(self.run_dir),
            config=config,
            id=self.run_id,
            resume="allow",
            name=run_name,
            mode=self.mode,
            settings=settings,
        )

    @property
    def active(self) -> bool:
        return self._run is not None

    def log(self, metrics: Mapping[str, Any], step: int) -> None:
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise TrackingError(f"step: expected a non-negative integer; got {step!r}")
        clean = _check_metrics(metrics, "log")
        if self._run is not None:
            self._run.log(clean, step=step)

    def summary(self, metrics: Mapping[str, Any]) -> None:
        clean = _check_metrics(metrics, "summary")
        if self._run is not None:
            self._run.summary.update(clean)

    def finish(self, exit_code: int = 0) -> None:
        """End the run; on return its data is on disk (offline) or uploaded (online).

        ``run.finish`` alone returns before wandb's service has flushed the log, so the service is
        torn down here, which waits for it (one tracker per process is assumed).
        """
        if self._run is not None:
            import wandb  # heavy (1 s): only rank 0 needs it

            run, self._run = self._run, None
            run.finish(exit_code=exit_code)
            wandb.teardown(exit_code=exit_code)

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        self.finish(exit_code=0 if exc_type is None else 1)


def memory_stats(device: str | torch.device | None = None) -> dict[str, float]:
    """Peak host memory of this process and, on CUDA, peak allocated/reserved device memory (MB)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    peak_mb = peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes vs kilobytes
    stats = {"memory/peak_rss_mb": float(peak_mb)}
    if device is not None and torch.device(device).type == "cuda" and torch.cuda.is_available():
        device = torch.device(device)
        stats["memory/cuda_max_allocated_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
        stats["memory/cuda_max_reserved_mb"] = torch.cuda.max_memory_reserved(device) / 2**20
    return stats


def _mse_and_corr(m: Mapping[str, float]) -> tuple[float | None, float | None]:
    n = m["n"]
    if n <= 0:
        return None, None
    mse = m["se"] / n
    var_x, var_y = m["xx"] - m["x"] ** 2 / n, m["yy"] - m["y"] ** 2 / n
    if n < 2 or var_x <= 0 or var_y <= 0:
        return mse, None
    corr = (m["xy"] - m["x"] * m["y"] / n) / math.sqrt(var_x * var_y)
    return mse, max(-1.0, min(1.0, corr))


def reconstruction_metrics(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, channel_names: Sequence[str], site_ids: Sequence[str]
) -> dict[str, float]:
    """MSE and Pearson correlation over the masked samples of ``(batch, n_chans, n_times)`` tensors,
    as ``recon/{mse,corr}/{all,ch/<channel>,site/<site>}``; empty groups and constant sides have no
    entry. A prediction shorter than the target (whole patches) is compared on its own length."""
    meter = ReconstructionMeter(channel_names)
    meter.add(pred, target, mask, site_ids)
    return ReconstructionMeter.report([meter.pop()], channel_names)


_MOMENTS = ("n", "x", "y", "xx", "yy", "xy", "se")


class ReconstructionMeter:
    """The sums behind :func:`reconstruction_metrics`, added up over batches (on their device, so
    the host never waits for the GPU) until :meth:`pop`."""

    def __init__(self, channel_names: Sequence[str]):
        self.channel_names = list(channel_names)
        self._rows: list[torch.Tensor] = []
        self._sites: list[str] = []
        self._channels: torch.Tensor | None = None

    def add(self, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, site_ids: Sequence[str]) -> None:
        if pred.dim() != 3 or target.dim() != 3 or mask.dim() != 3:
            raise ValueError(
                f"pred, target, mask: expected (batch, n_chans, n_times) tensors; got shapes "
                f"{tuple(pred.shape)}, {tuple(target.shape)}, {tuple(mask.shape)}"
            )
        n_times = pred.shape[-1]
        target, mask = target[..., :n_times], mask[..., :n_times]
        if target.shape != pred.shape or mask.shape != pred.shape:
            raise ValueError(
                f"target, mask: expected shape {tuple(pred.shape)} (after cutting to the "
                f"prediction's n_times); got {tuple(target.shape)}, {tuple(mask.shape)}"
            )
        batch, n_chans, _ = pred.shape
        if len(self.channel_names) != n_chans:
            raise ValueError(f"channel_names: expected {n_chans} names; got {len(self.channel_names)}")
        if len(site_ids) != batch:
            raise ValueError(f"site_ids: expected one site per batch row ({batch}); got {len(site_ids)}")
        # Sums over time in float32 (cheap on every micro-batch), then float64.
        x, y = pred.detach().float(), target.detach().float()
        w = (mask.detach() > 0).float()
        pairs = ((1, 1), (x, 1), (y, 1), (x, x), (y, y), (x, y), (x - y, x - y))  # the sums of w * a * b: _MOMENTS
        cells = torch.stack([(w * a * b).sum(2).double() for a, b in pairs])  # (7, batch, n_chans)
        self._rows.append(cells.sum(2))  # (7, batch)
        channels = cells.sum(1)  # (7, n_chans)
        self._channels = channels if self._channels is None else self._channels + channels
        self._sites.extend(site_ids)

    def pop(self) -> dict[str, Any]:
        """The sums so far as plain data (``channels``: 7 lists of per-channel sums; ``sites``:
        site -> 7 sums), for :meth:`report` or to gather from every rank; then start afresh."""
        state: dict[str, Any] = {"channels": None, "sites": {}}
        if self._rows:
            rows = torch.cat(self._rows, 1).cpu()
            names = sorted(set(self._sites))
            position = {name: i for i, name in enumerate(names)}
            index = torch.tensor([position[s] for s in self._sites])
            per_site = torch.zeros(len(_MOMENTS), len(names), dtype=rows.dtype).index_add_(1, index, rows)
            state = {
                "channels": self._channels.cpu().tolist(),
                "sites": {name: per_site[:, i].tolist() for i, name in enumerate(names)},
            }
        self._rows, self._sites, self._channels = [], [], None
        return state

    @staticmethod
    def report(states: Sequence[Mapping[str, Any]], channel_names: Sequence[str]) -> dict[str, float]:
        """Metrics from the summed ``states`` of :meth:`pop` (one per rank)."""
        channels = [s["channels"] for s in states if s["channels"] is not None]
        sites: dict[str, list[float]] = {}
        for state in states:
            for site, sums in state["sites"].items():
                sites[site] = [a + b for a, b in zip(sites.get(site, [0.0] * len(_MOMENTS)), sums)]
        out: dict[str, float] = {}

        def put(suffix: str, sums: Sequence[float]) -> None:
            mse, corr = _mse_and_corr(dict(zip(_MOMENTS, sums)))
            if mse is not None:
                out[f"recon/mse/{suffix}"] = mse
            if corr is not None:
                out[f"recon/corr/{suffix}"] = corr

        if not channels:
            return out
        per_channel = [
            [sum(c[k][j] for c in channels) for k in range(len(_MOMENTS))] for j in range(len(channel_names))
        ]
        put("all", [sum(v) for v in zip(*per_channel)])
        for name, sums in zip(channel_names, per_channel):
            put(f"ch/{name}", sums)
        for site in sorted(sites):
            put(f"site/{site}", sites[site])
        return out


_LOG_BLOCK = 32768
_LOG_HEADER = struct.Struct("<4sHB")  # ":W&B", magic 0xBEE1, version
_CHUNK_HEADER = struct.Struct("<IHB")  # crc32, length, chunk type (1 full, 2 first, 3 middle, 4 last)


def _records(path: Path) -> list[bytes]:
    """The records of a ``.wandb`` transaction log (LevelDB log framing, 32 KiB blocks)."""
    data = path.read_bytes()
    ident, magic, _version = _LOG_HEADER.unpack_from(data, 0)
    if ident != b":W&B" or magic != 0xBEE1:
        raise ValueError(f"{path}: not a W&B transaction log")
    records, pending, pos = [], b"", _LOG_HEADER.size
    while pos + _CHUNK_HEADER.size <= len(data):
        left_in_block = _LOG_BLOCK - pos % _LOG_BLOCK
        if left_in_block < _CHUNK_HEADER.size:  # block trailer padding
            pos += left_in_block
            continue
        _crc, length, kind = _CHUNK_HEADER.unpack_from(data, pos)
        if kind == 0:  # zero padding up to the end of the block
            pos += left_in_block
            continue
        pending += data[pos + _CHUNK_HEADER.size : pos + _CHUNK_HEADER.size + length]
        pos += _CHUNK_HEADER.size + length
        if kind in (1, 4):
            records.append(pending)
            pending = b""
    return records


def read_offline_run(run_path: str | os.PathLike[str]) -> dict[str, Any]:
    """``{"history": [{name: value}], "summary": {...}, "config": {...}}`` of an offline run
    directory (or its .wandb file), for checking what a run recorded without uploading it."""
    from wandb.proto import wandb_internal_pb2  # wandb: heavy, only to read a run back

    path = Path(run_path)
    if path.is_dir():
        found = sorted(path.glob("run-*.wandb"))
        if not found:
            raise FileNotFoundError(f"{path}: no run-*.wandb file (not a W&B run directory)")
        path = found[0]
    result: dict[str, Any] = {"history": [], "summary": {}, "config": {}}

    def key(item: Any) -> str:
        return item.key or "/".join(item.nested_key)

    for blob in _records(path):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(blob)
        kind = record.WhichOneof("record_type")
        if kind == "history":
            result["history"].append({key(i): json.loads(i.value_json) for i in record.history.item})
        elif kind == "summary":
            result["summary"].update({key(i): json.loads(i.value_json) for i in record.summary.update})
        elif kind in ("run", "config"):
            config = record.run.config if kind == "run" else record.config
            result["config"].update({key(i): json.loads(i.value_json) for i in config.update})
    return result
