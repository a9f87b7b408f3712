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
  windows per label, minutes per class, flagged episodes (contiguous windows recommended for
  urgent or expert review) and every window's prediction, or the stage and reason it was
  quarantined; and the model's description (schema: inference/prediction.schema.json);
- ``timelines/NNN_<name>.png``: each recording's probabilities over time above its artifact
  scores (``--no_plots`` leaves them out);
- by default a recording is named in all of these, on stdout and in the log by its index and a
  keyed token of its file name (``file-<hex>.edf``), never by its name or path, and a channel
  label that is no electrode, reference or auxiliary signal by ``chan-<hex>`` (``--keep_paths``:
  names as given);
- with ``--submission FILE`` (a six-class HMS model on the Kaggle layout: ``test.csv`` +
  ``test_eegs/``): the competition's submission, a row per eeg_id with the six class
  probabilities (the mean over the recording's windows; the class prior of the model's training
  windows for a recording that could not be scored, which is named in a warning).

``--output`` holding another run's files (those names) is refused unless ``--overwrite``, which
removes them first and nothing else (serving/predict_outputs.py). A CSV's text cell that starts
with ``=``, ``+``, ``-``, ``@``, a tab or a CR is written after a ``'`` (no spreadsheet runs it); a
name's control characters are escaped on stdout and in the log (``\\x1b``, ``\\n``).

Exit status 0 when at least one recording was scored, 1 when none was (every reason is printed),
2 for a usage error.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

from eegfm.core.config import ConfigError, user_path
from eegfm.core.logs import get_logger, setup_logging
from eegfm.core.machine import Cpus, cpu_use_line
from eegfm.core.tasks import HMS_CLASSES
from eegfm.core.text_safety import escape_controls, escaping_logs
from eegfm.inference.backends import BACKENDS
from eegfm.pipelines.datasets import DATASETS, named_in_reason
from eegfm.pipelines.privacy.deid import PseudonymKeyError, load_key
from eegfm.pipelines.privacy.redact import RunRedaction, kept_folders, related_paths
from eegfm.serving.explain.cli import add_explain_options, explain_recordings
from eegfm.serving.model_threads import threads_help, threads_use
from eegfm.serving.predict_outputs import (
    PARTIAL,
    PREDICTIONS_CSV,
    RECORDINGS_JSON,
    plot_name,
    prediction_header,
    prediction_row,
    previous_run,
    remove_run,
    run_summary,
    write_submission,
)
from eegfm.serving.recording_table import FILE as RECORDINGS_CSV
from eegfm.serving.recording_table import RecordingTable, answer_text

log = get_logger(__name__)


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
        choices=DATASETS,
        default="auto",
        help="how to read the inputs' layout (as eegfm-preprocess --dataset); auto detects it",
    )
    parser.add_argument("--site", default=None, help="site name for every input (default: from the path)")
    add_predictor_options(parser)
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


def add_predictor_options(parser: argparse.ArgumentParser, threads_shared: str = "") -> None:
    """The options that configure the predictor, eegfm-predict's and eegfm-serve's alike: the model,
    how it runs, its uncertainty and recommendations, and the key of the names it gives.
    ``threads_shared``: how eegfm-serve divides --threads' default between its processes."""
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
        help="the key of the tokens (eegfm-preprocess's key file gives the tokens its manifest and eegfm-redact "
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
            **same,
        )
    except ConfigError as err:
        parser.error(str(err))


