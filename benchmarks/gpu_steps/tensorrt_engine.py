"""A TensorRT FP16 engine of the served model against ONNX Runtime: parity and latency.

The ``base`` model with the ``hms6`` head (weights as initialised) is exported to ONNX as serving
exports it (``model.export.export_onnx``: dynamic batch, channels and time, the dense GNN), run in
ONNX Runtime (float32, the reference) and built into a TensorRT FP16 engine by serving's own
``inference.backends.build_engine`` (one profile: 19 channels x 10 s, batch 1 to 32, tuned for batch
1). Parity: the largest absolute difference of the logits, engine against ONNX Runtime, over a
batch of 32 windows and a batch of 1 (target <= 1e-2). Latency: the median of 100 timed engine
runs at batch 1 and at batch 32 (execute on torch's CUDA stream and synchronise, inputs already on
the GPU; target <= 1 ms at batch 1).

Real windows come from ``--windows FILE`` (``.npy`` of (N, 19, >= 2560) µV, or ``.npz`` with
``eeg`` and ``channel_mask``); without one, 1/f noise stands in and the parity is not judged. To
carry real windows to a GPU machine, save some from a preprocessed folder of real EEG (never commit
them)::

    python -m benchmarks.gpu_steps.tensorrt_engine --data PREPROCESSED_DIR --output .gpu/windows.npz [--count 32]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.gpu_steps.common import Record

N_CHANS, N_TIMES, BATCH, TARGET_MS, TARGET_DIFF = 19, 2560, 32, 1.0, 1e-2
DRY_MODEL = {"num_hidden_layers": 1}  # the tiny model, one layer: a quicker export on the CPU


def plan() -> dict[str, Any]:
    return {
        "model": "base, hms6 head, weights as initialised",
        "engine": f"TensorRT FP16 from the ONNX export, batch 1-{BATCH} (tuned for 1), {N_CHANS} x {N_TIMES}",
        "reference": "ONNX Runtime float32 (CPU provider unless CUDA is offered)",
        "parity": f"max |logits difference| over {BATCH} windows and 1 (target <= {TARGET_DIFF})",
        "latency": f"median of 100 runs at batch 1 (target <= {TARGET_MS} ms) and {BATCH}",
    }


def noise_windows(count: int, n_times: int, seed: int = 0) -> np.ndarray:
    """1/f noise of about 20 µV RMS per channel: what stands in for EEG without ``--windows``."""
    rng = np.random.default_rng(seed)
    spectrum = rng.standard_normal((count, N_CHANS, n_times // 2 + 1)) * 1j + rng.standard_normal(
        (count, N_CHANS, n_times // 2 + 1)
    )
    spectrum[..., 0] = 0
    spectrum[..., 1:] /= np.sqrt(np.arange(1, n_times // 2 + 1))
    signal = np.fft.irfft(spectrum, n=n_times, axis=-1)
    return (20 * signal / signal.std(axis=-1, keepdims=True)).astype(np.float32)


def load_windows(path: str | None, count: int) -> tuple[np.ndarray, np.ndarray, str | None]:
    """(eeg (count, 19, N_TIMES), channel_mask (count, 19), source) for the windows of ``path``;
    noise and a None source without one. Fewer windows in the file are repeated."""
    if path is None:
        return noise_windows(count, N_TIMES), np.ones((count, N_CHANS), np.float32), None
    loaded = np.load(path)
    eeg = np.asarray(loaded["eeg"] if isinstance(loaded, np.lib.npyio.NpzFile) else loaded, np.float32)
    if eeg.ndim != 3 or eeg.shape[1] != N_CHANS or eeg.shape[2] < N_TIMES:
        raise ValueError(f"--windows {path}: expected (N, {N_CHANS}, >= {N_TIMES}) µV; got shape {eeg.shape}")
    has_mask = isinstance(loaded, np.lib.npyio.NpzFile) and "channel_mask" in loaded
    mask = np.asarray(loaded["channel_mask"], np.float32) if has_mask else np.ones(eeg.shape[:2], np.float32)
    index = np.arange(count) % len(eeg)
    return np.ascontiguousarray(eeg[index, :, :N_TIMES]), mask[index], f"{path} ({len(eeg)} windows)"


def tensorrt_unavailable() -> str | None:
    """Why no engine can be built here (None: it can)."""
    import importlib.util

    import torch

    if importlib.util.find_spec("tensorrt") is None:
        return "the tensorrt package is not installed for this python (pip install tensorrt-cu13 there)"
    if not torch.cuda.is_available():
        return "no CUDA device is visible to torch"
    return None


class Engine:
    """A deserialised engine run on torch's current CUDA stream, with torch-allocated buffers."""

    def __init__(self, path: Path) -> None:
        import tensorrt as trt

        self.engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(path.read_bytes())
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if n not in self.inputs]
        self.buffers: dict[str, Any] = {}

    def bind(self, feed: dict[str, np.ndarray]) -> None:
        """Copy the inputs to the GPU and allocate the outputs for their shapes."""
        import tensorrt as trt
        import torch

        dtypes = {trt.float32: torch.float32, trt.float16: torch.float16, trt.int64: torch.int64}
        for name in self.inputs:
            tensor = torch.from_numpy(feed[name]).cuda().contiguous()
            self.context.set_input_shape(name, tuple(tensor.shape))
            self.buffers[name] = tensor
        for name in self.outputs:
            shape = tuple(self.context.get_tensor_shape(name))
            dtype = dtypes.get(self.engine.get_tensor_dtype(name), torch.float32)
            self.buffers[name] = torch.empty(shape, device="cuda", dtype=dtype)
        for name, tensor in self.buffers.items():
            self.context.set_tensor_address(name, tensor.data_ptr())

    def run(self) -> None:
        import torch

        stream = torch.cuda.current_stream()
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise RuntimeError("TensorRT execution failed")
        stream.synchronize()

    def logits(self) -> np.ndarray:
        return self.buffers["logits"].float().cpu().numpy()


