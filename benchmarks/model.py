"""eegfm ``base`` against braindecode's CBraMod and LaBraM on this CPU; prints one JSON object.

Measured side by side in one process, 2 intra-op threads, input 19 channels x 10 s:

- ``parameters``;
- ``train_samples_per_s``: forward + backward (no optimizer step) at batch 32, train mode;
- ``latency_ms_batch1``: eager PyTorch forward at batch 1, eval mode, no autograd;
- for eegfm also ``onnxruntime_latency_ms_batch1``: the dynamo-exported ONNX graph in ONNX Runtime.

``eegfm-base`` runs its GNN as torch_geometric message passing (the default, ``gnn_impl="pyg"``);
``eegfm-base-dense-gnn`` is the same model with the numerically equal dense formulation.

Each model sees 10 s at its native rate: eegfm 256 Hz (2560 samples, 1 s patches); CBraMod and
LaBraM 200 Hz (2000 samples, their 200-sample patches). Both peers are built with their
braindecode defaults (CBraMod 12 layers of width 200; LaBraM-base 12 layers of width 200) and a
6-class output. The machine is shared, so rounds are interleaved (every model is timed once per
round) and medians over rounds are reported, with the load average before and after.

Benchmark-only dependency: ``braindecode`` (installed with ``--no-deps``; see the report for the
exact packages). braindecode imports ``torchaudio`` at module level for models not measured here;
no torchaudio wheel matches torch 2.13, so a placeholder module that raises on use is registered
(CBraMod and LaBraM never touch it).

Usage: ``python benchmarks/model.py [--rounds 5] [--skip-peers] [--skip-onnx]``.
"""

from __future__ import annotations

import os

THREADS = 2
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, str(THREADS))

import argparse  # noqa: E402
import copy  # noqa: E402
import importlib.machinery  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import types  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from eegfm.model import count_parameters, create_model  # noqa: E402
from eegfm.model.export import OnnxEEGFM, export_onnx  # noqa: E402

SECONDS = 10
N_CHANS = 19
TRAIN_BATCH = 32
# docs: the reference latencies for the peers in eager PyTorch (ms, batch 1).
REFERENCE_PEER_LATENCY_MS = {"CBraMod": 26.8, "LaBraM-base": 34.3}
TEN_TEN_NAMES = [
    "FP1",
    "F3",
    "C3",
    "P3",
    "F7",
    "T7",
    "P7",
    "O1",
    "FZ",
    "CZ",
    "PZ",
    "FP2",
    "F4",
    "C4",
    "P4",
    "F8",
    "T8",
    "P8",
    "O2",
]


def _install_torchaudio_placeholder() -> None:
    """Let ``import braindecode.models`` succeed without torchaudio (see the module docstring)."""
    if "torchaudio" in sys.modules:
        return

    class _Placeholder(types.ModuleType):
        def __getattr__(self, name: str) -> type:
            if name.startswith("__"):
                raise AttributeError(name)

            def unavailable(*args: object, **kwargs: object) -> None:
                raise RuntimeError(f"torchaudio.{name} is not installed (benchmark placeholder)")

            return type(name, (torch.nn.Module,), {"__init__": unavailable})

    for name in ("torchaudio", "torchaudio.functional", "torchaudio.transforms"):
        module = _Placeholder(name)
        module.__spec__ = importlib.machinery.ModuleSpec(name, None, is_package=name == "torchaudio")
        module.__path__ = []
        sys.modules[name] = module
    sys.modules["torchaudio"].functional = sys.modules["torchaudio.functional"]
    sys.modules["torchaudio"].transforms = sys.modules["torchaudio.transforms"]


class Candidate:
    """A model plus how to call it on a batch of random input of the right shape."""

    def __init__(
        self,
        name: str,
        model: torch.nn.Module,
        n_times: int,
        call: Callable[[torch.nn.Module, torch.Tensor], torch.Tensor],
    ) -> None:
        self.name, self.model, self.n_times, self.call = name, model, n_times, call
        generator = torch.Generator().manual_seed(0)
        self.train_input = 30.0 * torch.randn(TRAIN_BATCH, N_CHANS, n_times, generator=generator)
        self.single_input = self.train_input[:1].clone()
        self.train_times: list[float] = []
        self.latencies: list[float] = []

    def train_step(self) -> float:
        self.model.train()
        self.model.zero_grad(set_to_none=True)
        start = time.perf_counter()
        out = self.call(self.model, self.train_input)
        out.float().square().mean().backward()
        return time.perf_counter() - start

    def latency(self, repeats: int) -> float:
        self.model.eval()
        times = []
        with torch.no_grad():
            for _ in range(repeats):
                start = time.perf_counter()
                self.call(self.model, self.single_input)
                times.append(time.perf_counter() - start)
        return min(times)  # best of a burst: the least disturbed by other processes