def _write_predictions(
    predictions, fileobj, table: RecordingTable, labels: list[str], args
) -> tuple[list[dict], int, float]:
    """Each prediction's windows as predictions.csv rows in ``fileobj``, its row of ``table`` and,
    unless --no_plots, its timeline; the recordings' summaries, the windows and the EEG seconds scored."""
    from eegfm.inference.timeline import plot_timeline  # imports the predictor (the model): not for --help

    recordings, n_windows, eeg_seconds = [], 0, 0.0
    writer = csv.writer(fileobj)
    writer.writerow(prediction_header(labels))
    for prediction in tqdm(predictions, desc="recordings", unit="rec", disable=None):
        summary = prediction.as_dict()  # the summary, the labels and every window's prediction
        for w in prediction.windows:
            writer.writerow(prediction_row(prediction, w, labels))
        table.write(summary)
        if prediction.windows and not args.no_plots:
            name = plot_name(prediction.index, prediction.input)
            plot_timeline(
                prediction, f"{prediction.input}: {summary.get('predicted', '')}", args.output / "timelines" / name
            )
            summary["timeline"] = f"timelines/{name}"
        if prediction.status != "processed":
            log.warning("quarantined %s at %s: %s", prediction.input, prediction.stage, prediction.reason)
        recordings.append(summary)
        n_windows += len(prediction.windows)
        eeg_seconds += prediction.eeg_seconds
    return recordings, n_windows, eeg_seconds


def run(argv: list[str] | None = None) -> dict:
    from eegfm.inference.predictor import Predictor  # the model and training's loader: not for --help

    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging("INFO")
    # Log records are held until the inputs are listed, then come out without their names.
    redaction = RunRedaction(not args.keep_paths, args.input)
    try:  # escaping after redaction's filter: its scrubber must see the names as they are
        with escaping_logs():
            return _run(parser, args, redaction, Predictor)
    finally:
        redaction.close()


def _run(parser, args, redaction: RunRedaction, predictor_class) -> dict:
    config = predict_config(args, parser)
    earlier = _check_output(parser, args, redaction)
    log.info(cpu_use_line(Cpus.here().usable, [threads_use(args)]))
    try:
        key = load_key(args.pseudonym_key_file) if args.pseudonym_key_file else None
        predictor = predictor_class(args.model, config, name_key=key)
    except (ConfigError, FileNotFoundError, PseudonymKeyError) as err:
        redaction.release()
        parser.error(str(err))
    if args.submission and predictor.labels != HMS_CLASSES:
        parser.error(
            f"--submission: the Kaggle HMS format needs a six-class hms6 model (labels "
            f"{', '.join(HMS_CLASSES)}); this model's labels are {', '.join(predictor.labels)}"
        )
    if earlier:
        remove_run(args.output, earlier)
        log.info("--overwrite: removed %d files of the earlier run in %s", len(earlier), args.output)
    args.output.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    partial, table_partial = (args.output / name for name in PARTIAL)
    try:
        items, passed_over = predictor.listed(args.input, dataset=args.dataset, site=args.site)
        named = [
            *args.input,
            *(p for item in items for p in related_paths(item)),
            *(p for g in passed_over for p in (g.path, *named_in_reason(g.path))),
        ]
        redaction.keyed(predictor.name_key, named, kept_folders(args.input))
        ignored = [_ignored_entry(g, redaction) for g in passed_over]
        predictions = predictor.predict_items(items)
        labels = list(predictor.labels)
        with partial.open("w", newline="") as fileobj, table_partial.open("w", newline="") as table_file:
            table = RecordingTable(table_file, labels)
            recordings, n_windows, eeg_seconds = _write_predictions(predictions, fileobj, table, labels, args)
    except (ConfigError, FileNotFoundError) as err:
        partial.unlink(missing_ok=True)
        table_partial.unlink(missing_ok=True)
        redaction.release()
        parser.error(escape_controls(redaction.scrub(f"--input {' '.join(args.input)}: {err}")))
    partial.replace(args.output / PREDICTIONS_CSV)
    table_partial.replace(args.output / RECORDINGS_CSV)
    seconds = time.perf_counter() - started
    explain_recordings(args, predictor, items, recordings)
    processed = [r for r in recordings if r["status"] == "processed"]
    report = {
        "model": str(args.model),
        **predictor.describe(),
        "recordings": recordings,
        # what the inputs name that is no recording (a sidecar, a hidden file, a FIFO, a device), never opened
        "ignored": ignored,
        "counts": {
            "recordings": len(recordings),
            "ignored": len(ignored),
            "processed": len(processed),
            "quarantined": len(recordings) - len(processed),
            "windows": n_windows,
            "eeg_hours": round(eeg_seconds / 3600, 4),
            "seconds": round(seconds, 2),
        },
    }
    (args.output / RECORDINGS_JSON).write_text(json.dumps(report, indent=2) + "\n")
    if args.submission:
        write_submission(args.submission, recordings, predictor.prior)
    _print_summary(report, args.output)
    return report


