"""``eegfm-predict``: a fine-tuned model's predictions for raw EEG recordings.

    eegfm-predict --model outputs/demo/finetune --input recordings/ --output predictions/

Every recording the inputs hold is prepared exactly as the model's training windows were (the
recipe saved beside the model) and scored window by window. Written to ``--output``:

- ``predictions.csv``: one row per window: the recording's index and input, its start and length
  (s), one column per label (probabilities, calibrated unless ``--uncalibrated``; a regression
  head's value), the most likely label, the artifact score and the channels interpolated in it
  (and the expert votes where the input has them: the HMS layout); then the confidence, the
  uncertainty (entropy, mutual information of ``--mc_passes`` MC-dropout samples), the clinical
  recommendation (``--recommendation_rules``), the rule that gave it and the model's version;
- ``recordings.csv``: one row per recording (scored or quarantined), written as it finishes: its
  index, input, status and windows; for a classifier each class's probability (the mean over its
  windows) with a 95 % interval (``p_<label>``, ``p_<label>_low``, ``p_<label>_high``: a
  moving-block bootstrap over the windows, empty with one window) and the most likely class; a
  quarantined recording's stage and reason (serving/recording_table.py);
- ``recordings.json``: one entry per recording with its mean probabilities, most likely label,
  windows per label, minutes per class, flagged episodes (one per run of windows of one
  class with a flagged recommendation: inference.clinical.flagged_episodes) and every window's
  prediction, or the stage and reason it was quarantined; and the model's description (schema:
  inference/prediction.schema.json);
- ``timelines/NNN_<name>.png``: each recording's probabilities over time above its artifact
  scores (``--no_plots`` leaves them out);
- by default a recording is named in all of these, on stdout and in the log by its index and a
  keyed token of its file name (``file-<hex>.edf``), never by its name or path, and a channel
  label that is no electrode, reference or auxiliary signal by ``chan-<hex>`` (``--keep_paths``:
  names as given). The key is eegfm-preprocess's (``~/.config/eegfm/pseudonym.key``, created on
  first use, readable by its owner only; ``--pseudonym_key_file`` another), kept outside the
  outputs, so a file has the same token in every run and ``eegfm-redact --find TOKEN`` with the
  same inputs names it;
- with ``--submission FILE`` (a six-class HMS model on the Kaggle layout: ``test.csv`` +
  ``test_eegs/``): the competition's submission, a row per eeg_id with the six class
  probabilities (the mean over the recording's windows; the class prior of the model's training
  windows for a recording that could not be scored, which is named in a warning).

Every recording is cut into fixed windows over its whole length, as eegfm-serve cuts an upload,
whatever data set its path looks like; ``--event_windows`` cuts a data set's labelled events instead
(EEGMMI's T1/T2 trials: the windows the model may have been trained on), and only those.

Progress goes to stderr: a bar of recordings (and of windows inside one past 10 minutes of EEG) on a
terminal; elsewhere (a log file, a pipe) one line per recording: its index, name (token), status,
windows and seconds.

``--output`` holding another run's files (those names) is refused unless ``--overwrite``, which
removes them first and nothing else (serving/predict_outputs.py). A CSV's text cell that starts
with ``=``, ``+``, ``-``, ``@``, a tab or a CR is written after a ``'`` (no spreadsheet runs it); a
name's control characters are escaped on stdout and in the log (``\\x1b``, ``\\n``).

Exit status 0 when at least one recording was scored, 1 when none was (every reason is printed),
2 for a usage error.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

# Only what the parser needs: --help, a usage error and shell completion import no torch, Beam or mne
# (tests/test_commands.py); the run is serving.predict_run, imported by run().
from eegfm.core.config import ConfigError, user_path
from eegfm.core.threads import fair_threads
from eegfm.inference.backend_names import BACKENDS
from eegfm.pipelines.privacy.deid import DEFAULT_KEY_FILE
from eegfm.serving.explain.options import add_explain_options
from eegfm.serving.model_threads import threads_help, threads_use

_KEY_HELP = (
    f"the key of the recordings' tokens (default {DEFAULT_KEY_FILE}, eegfm-preprocess's, created on first use): "
    "the same key gives the same tokens in every run, in eegfm-preprocess's manifests and in eegfm-redact's "
    "listing, which maps them back"
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="eegfm-predict",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Predict with a fine-tuned eegfm model on raw EEG: the pipeline's preprocessing (as the "
        "model's training windows were made), then the model, window by window.",
        epilog=__doc__.split("\n\n", 2)[2],
    )
    parser.add_argument(
        "--input",
        required=True,
        nargs="+",
        type=user_path,
        help="recordings: files, folders or globs (** recurses), local, gs:// or s3://; "
        "every format eegfm-preprocess reads",
    )
    parser.add_argument("--output", required=True, type=Path, help="folder for the predictions (created)")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="--output may hold another eegfm-predict run: its files (the names this command writes) are removed "
        "first; without it such a folder is refused. Other files in the folder are never touched",
    )
    parser.add_argument(
        "--dataset",
        default="auto",
        help="how to read the inputs' layout, as eegfm-preprocess --dataset (its --help lists them); auto detects it",
    )
    parser.add_argument("--site", default=None, help="site name for every input (default: from the path)")
    parser.add_argument(
        "--event_windows",
        action="store_true",
        help="where the inputs' data set labels its own events (EEGMMI's T1/T2), score the windows cut at "
        "them (as eegfm-preprocess cuts training windows), and only those; default: fixed windows over the "
        "whole recording, as eegfm-serve scores an upload",
    )
    add_predictor_options(parser, key_help=_KEY_HELP)
    parser.add_argument(
        "--create_key_file",
        action="store_true",
        help="create --pseudonym_key_file with a new random key if it does not exist (the default key "
        "file is created on first use without it)",
    )
    parser.add_argument("--no_plots", action="store_true", help="leave out the per-recording timelines")
    parser.add_argument(
        "--submission",
        type=Path,
        default=None,
        help="also write the Kaggle HMS submission (eeg_id, seizure_vote ... other_vote) to this "
        "CSV; needs a hms6 model and the HMS layout's parquet recordings",
    )
    _add_redaction_options(parser)
    add_explain_options(parser)
    return parser


def add_predictor_options(parser: argparse.ArgumentParser, threads_shared: str = "", key_help: str = "") -> None:
    """The options that configure the predictor, eegfm-predict's and eegfm-serve's alike: the model,
    how it runs, its uncertainty and recommendations, and the key of the names it gives.
    ``threads_shared``: how eegfm-serve divides --threads' default between its processes; ``key_help``:
    where the command's key comes from by default."""
    parser.add_argument(
        "--model",
        required=True,
        type=user_path,
        help="a training.finetune run folder, or the model/ folder in it (config.json, "
        "model.safetensors, preprocess.json); local, or s3:// / gs:// as published by "
        "eegfm-models (fetched once into ~/.cache/eegfm); a published "
        "version: STORE/NAME@ALIAS (e.g. s3://bucket/models/NAME@production) or NAME@sha256:DIGEST "
        "(or a unique prefix of it)",
    )
    _add_model_options(parser, threads_shared)
    _add_uncertainty_options(parser)
    parser.add_argument(
        "--pseudonym_key_file",
        type=user_path,
        default=None,
        help=key_help
        or "the key of the tokens (eegfm-preprocess's key file gives the tokens its manifest and eegfm-redact "
        "give); default: a random key per run, so tokens are consistent within the run only",
    )


