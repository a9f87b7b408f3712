"""Static INT8 quantization of a fine-tuned model's ONNX graph: ``model.int8.onnx`` beside ``model.onnx``.

    python -m eegfm.serving.quantize --model runs/ft --data tfrecords/

ONNX Runtime's ``quantize_static`` in QDQ format: the weights of every ``MatMul`` / ``Gemm`` with a
constant weight become int8 (per output channel), their inputs uint8 with ranges measured on
real windows (the calibration: ``--data``, the pipeline's output, read exactly as the training
loader reads it and fed as the graph's inputs). Kept in float32:

- the patch tokenizer (``encoder.tokenizer``: the projection of the raw samples, the DFT
  log-spectrum features and the electrode embedding): the log of a power spectrum and raw
  microvolts span decades, and 8 bits there moved eegmat's validation probabilities by 0.09 on
  average (0.005 with it kept float); ``--exclude`` names other module paths;
- attention's activation-by-activation products (``MatMulConstBOnly``), softmax, LayerNorm, GELU.

The node-level debug metadata the exporter writes (module paths, FX nodes: about a quarter of
``model.onnx``) is left out of the INT8 file; the model's own metadata (labels, patch size,
temperature, MC-dropout passes) is kept and ``eegfm.quantization`` says how it was made.
``eegfm-predict --backend onnx-int8`` (and ``eegfm-serve``) run it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import numpy as np
from tqdm import tqdm

from eegfm.contract.model_files import INT8_ONNX, ONNX, derived_dir
from eegfm.contract.tfrecord import read_records
from eegfm.contract.windows import Window
from eegfm.core.config import Config, ConfigError, check_int, check_option, user_path
from eegfm.core.logs import get_logger, setup_logging
from eegfm.core.stores import is_remote
from eegfm.core.threads import fair_threads
from eegfm.inference.model_store import resolve_model_dir

INT8_NAME = INT8_ONNX
DEFAULT_EXCLUDE = ("encoder.tokenizer",)
QUANTIZED_OPS = ("MatMul", "Gemm")
CALIBRATION_METHODS = ("minmax", "percentile", "entropy")
log = get_logger(__name__)


@dataclasses.dataclass
class QuantizeConfig(Config):
    """How the INT8 graph is calibrated and what stays float32."""

    calibration_windows: int = 256  # drawn uniformly (seeded) from every window of --data
    batch_size: int = 16  # windows per calibration batch
    method: str = "minmax"  # how a tensor's range is set from its calibration values
    per_channel: bool = True  # one scale per output channel of a weight, not one per tensor
    exclude: tuple[str, ...] = DEFAULT_EXCLUDE  # module paths kept float32 (substrings of node scopes)
    seed: int = 0

    def validate(self) -> None:
        check_int("calibration_windows", self.calibration_windows, 1, 100_000)
        check_int("batch_size", self.batch_size, 1, 4096)
        check_option("method", self.method, CALIBRATION_METHODS)
        check_option("per_channel", self.per_channel, (True, False))
        if isinstance(self.exclude, str) or not all(isinstance(e, str) and e for e in self.exclude):
            raise ConfigError(f"exclude: expected a list of non-empty module paths; got {self.exclude!r}")
        self.exclude = tuple(self.exclude)
        check_int("seed", self.seed, 0)


def sample_windows(data: str | os.PathLike[str], count: int, seed: int) -> list:
    """``count`` windows drawn uniformly without replacement from every shard of the pipeline's
    output ``data`` (reservoir sampling: one pass, memory for ``count`` windows)."""
    # The loader's catalogue brings torch: not for eegfm-quantize --help.
    from eegfm.training.data import check_data, list_files, open_source

    try:
        files = list_files(check_data(str(data), say=False))
    except (ConfigError, FileNotFoundError, ValueError) as err:
        raise FileNotFoundError(f"--data {data}: {err}") from None
    if not files:
        raise FileNotFoundError(f"--data {data}: no TFRecord shard; expected the output folder of eegfm-preprocess")
    rng = np.random.default_rng(seed)
    kept: list = []
    seen = 0
    for path in files:
        with open_source(path) as source:
            for index, raw in enumerate(read_records(source, "SNAPPY")):
                seen += 1
                if len(kept) < count:
                    kept.append(Window(raw, path, index))
                elif (slot := int(rng.integers(seen))) < count:
                    kept[slot] = Window(raw, path, index)
    if not kept:
        raise FileNotFoundError(f"--data {data}: its shards hold no window; expected the pipeline's output")
    return kept


def window_batches(windows: list, runner, model_config, batch_size: int) -> Iterator[dict[str, np.ndarray]]:
    """The windows as the graph's inputs (``OnnxEEGFM.feed``), ``batch_size`` of one length at a time."""
    from eegfm.model.batch import collate  # eegfm.model loads transformers: not for eegfm-quantize --help
    from eegfm.model.inputs import inputs_for_modalities

    by_length: dict[int, list] = {}
    for window in windows:
        by_length.setdefault(window.n_times, []).append(window)
    for group in by_length.values():
        for start in range(0, len(group), batch_size):
            batch = collate(group[start : start + batch_size])
            inputs = inputs_for_modalities(
                batch, model_config.modalities, spectrogram_pool=model_config.spectrogram_pool
            )
            yield runner.feed(**inputs)