def _check_output(parser, args, redaction: RunRedaction) -> list:
    """The files of an earlier run in --output, to remove first (--overwrite); without --overwrite,
    a usage error (two runs' files would mix: a CSV of one, timelines of both)."""
    earlier = previous_run(args.output)
    if earlier and not args.overwrite:
        redaction.release()
        parser.error(
            escape_controls(
                f"--output {args.output}: holds another eegfm-predict run ({run_summary(args.output, earlier)}); "
                "give --overwrite to remove that run's files first (only the names eegfm-predict writes), "
                "or another --output"
            )
        )
    return earlier


def _ignored_entry(entry, redaction: RunRedaction) -> dict:
    """An input that is no recording, as recordings.json lists it: under redaction named as a
    recording is (its file name's keyed token), its reason scrubbed of the names it holds."""
    redactor = redaction.redactor
    name = entry.path.rstrip("/").rsplit("/", 1)[-1]
    return {
        "input": redactor.name(name) if redactor.enabled else entry.path,
        "reason": redaction.scrub(entry.reason),
    }


def _print_summary(report: dict, output: Path) -> None:
    counts = report["counts"]
    rate = counts["eeg_hours"] * 3600 / counts["seconds"] if counts["seconds"] else 0.0
    print(
        f"\n{counts['recordings']} recordings: {counts['processed']} scored, {counts['quarantined']} quarantined; "
        f"{counts['windows']} windows, {counts['eeg_hours']:.3f} EEG-hours in {counts['seconds']:.1f} s "
        f"({rate:.0f}x real time; backend {report['backend']})"
    )
    shown = report["recordings"][:20]
    # a name's or label's control characters escaped: an ESC or a newline in one would rewrite the terminal or
    # forge a line (--keep_paths shows names as given; recordings.json keeps them, JSON escapes them)
    inputs = [escape_controls(r["input"]) for r in shown]
    width = max([len(name) for name in inputs] + [9])
    for r, shown_input in zip(shown, inputs):
        name = f"{r['index']:>3} {shown_input:<{width}}"
        if r["status"] == "processed":
            flagged = len(r.get("flagged_episodes", []))
            print(
                f"  {name}  {escape_controls(answer_text(r)):<8} {r['windows']:>5} windows  "
                f"artifact {r['mean_artifact_score']:.2f}"
                + (f"  {flagged} flagged episode{'s' * (flagged > 1)}" if flagged else "")
            )
        else:
            print(f"  {name}  quarantined at {r['stage']}: {escape_controls(r['reason'])}")
    if len(report["recordings"]) > len(shown):
        print(f"  ... and {len(report['recordings']) - len(shown)} more in recordings.json")
    if report.get("ignored"):
        print(f"{len(report['ignored'])} other input(s) are no recordings and were not read (why: recordings.json)")
    if (evaluation := report.get("evaluation")) and "n_windows" in evaluation["metrics"]:
        m = evaluation["metrics"]
        loss, baseline = ("kl", "baseline_kl") if "kl" in m else ("loss", "baseline_loss")
        said = [f"{loss} {m[loss]:.3f}" + (f" (class prior {m[baseline]:.3f})" if baseline in m else "")]
        said += [
            f"{name} {m[key]:.3f}"
            for key, name in (("balanced_accuracy", "balanced accuracy"), ("auroc", "AUROC"), ("ece", "ECE"))
            if key in m
        ]
        print(
            f"the model on {m['n_windows']} held-out {evaluation['split']} windows: {', '.join(said)}"
            + (" (optimistic: they also chose the checkpoint)" if evaluation["split"] == "validation" else "")
        )
    wrote = f"wrote {output / PREDICTIONS_CSV}, {output / RECORDINGS_CSV} and {output / RECORDINGS_JSON}"
    print(escape_controls(wrote))


def main(argv: list[str] | None = None) -> int:
    report = run(argv)
    if not report["counts"]["processed"]:
        print("no recording could be scored (reasons above)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