def _add_model_options(parser: argparse.ArgumentParser, threads_shared: str = "") -> None:
    """How the model runs: back-end, device, batch, windows, calibration, threads, precision."""
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default="torch",
        help="torch: the model as saved; onnx: ONNX Runtime (model.onnx, exported beside the "
        "model on first use); onnx-int8: ONNX Runtime on its static INT8 quantization (model.int8.onnx, "
        "made by python -m eegfm.serving.quantize); tensorrt: a TensorRT engine built from model.onnx (NVIDIA GPU)",
    )
    parser.add_argument(
        "--device",
        choices=["auto", "cpu", "cuda"],
        default="auto",
        help="auto: CUDA where torch sees a GPU (tensorrt always uses it)",
    )
    parser.add_argument("--batch_size", type=int, default=32, help="windows per forward pass")
    parser.add_argument(
        "--stride_seconds",
        type=float,
        default=None,
        help="seconds between window starts (default: the training windows'; less than the "
        "window length gives overlapping windows, a smoother timeline)",
    )
    parser.add_argument(
        "--uncalibrated",
        action="store_true",
        help="probabilities from the logits as trained, without the temperature fitted on validation",
    )
    parser.add_argument(
        "--no_artifact_model",
        action="store_true",
        help="artifact scores from the pipeline's rules only, not also its autoencoder",
    )
    parser.add_argument("--threads", type=int, default=None, help=threads_help(threads_shared))
    parser.add_argument(
        "--precision",
        choices=["fp16", "bf16", "fp32"],
        default="fp16",
        help="TensorRT engine precision (--backend tensorrt only)",
    )