def latency_ms(call, repeats: int, warmup: int = 10) -> dict[str, float]:
    for _ in range(warmup):
        call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1e3)
    times.sort()
    return {"median_ms": round(statistics.median(times), 4), "p90_ms": round(times[int(0.9 * (len(times) - 1))], 4)}


def _onnx_reference(record: Record, model, onnx_path: Path, eeg: np.ndarray, mask: np.ndarray, dry_run: bool):
    """Export, then ONNX Runtime's logits for ``eeg`` (the reference) and its own latency."""
    import os

    # torch and eegfm only in the step's own process: the launcher imports this module without them.
    import torch

    from eegfm.model.export import OnnxEEGFM, export_onnx

    start = time.perf_counter()
    export_onnx(model, onnx_path)
    record.set("onnx_export_s", round(time.perf_counter() - start, 1))
    runner = OnnxEEGFM(onnx_path, threads=1 if dry_run else os.cpu_count())
    feeds = {b: runner.feed(eeg[:b], channel_mask=mask[:b]) for b in (1, len(eeg))}
    reference = {b: runner.session.run(["logits"], feed)[0] for b, feed in feeds.items()}
    with torch.no_grad():
        torch_logits = model.eval()(torch.from_numpy(eeg), channel_mask=torch.from_numpy(mask)).logits.numpy()
    record.set(
        "onnxruntime",
        {
            "providers": runner.session.get_providers(),
            "max_abs_diff_vs_torch_float32": float(np.abs(reference[len(eeg)] - torch_logits).max()),
            **{
                f"latency_batch{b}": latency_ms(lambda f=f: runner.session.run(None, f), 3 if dry_run else 20, 1)
                for b, f in feeds.items()
            },
        },
    )
    return feeds, reference


