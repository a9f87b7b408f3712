"""Engines that turn a batch of model inputs into logits: PyTorch, ONNX Runtime, TensorRT.

All take the keyword inputs of ``EEGFMModel.forward`` as torch tensors and return the head's
logits (B, n_outputs) as a float32 CPU tensor, so what follows (temperature, softmax) is one path;
``logits_and_samples`` adds the (B, S, n_outputs) ``sample_logits`` of the head's fixed MC-dropout
masks from the same run (None where the model has none), ``mc_passes`` of them when given (a graph
exported with more is sliced: its first masks are the same; one with fewer is exported again).
``torch`` loads the model folder; ``onnx`` runs ``model.onnx``, exported beside it on first use,
on ONNX Runtime's CPU (or CUDA) provider; ``onnx-int8`` runs its static INT8 quantization
``model.int8.onnx`` the same way (made by ``eegfm-quantize``, ``serving.quantize``, which needs calibration windows:
never here); ``tensorrt`` builds an engine from ``model.onnx`` for this GPU, TensorRT version,
precision and profile (cached beside it) and runs it on torch's CUDA stream with torch-allocated
buffers; a spectrogram input runs at 1 to ``TENSORRT_MAX_FRAMES`` frames (Kaggle's 10 minutes).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

import torch

from eegfm.contract import model_files as files
from eegfm.contract.schema import SFREQ
from eegfm.contract.spectrogram import FRAME_STEP_S, N_SPECTROGRAM_ROWS
from eegfm.core.config import ConfigError
from eegfm.core.logs import get_logger
from eegfm.inference.backend_names import BACKENDS

TENSORRT_MAX_SECONDS = 60.0  # the longest window a TensorRT engine's profile takes
TENSORRT_MAX_FRAMES = 300  # the longest spectrogram: Kaggle's 10 minutes at one frame per 2 s
log = get_logger(__name__)


def onnx_path_for(model_dir: Path, mc_passes: int | None = None) -> Path:
    """``model.onnx`` for the model folder, exported (atomically) where missing, older than the
    weights or with fewer than ``mc_passes`` samples (None: the model's own number)."""
    weights = files.weights_of(model_dir)
    mc_passes = None if files.is_ensemble(model_dir) else mc_passes  # an ensemble's samples are its members
    path = files.derived_dir(model_dir) / files.ONNX
    fresh = path.is_file() and (not weights.is_file() or path.stat().st_mtime >= weights.stat().st_mtime)
    if fresh and (mc_passes is None or _graph_passes(path) >= mc_passes):
        return path
    from eegfm.model.export import export_onnx  # onnx, transformers: not for eegfm-predict --help

    log.info("exporting %s to ONNX (once; reused after)", model_dir)
    model = _pretrained(model_dir)
    if mc_passes is not None and mc_passes > model.config.mc_passes:
        model.set_mc_passes(mc_passes)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    export_onnx(model, partial)
    partial.replace(path)
    return path


def _graph_passes(path: Path) -> int:
    """How many MC-dropout samples the graph's ``sample_logits`` output gives (0 without it)."""
    import onnx  # heavy: only for --backend onnx / tensorrt

    graph = onnx.load(str(path), load_external_data=False)
    output = next((o for o in graph.graph.output if o.name == "sample_logits"), None)
    if output is None:
        return 0
    static = output.type.tensor_type.shape.dim[1].dim_value  # 0 where the dimension is symbolic
    return int({p.key: p.value for p in graph.metadata_props}.get("eegfm.mc_passes", static))


def _first_samples(samples: torch.Tensor | None, mc_passes: int | None) -> torch.Tensor | None:
    """The first ``mc_passes`` samples (None: all); None for none."""
    if samples is not None and mc_passes is not None:
        samples = samples[:, :mc_passes]
    return None if samples is None or samples.shape[1] == 0 else samples


def _pretrained(model_dir: Path):
    # transformers: only once a model is loaded, not for importing this module
    from eegfm.model.architectures import (
        load_model_folder,  # eegfm, spectrogram CNN or ensemble
        quiet_transformers,
    )

    with quiet_transformers():
        return load_model_folder(model_dir, for_inference=True)


class TorchBackend:
    name = "torch"

    def __init__(self, model, device: torch.device, mc_passes: int | None = None) -> None:
        self.model = model.to(device).eval()
        self.device = device
        if mc_passes is not None and hasattr(self.model, "set_mc_passes"):
            self.model.set_mc_passes(mc_passes)
        self.mc_passes = mc_passes

    @torch.no_grad()
    def logits(self, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        out = self.model(**{k: v.to(self.device) for k, v in inputs.items()})
        return out.logits.float().cpu()

    @torch.no_grad()
    def logits_and_samples(self, inputs: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor | None]:
        inputs = {k: v.to(self.device) for k, v in inputs.items()}
        if hasattr(self.model, "logits_with_samples"):  # one encoder run
            logits, samples = self.model.logits_with_samples(**inputs)
        elif hasattr(self.model, "sample_logits"):  # any model with the interface, e.g. an ensemble
            logits, samples = self.model(**inputs).logits, self.model.sample_logits(**inputs)
        else:
            logits, samples = self.model(**inputs).logits, None
        samples = None if samples is None else samples.float().cpu()
        return logits.float().cpu(), _first_samples(samples, self.mc_passes)


class OnnxBackend:
    name = "onnx"

    def __init__(
        self, path: Path, device: torch.device, threads: int | None = None, mc_passes: int | None = None
    ) -> None:
        from eegfm.model.export import OnnxEEGFM  # the model (transformers): not for eegfm-predict --help

        providers = ["CPUExecutionProvider"]
        if device.type == "cuda":
            import onnxruntime as ort  # heavy: only for --backend onnx (OnnxEEGFM imports it too)

            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise ConfigError(
                    f"--device cuda with --backend onnx: this onnxruntime has no CUDA provider "
                    f"(it has {', '.join(ort.get_available_providers())}); install onnxruntime-gpu "
                    "or use --backend torch/tensorrt"
                )
            providers.insert(0, "CUDAExecutionProvider")
        self.runner = OnnxEEGFM(path, threads=threads, providers=providers)
        self.path = path
        self.mc_passes = mc_passes

    def logits(self, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        logits, _ = self.runner(**inputs)
        return torch.from_numpy(logits)

    def logits_and_samples(self, inputs: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor | None]:
        logits, samples = self.runner.logits_with_samples(**inputs)
        samples = None if samples is None else torch.from_numpy(samples)
        return torch.from_numpy(logits), _first_samples(samples, self.mc_passes)


class OnnxInt8Backend(OnnxBackend):
    name = "onnx-int8"


def int8_graph_for(model_dir: Path, mc_passes: int | None = None) -> Path:
    """The model folder's ``model.int8.onnx``; ConfigError saying how to make it where it is
    missing, older than the weights or has fewer than ``mc_passes`` MC-dropout samples."""
    path = files.int8_path(model_dir)
    make = (
        f"make it with: python -m eegfm.serving.quantize --model {model_dir} --data PREPROCESSED_DIR "
        "(the model's training windows)"
    )
    if not path.is_file():
        raise ConfigError(f"--backend onnx-int8: {model_dir} has no {files.INT8_ONNX}; {make}")
    weights = files.weights_of(model_dir)
    if weights.is_file() and path.stat().st_mtime < weights.stat().st_mtime:
        raise ConfigError(f"--backend onnx-int8: {path} is older than {weights.name} (retrained?); {make}")
    if mc_passes is not None and _graph_passes(path) < mc_passes:
        raise ConfigError(
            f"--mc_passes {mc_passes}: {path} has {_graph_passes(path)} MC-dropout samples; ask for at most "
            f"that many, or quantize a model.onnx exported with more"
        )
    return path


def engine_name(precision: str, batch_size: int, n_times: int) -> str:
    """An engine serves one GPU model, TensorRT version, precision and optimisation profile."""
    import tensorrt as trt  # optional: in no extra, only for --backend tensorrt

    gpu = re.sub(r"[^A-Za-z0-9]+", "-", torch.cuda.get_device_name()).strip("-").lower()
    return f"model.{gpu}.trt{trt.__version__}.{precision}.b{batch_size}.t{n_times}.engine"


def build_engine(
    onnx_path: Path,
    engine_path: Path,
    *,
    times: tuple[int, int, int],
    frames: tuple[int, int, int] = (1, 1, 1),
    max_batch: int,
    opt_batch: int,
    precision: str = "fp16",
    workspace_gb: float = 4.0,
    n_chans: int = 19,
) -> Path:
    """Build and save a TensorRT engine for ``onnx_path`` with one optimisation profile: batch 1 to
    ``max_batch`` (tuned for ``opt_batch``), ``times`` = (min, opt, max) samples and ``frames`` the
    same for a spectrogram input."""
    import tensorrt as trt  # optional: in no extra, only for --backend tensorrt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"{onnx_path}: TensorRT cannot parse the graph ({errors})")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * 2**30))
    if precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
    elif precision == "bf16":
        config.set_flag(trt.BuilderFlag.BF16)
    profile = builder.create_optimization_profile()
    for index in range(network.num_inputs):
        tensor = network.get_input(index)
        shapes = [
            _profile_shape(tensor.name, batch, n_chans, n_times, n_frames)
            for batch, n_times, n_frames in zip((1, opt_batch, max_batch), times, frames, strict=True)
        ]
        profile.set_shape(tensor.name, *shapes)
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"{onnx_path}: TensorRT could not build an engine (see its log above)")
    partial = engine_path.with_name(f".{engine_path.name}.{os.getpid()}.partial")
    partial.write_bytes(bytes(serialized))
    partial.replace(engine_path)
    return engine_path


def _profile_shape(name: str, batch: int, n_chans: int, n_times: int, n_frames: int) -> tuple[int, ...]:
    return {
        "eeg": (batch, n_chans, n_times),
        "spectrogram": (batch, N_SPECTROGRAM_ROWS, n_frames),
        "positions": (batch, n_chans, 3),
        "channel_mask": (batch, n_chans),
        "ecg": (batch, n_times),
        "age": (batch,),
        "sex": (batch,),
    }[name]


class TensorRTBackend:
    name = "tensorrt"

    def __init__(
        self,
        onnx_path: Path,
        *,
        n_times: int,
        patch_size: int,
        batch_size: int,
        precision: str = "fp16",
        mc_passes: int | None = None,
    ) -> None:
        try:
            import tensorrt as trt  # optional: in no extra, only for --backend tensorrt
        except ImportError:
            raise ConfigError(
                "--backend tensorrt: the tensorrt package is not installed (pip install "
                "tensorrt, on a machine with an NVIDIA GPU and its driver)"
            ) from None
        if not torch.cuda.is_available():
            raise ConfigError("--backend tensorrt: no CUDA device is visible to torch; expected an NVIDIA GPU")
        from eegfm.model.inputs import canonical_positions  # eegfm.model loads transformers: not for --help

        # Windows of the training length run at the tuned shape; labeled windows of other lengths
        # (the HMS layout's 50 s) up to TENSORRT_MAX_SECONDS still run.
        self.max_times = max(n_times, int(TENSORRT_MAX_SECONDS * SFREQ) // patch_size * patch_size)
        self.patch_size = patch_size
        engine_path = onnx_path.with_name(engine_name(precision, batch_size, n_times))
        self.pool = _spectrogram_pool(onnx_path)  # None: the graph takes no spectrogram
        pool = self.pool or 1
        # A window's own spectrogram has one frame per 2 s; Kaggle's HMS files give 300 around it.
        own_frames = n_times // int(FRAME_STEP_S * SFREQ) // pool * pool
        frames = (pool, max(pool, own_frames), TENSORRT_MAX_FRAMES // pool * pool)
        self.max_frames = frames[2]
        if not engine_path.is_file():
            log.info("building a TensorRT %s engine for %s (once; cached as %s)", precision, onnx_path, engine_path)
            build_engine(
                onnx_path,
                engine_path,
                times=(patch_size, n_times, self.max_times),
                frames=frames,
                max_batch=batch_size,
                opt_batch=batch_size,
                precision=precision,
            )
        self.engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(engine_path.read_bytes())
        if self.engine is None:
            raise RuntimeError(f"{engine_path}: TensorRT cannot load this engine; delete it to rebuild")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        self.mc_passes = mc_passes
        self.positions = canonical_positions().cuda()
        self.path = engine_path

    def logits(self, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return self.logits_and_samples(inputs)[0]

    @torch.no_grad()
    def logits_and_samples(self, inputs: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor | None]:
        eeg = inputs["eeg"]
        batch, n_chans, n_times = eeg.shape
        n_times -= n_times % self.patch_size  # whole patches, as the PyTorch model reads them
        if n_times > self.max_times:
            raise ValueError(f"eeg: {n_times} samples per window; this TensorRT engine takes at most {self.max_times}")
        nan = torch.full((batch,), float("nan"), device="cuda")
        ecg = inputs["ecg"][..., :n_times] if "ecg" in inputs else nan[:, None].expand(batch, n_times)
        values = {
            "eeg": eeg[..., :n_times],
            "positions": self.positions.expand(batch, n_chans, 3),
            "channel_mask": inputs["channel_mask"],
            "age": inputs.get("age", nan),
            "sex": inputs.get("sex", nan),
            "ecg": ecg,
        }
        if self.pool is not None:
            values["spectrogram"] = self._spectrogram(inputs.get("spectrogram"), batch)
        keep = []  # the buffers must outlive the asynchronous run
        for name in self.inputs:
            tensor = values[name].to("cuda", torch.float32).contiguous()
            keep.append(tensor)
            self.context.set_input_shape(name, tuple(tensor.shape))
            self.context.set_tensor_address(name, tensor.data_ptr())
        outputs = {}
        for name in self.outputs:
            outputs[name] = torch.empty(tuple(self.context.get_tensor_shape(name)), device="cuda", dtype=torch.float32)
            self.context.set_tensor_address(name, outputs[name].data_ptr())
        stream = torch.cuda.current_stream()
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise RuntimeError(f"{self.path}: TensorRT execution failed")
        stream.synchronize()
        samples = outputs["sample_logits"].cpu() if "sample_logits" in outputs else None
        return outputs["logits"].cpu(), _first_samples(samples, self.mc_passes)

    def _spectrogram(self, spectrogram: torch.Tensor | None, batch: int) -> torch.Tensor:
        """Whole tokens of the spectrogram, centre-cropped to the engine's frames; NaN (absent) if None."""
        if spectrogram is None:
            return torch.full((batch, N_SPECTROGRAM_ROWS, self.pool), float("nan"), device="cuda")
        n_frames = min(spectrogram.shape[-1], self.max_frames) // self.pool * self.pool
        if n_frames == 0:
            raise ValueError(f"spectrogram: {spectrogram.shape[-1]} frames; this model reads {self.pool} per token")
        start = (spectrogram.shape[-1] - n_frames) // 2
        return spectrogram[..., start : start + n_frames]


def _spectrogram_pool(onnx_path: Path) -> int | None:
    """The frames per spectrogram token of a graph that takes a spectrogram (its metadata); else None."""
    import onnx  # heavy: only for --backend tensorrt

    graph = onnx.load(str(onnx_path), load_external_data=False)
    if "spectrogram" not in [i.name for i in graph.graph.input]:
        return None
    return int({p.key: p.value for p in graph.metadata_props}.get("eegfm.spectrogram_pool", 1))


def make_backend(config, model_dir: Path, *, n_times: int, patch_size: int):
    """The backend a ``PredictConfig`` names (``backend``, ``device``, ``threads`` ...) for the model folder."""
    if files.is_fused(model_dir):  # a benchmark row: its networks on this backend, then its parts
        # model.fused loads transformers: only for a fused model
        from eegfm.inference.fused_backend import FusedBackend

        def network(folder: Path, network_patch: int):
            return make_backend(config, folder, n_times=n_times, patch_size=network_patch)

        return FusedBackend(model_dir, network, calibrated=getattr(config, "calibrated", True))
    device = torch.device(config.device)
    passes = getattr(config, "mc_passes", None)  # None: the model's own number of MC-dropout samples
    if files.is_ensemble(model_dir):
        passes = None  # an ensemble's samples are its members
    if config.backend == "torch":
        return TorchBackend(_pretrained(model_dir), device, passes)
    if config.backend == "onnx-int8":
        return OnnxInt8Backend(int8_graph_for(model_dir, passes), device, config.threads, passes)
    path = onnx_path_for(model_dir, passes)
    if config.backend == "onnx":
        return OnnxBackend(path, device, config.threads, passes)
    if config.backend == "tensorrt":
        return TensorRTBackend(
            path,
            n_times=n_times,
            patch_size=patch_size,
            batch_size=config.batch_size,
            precision=config.precision,
            mc_passes=passes,
        )
    raise ConfigError(f"--backend: expected one of {', '.join(BACKENDS)}; got {config.backend!r}")