def _add_uncertainty_options(parser: argparse.ArgumentParser) -> None:
    """How uncertain windows are measured and what is recommended for them."""
    parser.add_argument(
        "--mc_passes",
        type=int,
        default=None,
        help="Monte-Carlo dropout samples per window for its uncertainty: fixed masks on the model's "
        "head, so every run and backend gives the same numbers; 0: none (mutual information null); "
        "default: the model's config (mc_passes, 20 unless set)",
    )
    parser.add_argument(
        "--recommendation_rules",
        type=user_path,
        default=None,
        help="a YAML rule table giving each window its clinical recommendation from its probabilities, "
        "uncertainty and artifact score (docs/serving.md); default: the package's "
        "inference/recommendation.yaml",
    )


def _add_redaction_options(parser: argparse.ArgumentParser) -> None:
    """Names in outputs: keyed tokens by default."""
    parser.add_argument(
        "--keep_paths",
        action="store_true",
        help="file and folder names appear as given; use only where names carry no identifiers (default: a "
        "recording is named by its index and a keyed token, file-<hex>, and channel labels that are no "
        "electrode by chan-<hex>, in every output, on stdout and in the log; --pseudonym_key_file keys them)",
    )


def predict_config(args, parser):
    """The PredictConfig the command line asks for (--device auto: CUDA where torch sees a GPU;
    --threads: see :func:`~serving.model_threads.threads_use`)."""
    import torch  # not for --help

    from eegfm.inference.predictor import PredictConfig  # the model and training's loader: not for --help

    gpu = args.backend == "tensorrt" or args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
    same = {name: getattr(args, name) for name in ("backend", "batch_size", "stride_seconds", "precision", "mc_passes")}
    try:
        return PredictConfig(
            device="cuda" if gpu else "cpu",
            threads=threads_use(args).count,
            calibrated=not args.uncalibrated,
            redact=not getattr(args, "keep_paths", False),  # eegfm-serve asks per request (echo_name)
            artifact_model=not args.no_artifact_model,
            recommendation_rules=args.recommendation_rules,
            event_windows=getattr(args, "event_windows", False),  # eegfm-serve's uploads name no data set
            **same,
        )
    except ConfigError as err:
        parser.error(str(err))


def run(argv: list[str] | None = None) -> dict:
    parser = build_parser()
    args = parser.parse_args(argv)
    from eegfm.serving.predict_run import run_parsed  # torch, Beam, the model: not for --help

    return run_parsed(parser, args)


def main(argv: list[str] | None = None) -> int:
    fair_threads()  # before any work: core/threads.py
    report = run(argv)
    if not report["counts"]["processed"]:
        print("no recording could be scored (reasons above)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
