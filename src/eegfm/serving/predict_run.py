"""``eegfm-predict``'s run (serving.predict parses the command line): the inputs checked as typed and
listed, the model loaded, every recording scored and written, with its progress on stderr."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

from eegfm.core.config import ConfigError
from eegfm.core.logs import get_logger, setup_logging
from eegfm.core.machine import Cpus, cpu_use_line
from eegfm.core.tasks import HMS_CLASSES
from eegfm.core.text_safety import escape_controls, escaping_logs
from eegfm.inference.predictor import Predictor, list_inputs
from eegfm.pipelines.datasets import named_in_reason
from eegfm.pipelines.privacy.deid import DEFAULT_KEY_FILE, PseudonymKeyError, ensure_key, load_key, warn_if_shared
from eegfm.pipelines.privacy.redact import RunRedaction, kept_folders, related_paths
from eegfm.serving.explain.cli import explain_recordings
from eegfm.serving.model_threads import threads_use
from eegfm.serving.predict import predict_config
from eegfm.serving.predict_inputs import input_problem, no_recording_problem, typed_listing_error
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
from eegfm.serving.predict_progress import RecordingProgress
from eegfm.serving.recording_table import FILE as RECORDINGS_CSV
from eegfm.serving.recording_table import RecordingTable, answer_text

log = get_logger(__name__)


def run_parsed(parser, args) -> dict:
    """The run the parsed command line asks for; its report (recordings.json's content)."""
    setup_logging("INFO")
    # Log records are held until the inputs are listed, then come out without their names.
    redaction = RunRedaction(not args.keep_paths, args.input)
    try:  # escaping after redaction's filter: its scrubber must see the names as they are
        with escaping_logs():
            return _run(parser, args, redaction)
    finally:
        redaction.close()


def _usage_error(parser, redaction: RunRedaction, message: str) -> None:
    """Exit 2 with ``message`` (control characters escaped), the held log records released first."""
    redaction.release()
    parser.error(escape_controls(message))


def _key(parser, args, redaction: RunRedaction) -> bytes:
    """The pseudonym key: --pseudonym_key_file's, else the default key file, created on first use."""
    path = args.pseudonym_key_file or DEFAULT_KEY_FILE
    try:
        ensure_key(path, args.create_key_file)
        key = load_key(path)
    except PseudonymKeyError as err:
        _usage_error(parser, redaction, str(err))
    if "://" not in str(path):  # object stores have their own access control
        warn_if_shared(path)
    return key


def _listed(parser, args, redaction: RunRedaction):
    """The recordings the --input paths hold and the entries that are none; a usage error that quotes
    the --input as typed where one names nothing or holds no recording file."""
    for typed in args.input:  # before any listing: a mistyped path is said as typed, not as a token
        if problem := input_problem(typed):
            _usage_error(parser, redaction, f"--input {typed}: {problem}")
    try:
        items, passed_over = list_inputs(args.input, dataset=args.dataset, site=args.site)
    except FileNotFoundError as err:
        message = typed_listing_error(str(err), args.input)
        # a message about a file found inside a folder is data, scrubbed of its names
        _usage_error(parser, redaction, message or redaction.scrub(str(err)))
    except ConfigError as err:
        _usage_error(parser, redaction, redaction.scrub(str(err)))
    if not items:
        _usage_error(parser, redaction, no_recording_problem(args.input, len(passed_over)))
    return items, passed_over


def _run(parser, args, redaction: RunRedaction) -> dict:
    config = predict_config(args, parser)
    earlier = _check_output(parser, args, redaction)
    items, passed_over = _listed(parser, args, redaction)
    key = _key(parser, args, redaction)  # after the inputs: a mistyped --input makes no key file
    named = [
        *args.input,
        *(p for item in items for p in related_paths(item)),
        *(p for g in passed_over for p in (g.path, *named_in_reason(g.path))),
    ]
    redaction.keyed(key, named, kept_folders(args.input))
    ignored = [_ignored_entry(g, redaction) for g in passed_over]
    log.info(
        "%d recording%s to score%s; loading the model",
        len(items),
        "s" * (len(items) != 1),
        f" ({len(ignored)} other entries are none, listed in recordings.json)" if ignored else "",
    )
    log.info(cpu_use_line(Cpus.here().usable, [threads_use(args)]))
    try:
        predictor = Predictor(args.model, config, name_key=key)
    except (ConfigError, FileNotFoundError) as err:
        _usage_error(parser, redaction, str(err))
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
        labels = list(predictor.labels)
        with partial.open("w", newline="") as fileobj, table_partial.open("w", newline="") as table_file:
            table = RecordingTable(table_file, labels)
            recordings, n_windows, eeg_seconds = _write_predictions(predictor, items, fileobj, table, args)
    except (ConfigError, FileNotFoundError) as err:
        partial.unlink(missing_ok=True)
        table_partial.unlink(missing_ok=True)
        _usage_error(parser, redaction, redaction.scrub(str(err)))
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
    if not args.keep_paths:  # the inputs are not echoed: they may be a patient's folder
        key_file = args.pseudonym_key_file or DEFAULT_KEY_FILE
        print(
            escape_controls(
                f"recordings are named by tokens under the key {key_file}: eegfm-redact --input <the same inputs> "
                f"--pseudonym_key_file {key_file} --find file-<hex> names the file of one"
            )
        )
    return report


def _write_predictions(predictor, items, fileobj, table: RecordingTable, args) -> tuple[list[dict], int, float]:
    """Each recording's windows as predictions.csv rows in ``fileobj``, its row of ``table`` and,
    unless --no_plots, its timeline, with its progress on stderr; the recordings' summaries, the
    windows and the EEG seconds scored."""
    from eegfm.inference.timeline import plot_timeline  # matplotlib: only once there is a plot to make

    labels = list(predictor.labels)
    recordings, n_windows, eeg_seconds = [], 0, 0.0
    writer = csv.writer(fileobj)
    writer.writerow(prediction_header(labels))
    with RecordingProgress(len(items)) as progress:
        for prediction in predictor.predict_items(items, on_batch=progress.windows):
            progress.scored(prediction)
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
            recordings.append(summary)
            n_windows += len(prediction.windows)
            eeg_seconds += prediction.eeg_seconds
            progress.next()
    return recordings, n_windows, eeg_seconds


def _check_output(parser, args, redaction: RunRedaction) -> list:
    """The files of an earlier run in --output, to remove first (--overwrite); without --overwrite,
    a usage error (two runs' files would mix: a CSV of one, timelines of both)."""
    earlier = previous_run(args.output)
    if earlier and not args.overwrite:
        _usage_error(
            parser,
            redaction,
            f"--output {args.output}: holds another eegfm-predict run ({run_summary(args.output, earlier)}); "
            "give --overwrite to remove that run's files first (only the names eegfm-predict writes), "
            "or another --output",
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
    _print_evaluation(report)
    wrote = f"wrote {output / PREDICTIONS_CSV}, {output / RECORDINGS_CSV} and {output / RECORDINGS_JSON}"
    print(escape_controls(wrote))


def _print_evaluation(report: dict) -> None:
    """The model's own held-out numbers, where its run has them."""
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