def _engine_figures(record: Record, onnx_path: Path, feeds, reference, real: bool) -> None:
    # TensorRT, through inference.backends, only in the step's own process.
    from eegfm.inference.backends import build_engine

    start = time.perf_counter()
    engine_path = build_engine(
        onnx_path,
        onnx_path.with_suffix(".engine"),
        times=(N_TIMES, N_TIMES, N_TIMES),
        max_batch=BATCH,
        opt_batch=1,
        precision="fp16",
        n_chans=N_CHANS,
    )
    record.set("engine_build_s", round(time.perf_counter() - start, 1))
    engine, diffs, latency = Engine(engine_path), {}, {}
    for batch, feed in feeds.items():
        engine.bind(feed)
        engine.run()
        diffs[f"batch{batch}"] = float(np.abs(engine.logits() - reference[batch]).max())
        latency[f"batch{batch}"] = latency_ms(engine.run, 100)
    diff = max(diffs.values())
    record.set("parity", {"max_abs_diff": diff, "by_batch": diffs, "real_windows": real})
    record.set("latency", latency)
    record.set(
        "targets",
        [
            {
                "what": "batch-1 latency (ms)",
                "target": f"<= {TARGET_MS}",
                "value": latency["batch1"]["median_ms"],
                "met": latency["batch1"]["median_ms"] <= TARGET_MS,
            },
            {
                "what": "max |TensorRT FP16 - ONNX Runtime| of the logits on real windows",
                "target": f"<= {TARGET_DIFF}",
                "value": diff,
                "met": diff <= TARGET_DIFF if real else None,
                **({} if real else {"why": "no --windows given: noise, not real EEG; not judged"}),
            },
        ],
    )


def run(record: Record, *, dry_run: bool, windows: str | None = None, **_: Any) -> None:
    # torch and eegfm only in the step's own process: the launcher imports this module without them.
    import torch

    from eegfm.model import create_model

    unavailable = tensorrt_unavailable()
    if unavailable and not dry_run:  # no engine: spare the export's time for the other steps
        record.not_run(unavailable)
        return
    count = 2 if dry_run else BATCH
    eeg, mask, source = load_windows(windows, count)
    record.set("windows", source or "1/f noise (no --windows given): not real EEG")
    torch.manual_seed(0)
    model = create_model("tiny" if dry_run else "base", head="hms6", **(DRY_MODEL if dry_run else {}))
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = Path(tmp) / "model.onnx"
        feeds, reference = _onnx_reference(record, model, onnx_path, eeg, mask, dry_run)
        if unavailable:
            record.set("engine", {"status": "not_run", "why": unavailable})
            record.set("status", "ok")
            return
        _engine_figures(record, onnx_path, feeds, reference, real=source is not None)
    record.set("status", "ok")


def save_windows(data: str, output: Path, count: int) -> dict[str, Any]:
    """The first ``count`` windows of a preprocessed folder as ``.npz`` (eeg, channel_mask)."""
    # training.data's loader loads torch: only for the --windows file this command writes.
    from eegfm.training.data import EEGLoader, LoaderConfig

    config = LoaderConfig(batch_size=count, num_workers=0, pin_memory=False, eeg_dtype="float32")
    batch = next(iter(EEGLoader(data, config, rank=0, world_size=1, infinite=False)))
    eeg, mask = batch["eeg"].numpy(), batch["channel_mask"].numpy()
    output.parent.mkdir(parents=True, exist_ok=True)
    np.savez(output, eeg=eeg, channel_mask=mask)
    return {"output": str(output), "windows": len(eeg), "shape": list(eeg.shape)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Save real windows for benchmarks/gpu.sh --windows.")
    parser.add_argument("--data", required=True, help="a preprocessed folder (the pipeline's TFRecords) of real EEG")
    parser.add_argument("--output", required=True, type=Path, help="the .npz file to write")
    parser.add_argument("--count", type=int, default=BATCH, help=f"windows to save (default {BATCH})")
    args = parser.parse_args(argv)
    if args.count < 1:
        parser.error(f"--count: expected an integer >= 1; got {args.count}")
    print(save_windows(args.data, args.output, args.count))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