def build_candidates(skip_peers: bool) -> list[Candidate]:
    torch.manual_seed(0)
    eegfm = create_model("base", head="hms6")
    eegfm.set_gnn_impl("pyg")  # the torch_geometric path, as trained
    dense = copy.deepcopy(eegfm)
    dense.set_gnn_impl("dense")  # the same sums as a batched matmul (what the ONNX export uses)
    candidates = [
        Candidate("eegfm-base", eegfm, SECONDS * 256, lambda m, x: m(x).logits),
        Candidate("eegfm-base-dense-gnn", dense, SECONDS * 256, lambda m, x: m(x).logits),
    ]
    if skip_peers:
        return candidates
    _install_torchaudio_placeholder()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from braindecode.models import CBraMod, Labram

        cbramod = CBraMod(n_chans=N_CHANS, n_outputs=6, n_times=SECONDS * 200, sfreq=200)
        labram = Labram(n_chans=N_CHANS, n_outputs=6, n_times=SECONDS * 200, sfreq=200)
    candidates.append(Candidate("CBraMod", cbramod, SECONDS * 200, lambda m, x: m(x)))
    candidates.append(Candidate("LaBraM-base", labram, SECONDS * 200, lambda m, x: m(x, ch_names=TEN_TEN_NAMES)))
    return candidates


def onnx_latency(model: torch.nn.Module, rounds: int, repeats: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        path = export_onnx(model, Path(tmp) / "eegfm-base.onnx")
        export_s = time.perf_counter() - start
        runner = OnnxEEGFM(path, threads=THREADS)
        x = 30.0 * torch.randn(1, N_CHANS, SECONDS * 256, generator=torch.Generator().manual_seed(1))
        feed = runner.feed(x)
        model.eval()
        with torch.no_grad():
            reference = model(x).logits.numpy()
        max_error = float(np.abs(runner.session.run(["logits"], feed)[0] - reference).max())
        for _ in range(3):
            runner.session.run(None, feed)
        bursts = []
        for _ in range(rounds):
            times = []
            for _ in range(repeats):
                t = time.perf_counter()
                runner.session.run(None, feed)
                times.append(time.perf_counter() - t)
            bursts.append(min(times))
            time.sleep(0.05)
        all_median = statistics.median(bursts)
    return {
        "onnxruntime_latency_ms_batch1": round(1000 * all_median, 2),
        "onnxruntime_latency_ms_batch1_best": round(1000 * min(bursts), 2),
        "onnx_max_abs_error_vs_pytorch": max_error,
        "onnx_export_s": round(export_s, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="interleaved measurement rounds (default 5)")
    parser.add_argument("--latency-repeats", type=int, default=10, help="batch-1 calls per round (default 10)")
    parser.add_argument("--skip-peers", action="store_true", help="only eegfm (no braindecode needed)")
    parser.add_argument("--skip-onnx", action="store_true", help="no ONNX export / ONNX Runtime timing")
    args = parser.parse_args(argv)
    torch.set_num_threads(THREADS)
    load_before = os.getloadavg()[0]
    candidates = build_candidates(args.skip_peers)
    for c in candidates:  # warm-up: allocator, oneDNN kernels
        c.train_step()
        c.latency(2)
    for _ in range(args.rounds):
        for c in candidates:
            c.train_times.append(c.train_step())
            c.latencies.append(c.latency(args.latency_repeats))
    results: dict[str, dict[str, object]] = {}
    for c in candidates:
        results[c.name] = {
            "parameters": count_parameters(c.model),
            "input_samples": c.n_times,
            "train_samples_per_s": round(TRAIN_BATCH / statistics.median(c.train_times), 2),
            "latency_ms_batch1": round(1000 * statistics.median(c.latencies), 2),
        }
    if not args.skip_onnx:
        results["eegfm-base"].update(onnx_latency(candidates[0].model, args.rounds, args.latency_repeats))
    summary: dict[str, object] = {}
    if "CBraMod" in results:
        summary["train_throughput_vs_cbramod"] = round(
            results["eegfm-base"]["train_samples_per_s"] / results["CBraMod"]["train_samples_per_s"], 2
        )
        summary["train_throughput_vs_labram"] = round(
            results["eegfm-base"]["train_samples_per_s"] / results["LaBraM-base"]["train_samples_per_s"], 2
        )
        summary["train_throughput_dense_gnn_vs_cbramod"] = round(
            results["eegfm-base-dense-gnn"]["train_samples_per_s"] / results["CBraMod"]["train_samples_per_s"], 2
        )
    if "onnxruntime_latency_ms_batch1" in results["eegfm-base"]:
        summary["onnxruntime_latency_target_ms"] = 10.0
        summary["onnxruntime_latency_meets_target"] = results["eegfm-base"]["onnxruntime_latency_ms_batch1"] <= 10.0
    print(
        json.dumps(
            {
                "input": f"{N_CHANS} channels x {SECONDS} s",
                "threads": THREADS,
                "train_batch": TRAIN_BATCH,
                "rounds": args.rounds,
                "models": results,
                "summary": summary,
                "reference_peer_latency_ms_from_issue": REFERENCE_PEER_LATENCY_MS,
                "torch": torch.__version__,
                "load_average_1min_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
                "cpu_count": os.cpu_count(),
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