class FeedReader:
    """An ONNX Runtime ``CalibrationDataReader`` over prepared input batches, with a progress bar."""

    def __init__(self, batches: Iterable[Mapping[str, np.ndarray]], total: int | None = None) -> None:
        self._batches = iter(batches)
        self.done = 0
        self.progress = tqdm(total=total, desc="calibration", unit="batch", disable=None)

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._batches, None)
        if batch is None:
            self.progress.close()
            return None
        self.done += 1
        self.progress.update()
        return dict(batch)


class _AdviceFilter(logging.Filter):
    """Drops the quantizer's warnings to the root logger (advice to pre-process: its shape
    inference cannot follow the exporter's symbolic dimensions, and quantization works without)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.name != "root" or record.levelno >= logging.ERROR


def excluded_nodes(graph, patterns: Iterable[str]) -> list[str]:
    """Names of the graph's nodes whose module scope (the exporter's ``namespace`` metadata) or
    name contains one of ``patterns``."""
    patterns = tuple(patterns)
    names = []
    for node in graph.node:
        scope = next((p.value for p in node.metadata_props if p.key == "namespace"), "")
        if any(p in scope or p in node.name for p in patterns):
            names.append(node.name)
    return names


def quantize_graph(
    float_path: Path, output: Path, batches: Iterable[Mapping[str, np.ndarray]], config: QuantizeConfig
) -> Path:
    """``output``: ``float_path`` statically quantized (QDQ) with ranges from ``batches`` (the
    graph's inputs); written atomically."""
    import onnx  # heavy: only to quantize, not for --help
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    graph = onnx.load(str(float_path))
    source = {p.key: p.value for p in graph.metadata_props}  # read first: the quantizer may change the proto
    excluded = excluded_nodes(graph.graph, config.exclude)
    unmatched = [p for p in config.exclude if not excluded_nodes(graph.graph, [p])]
    if unmatched:
        log.warning("--exclude %s: no node of %s is in that module; nothing kept float for it", unmatched, float_path)
    method = {"minmax": "MinMax", "percentile": "Percentile", "entropy": "Entropy"}[config.method]
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(f".{output.name}.{os.getpid()}.partial")
    reader = batches if isinstance(batches, FeedReader) else FeedReader(batches)
    advice = _AdviceFilter()
    logging.getLogger().addFilter(advice)
    try:
        quantize_static(
            graph,
            str(partial),
            reader,
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(QUANTIZED_OPS),
            per_channel=config.per_channel,
            activation_type=QuantType.QUInt8,  # asymmetric uint8 activations: ONNX Runtime's CPU kernels' U8S8
            weight_type=QuantType.QInt8,
            nodes_to_exclude=excluded,
            calibrate_method=getattr(CalibrationMethod, method),
            extra_options={"MatMulConstBOnly": True},
        )
    finally:
        logging.getLogger().removeFilter(advice)
    if reader.done == 0:
        partial.unlink(missing_ok=True)
        raise ValueError("calibration: no input batch; expected at least one window")
    _finish(partial, source, config, reader.done, len(excluded))
    partial.replace(output)
    return output


def _finish(path: Path, source: dict[str, str], config: QuantizeConfig, n_batches: int, n_excluded: int) -> None:
    """The float graph's metadata ``source`` on the quantized one, with how it was made; no node debug metadata."""
    import onnx  # heavy: only to quantize, not for --help

    quantized = onnx.load(str(path))
    for node in quantized.graph.node:
        del node.metadata_props[:]
    del quantized.metadata_props[:]
    recipe = {
        "format": "QDQ",
        "ops": list(QUANTIZED_OPS),
        "weights": "int8 per channel" if config.per_channel else "int8 per tensor",
        "activations": "uint8",
        "method": config.method,
        "calibration_batches": n_batches,
        "float32_modules": list(config.exclude),
        "float32_nodes": n_excluded,
    }
    onnx.helper.set_model_props(quantized, {**source, "eegfm.quantization": json.dumps(recipe)})
    onnx.save(quantized, str(path))


def quantize_model(model: str | Path, data: str | Path, config: QuantizeConfig, output: Path | None = None) -> Path:
    """The INT8 graph of the fine-tuned model folder ``model`` (a run or its ``model/``), calibrated
    on windows of ``data``; ``output`` None: ``model.int8.onnx`` beside ``model.onnx``."""
    # torch and transformers: not for eegfm-quantize --help
    from eegfm.inference.backends import onnx_path_for
    from eegfm.model.architectures import load_model_config
    from eegfm.model.export import OnnxEEGFM

    if not Path(model).exists() and not is_remote(str(model)):
        raise FileNotFoundError(f"--model {model}: no such folder; expected a fine-tuning run folder or its model/")
    if not Path(data).exists() and not is_remote(str(data)):
        raise FileNotFoundError(f"--data {data}: no such folder; expected the output folder of eegfm-preprocess")
    model_dir, _ = resolve_model_dir(model)
    windows = sample_windows(data, config.calibration_windows, config.seed)  # before a slow export
    float_path = onnx_path_for(model_dir)
    log.info("calibrating on %d windows of --data (%s ranges)", len(windows), config.method)
    runner = OnnxEEGFM(float_path, threads=1)
    total = -(-len(windows) // config.batch_size)
    batches = window_batches(windows, runner, load_model_config(model_dir), config.batch_size)
    output = output or derived_dir(model_dir) / INT8_NAME
    return quantize_graph(float_path, output, FeedReader(batches, total), config)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="eegfm-quantize",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Quantize a fine-tuned model's ONNX graph to INT8 (static, QDQ), calibrated on "
        "preprocessed windows; eegfm-predict --backend onnx-int8 runs it.",
        epilog=__doc__.split("\n\n", 2)[2],
    )
    parser.add_argument(
        "--model",
        required=True,
        type=user_path,
        help="a training.finetune run folder or its model/ folder; its model.onnx is exported first where missing",
    )
    parser.add_argument(
        "--data",
        required=True,
        type=user_path,
        help="calibration windows: an eegfm-preprocess output folder (manifest.json and TFRecord shards), "
        "ideally the model's own training data, never its test split",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help=f"where to write the INT8 graph (default: {INT8_NAME} beside model.onnx, where "
        "--backend onnx-int8 looks for it)",
    )
    defaults = QuantizeConfig()
    parser.add_argument(
        "--calibration_windows",
        type=int,
        default=defaults.calibration_windows,
        help="windows drawn (uniformly, seeded) from --data to measure activation ranges",
    )
    parser.add_argument("--batch_size", type=int, default=defaults.batch_size, help="windows per calibration batch")
    parser.add_argument(
        "--method",
        choices=CALIBRATION_METHODS,
        default=defaults.method,
        help="activation ranges: minmax (the observed extremes), percentile (99.999th), entropy (KL-optimal)",
    )
    parser.add_argument(
        "--per_tensor",
        action="store_true",
        help="one scale per weight tensor instead of one per output channel (less accurate)",
    )
    parser.add_argument(
        "--exclude",
        nargs="*",
        default=list(DEFAULT_EXCLUDE),
        help="module paths whose nodes stay float32 (matched inside the exporter's node scopes and "
        "names); --exclude with no path quantizes every MatMul/Gemm",
    )
    parser.add_argument("--seed", type=int, default=defaults.seed, help="seed of the calibration windows' draw")
    return parser


def main(argv: list[str] | None = None) -> int:
    fair_threads()  # before any work: core/threads.py
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging("INFO")
    try:
        config = QuantizeConfig(
            calibration_windows=args.calibration_windows,
            batch_size=args.batch_size,
            method=args.method,
            per_channel=not args.per_tensor,
            exclude=tuple(args.exclude),
            seed=args.seed,
        )
        path = quantize_model(args.model, args.data, config, args.output)
    except (ConfigError, FileNotFoundError, ValueError) as err:
        parser.error(str(err))
    float_size = (path.parent / ONNX).stat().st_size if (path.parent / ONNX).is_file() else None
    ratio = f" ({float_size / path.stat().st_size:.2f}x smaller than model.onnx)" if float_size else ""
    print(f"wrote {path}: {path.stat().st_size / 1e6:.2f} MB{ratio}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
