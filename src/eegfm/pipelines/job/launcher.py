"""The launcher of the preprocessing job (``eegfm-preprocess``, whose command line is ``preprocess``):
raw EEG -> de-identified, 256 Hz, artifact-scored windows in snappy TFRecords, with a manifest of
every input.

:func:`run_parsed` checks the parsed arguments and makes them typed (``options.job_from_args``); the
job, :func:`preprocess` (what the project's own callers run), finds the inputs, holds the output
folder (an earlier run's shards are refused, or deleted with ``--overwrite``), runs the Beam pipeline
(``stages``) on the DirectRunner or Dataflow, and removes what a run that stopped early wrote.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import json
import os
import time

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions

from eegfm.contract import layout
from eegfm.core.config import ConfigError, check_int
from eegfm.core.logs import get_logger, setup_logging
from eegfm.core.process_tree import StallWatchdog, stop_on_signals
from eegfm.core.run_lock import hold_run_lock, release_run_lock, run_token
from eegfm.core.stores import (
    STORE_ERRORS,
    check_gcs_credentials,
    check_reachable,
    check_s3_credentials,
    delete,
    discard_folders,
    is_remote,
    match_below,
    match_path,
    storage_error,
)
from eegfm.core.threads import pool_threads
from eegfm.pipelines.datasets import Ignored, discover, named_in_reason
from eegfm.pipelines.job.leftovers import clear_temporary_folders, temporary_folders
from eegfm.pipelines.job.local_job import run_in_session
from eegfm.pipelines.job.local_parallelism import choose_parallelism, input_bytes
from eegfm.pipelines.job.manifest import count, summarize
from eegfm.pipelines.job.options import given_flags, job_from_args
from eegfm.pipelines.job.process_io import PreprocessConfig
from eegfm.pipelines.job.progress import ProgressReporter, clear_stale_progress, progress_file
from eegfm.pipelines.job.sinks import FILE_NAME_SUFFIX, SITE_FILE_PREFIX
from eegfm.pipelines.job.spec import JobSpec, LaunchOptions
from eegfm.pipelines.job.stages import build_pipeline, load_model
from eegfm.pipelines.job.unknown_args import beam_option_names, describe, unrecognized
from eegfm.pipelines.privacy.deid import PseudonymKeyError, ensure_key, load_key, pseudonym, warn_if_shared
from eegfm.pipelines.privacy.redact import PathRedactor, RunRedaction, related_paths, shown_folders
from eegfm.pipelines.quality.artifact_autoencoder import ArtifactAutoencoder
from eegfm.pipelines.quality.site_report import REPORT_NAME, write_report
from eegfm.pipelines.readers.s3_anonymous import install_s3_anonymous

log = get_logger("preprocess")


def run_parsed(parser: argparse.ArgumentParser, args, beam_args: list[str], argv: list[str] | None) -> dict:
    """The command once ``parser`` has parsed ``argv`` into ``args`` and the ``beam_args`` it left to
    Beam: the arguments checked and made typed (``options.job_from_args``), then :func:`preprocess`;
    a usage problem exits as argparse's own do (status 2), scrubbed of the inputs' names."""
    # First: Beam logs through the root logger, which, without a handler, then gets Python's own.
    setup_logging("DEBUG" if args.verbose else "INFO", verbose=args.verbose)
    try:
        if unknown := unrecognized(beam_args):  # Beam would only warn and run without them
            own = [flag for action in parser._actions for flag in action.option_strings]
            raise UsageError(describe(unknown, own, beam_option_names()))
        try:
            spec, config, launch = job_from_args(args, beam_args, given_flags(parser, argv))
        except (ConfigError, ValueError) as err:
            raise UsageError(_scrubbed(str(err), args)) from None
        return preprocess(spec, config, launch)
    except UsageError as err:
        parser.error(str(err))


def _scrubbed(message: str, args) -> str:
    """``message`` with the inputs' names redacted as a run's are before its key is read."""
    redaction = RunRedaction(not args.keep_paths, args.input, args.shown_folders)
    try:
        return redaction.scrub(message)
    finally:
        redaction.close()


class UsageError(ConfigError):
    """A problem with what the job was asked, found before it starts: the command reports it as
    argparse reports its own (usage, the message, exit status 2); scrubbed of the inputs' names."""


def preprocess(spec: JobSpec, config: PreprocessConfig, launch: LaunchOptions | None = None) -> dict:
    """The job: ``spec``'s inputs through the pipeline ``config`` describes, launched as ``launch``
    says; returns the manifest (empty on Dataflow and for a dry run). Holds the output folder's run
    lock while it runs, clears (or refuses) an earlier run's outputs and removes what a run stopped
    early wrote. UsageError, scrubbed of the inputs' names, for a problem found before any work."""
    launch = launch or LaunchOptions()
    redaction = RunRedaction(spec.redact_paths, spec.inputs, spec.shown_folders)
    try:
        with stop_on_signals():  # SIGTERM and SIGHUP unwind as Ctrl-C does: the job's processes end with it
            return _run(spec, config, launch, redaction)
    except UsageError as err:
        redaction.release()  # the log lines held until the inputs were listed, before the error
        raise UsageError(redaction.scrub(str(err))) from None
    finally:
        redaction.close()


def _run(spec: JobSpec, config: PreprocessConfig, launch: LaunchOptions, redaction: RunRedaction) -> dict:
    options = _pipeline_options(spec, launch)
    try:
        items, ignored, datasets, key = _inputs(spec, config, launch, options, redaction)
    except (ConfigError, PseudonymKeyError, ValueError, *STORE_ERRORS) as err:
        raise UsageError(str(err)) from None
    if options.view_as(StandardOptions).runner is None:
        # Name the runner explicitly (Beam otherwise logs that it is guessing one).
        options.view_as(StandardOptions).runner = "DirectRunner"
    if options.get_all_options().get("dry_run") and _is_local(options):
        plan = _dry_run_plan(spec, items, ignored, datasets, key, redaction.redactor, config.background)
        print(redaction.scrub(plan))
        return {}
    if _is_local(options):
        _use_the_cores(options, list(launch.beam_args), [item.path for item in items])
    log.info(
        "%s (%s), %s; writing to %s",
        count(len(items), "recording"),
        _describe_datasets(datasets, redaction.redactor),
        count(len(ignored), "other file"),
        spec.output,
    )
    if not is_remote(spec.output):  # object stores have no folders to create, nor locks
        try:
            os.makedirs(spec.output, exist_ok=True)
        except OSError as err:
            raise UsageError(
                f"--output {spec.output}: cannot create the output folder ({err.strerror or err})"
            ) from None
        problem = hold_run_lock(spec.output)  # before --overwrite could delete a running job's files
        if problem:
            raise UsageError(f"--output {problem}")
    try:
        return _write_output(spec, launch, options, config, items, ignored, key, redaction.scrub)
    finally:
        release_run_lock(spec.output)


def _pipeline_options(spec: JobSpec, launch: LaunchOptions) -> PipelineOptions:
    """Beam's options from ``launch.beam_args`` (and ``--s3_anonymous``, which workers apply too)."""
    beam_args = list(launch.beam_args)
    if launch.s3_anonymous:
        private = [
            f"{flag} {path}"
            for flag, path in (("--output", spec.output), ("--pseudonym_key_file", spec.pseudonym_key_file))
            if path.startswith("s3://")
        ]
        if private:
            raise UsageError(
                f"--s3_anonymous: unsigned requests cannot write or read a private key; "
                f"{' and '.join(private)} must be on another file system"
            )
        beam_args.append("--s3_anonymous")  # a pipeline option (pipelines.readers.s3_anonymous): workers apply it too
        install_s3_anonymous()
    options = PipelineOptions(beam_args)
    # Beam's filesystems read their credentials and endpoints (--s3_endpoint_url ...) from
    # the options; the launcher lists inputs and reads the key before any worker runs.
    FileSystems.set_options(options)
    return options


def _inputs(spec: JobSpec, config: PreprocessConfig, launch: LaunchOptions, options, redaction: RunRedaction):
    """The run's recordings, files passed over, data sets and key, once every path it needs is
    reachable and the artifact options hold; keys ``redaction`` with the inputs."""
    inputs, output, key_file = list(spec.inputs), spec.output, spec.pseudonym_key_file
    check_s3_credentials([*([] if launch.s3_anonymous else inputs), output, key_file], options)
    dry_run = options.get_all_options().get("dry_run")  # a dry run lists inputs but writes nothing
    if not dry_run:
        check_gcs_credentials([output, key_file])
    check_reachable([*inputs, key_file, *([] if dry_run else [output])], options)
    if config.stride_seconds > config.window_seconds:
        log.warning(
            "windows of %g s every %g s (--stride_seconds): %g s between windows are in none of them",
            config.window_seconds,
            config.stride_seconds,
            config.stride_seconds - config.window_seconds,
        )
    ensure_key(key_file, launch.create_key_file)
    key = load_key(key_file)
    if not is_remote(key_file):  # object stores have their own access control
        warn_if_shared(key_file)
    # An output folder (or key file) inside an input folder is the job's own, never an input.
    items, ignored, datasets = discover(inputs, dataset=launch.dataset, site=launch.site, exclude=[output, key_file])
    # Every input path a report or log line may name: as given, as found, sidecars, files passed over.
    named = [
        *inputs,
        *(p for item in items for p in related_paths(item)),
        *(p for g in ignored for p in (g.path, *named_in_reason(g.path))),
    ]
    redaction.keyed(key, named, shown_folders(inputs, spec.shown_folders))
    ignored = [Ignored(redaction.redactor.path(g.path), redaction.scrub(g.reason)) for g in ignored]
    if not items:
        raise ValueError(f"--input {' '.join(inputs)}: no recordings found (only {len(ignored)} sidecar/doc files)")
    _check_artifact_options(spec, {item.site for item in items})
    return items, ignored, datasets, key


def _dry_run_plan(spec, items, ignored, datasets, key: bytes, redactor: PathRedactor, background: str = "") -> str:
    """What a local ``--dry_run`` prints: recordings per site and data set, the inputs that cannot be
    read and the files not read, with why. Under --redact_paths sites show as pseudonyms and folders
    as tokens (a site may be a folder's name). ``background``: the task every recording is background of."""
    per_site = collections.Counter(
        (pseudonym(key, "site", item.site) if spec.redact_paths else item.site, item.dataset) for item in items
    )
    labeled = sum(bool(item.windows) or item.recording_label >= 0 for item in items)
    labels = f"all {background} background" if background else f"{labeled} with labels"
    lines = [
        f"eegfm-preprocess --dry_run: nothing read or written; {spec.output} would receive",
        f"  {count(len(items), 'recording')} ({labels}) from {_describe_datasets(datasets, redactor)}",
    ]
    lines += [f"    site {site!r:24} {dataset:8} {n}" for (site, dataset), n in sorted(per_site.items())]
    unread = [Ignored(redactor.path(item.path), item.read_problem) for item in items if item.read_problem]
    for entries, heading in ((unread, "that cannot be read, to quarantine"), (ignored, "not read as recordings")):
        if entries:
            lines.append(f"  {count(len(entries), 'file')} {heading}:")
            lines += [f"    {entry.path}: {entry.reason}" for entry in entries[:20]]
            if len(entries) > 20:
                lines.append(f"    ... and {len(entries) - 20} more")
    return "\n".join(lines)


def _write_output(spec: JobSpec, launch: LaunchOptions, options, config, items, ignored, key, scrub) -> dict:
    """Clears (or refuses) an earlier run's outputs, runs the pipeline, removes what a stopped run
    wrote; returns the manifest (empty on Dataflow)."""
    cleared = False  # no earlier run's outputs in spec.output: any found later are this run's
    if is_remote(spec.output) and options.get_all_options().get("dry_run"):
        log.info("--dry_run: %s is not checked for an earlier run's outputs", spec.output)
    else:
        try:
            # A local output is locked (``_run``): no other run uses what is in it.
            _clear_earlier_run(spec.output, launch.overwrite, locked=not is_remote(spec.output))
            cleared = True
        except (ValueError, *STORE_ERRORS) as err:
            raise UsageError(str(err)) from None
    # A run that stops early on this machine removes its temporary folders (a Dataflow job goes on
    # without its launcher: its folders stay in use).
    earlier_temporary = set(temporary_folders(spec.output)) if _is_local(options) else None
    if _is_local(options):
        clear_stale_progress()
    start = time.time()
    try:
        _run_pipeline(spec, launch, options, config, items, ignored, key, scrub)
    except BaseException:
        if earlier_temporary is not None:
            try:
                _remove_partial_run(spec.output, earlier_temporary, start, finished_are_ours=cleared)
            except Exception as err:  # noqa: BLE001 - the job's own error is the one to report
                log.warning("stopped before the end; could not remove what it wrote in %s: %s", spec.output, err)
        raise
    seconds = time.time() - start
    if options.view_as(StandardOptions).runner == "DataflowRunner":
        return {}
    with FileSystems.open(FileSystems.join(spec.output, layout.MANIFEST)) as fh:
        manifest = json.loads(fh.read())
    print(scrub(f"eegfm-preprocess: wrote {spec.output}\n" + summarize(manifest, seconds)))
    if launch.report:
        log.info("data-quality report: %s", scrub(write_report(spec.output)))
    return manifest


def _remove_partial_run(output: str, earlier_temporary: set[str], start: float, finished_are_ours: bool) -> None:
    """Removes a stopped run's temporary folders and, where ``finished_are_ours`` (the output held no
    earlier run's), its finished shards and artifact model, which would pass for a whole data set."""
    ours = sorted(set(temporary_folders(output)) - earlier_temporary)
    discard_folders(ours)
    if FileSystems.exists(FileSystems.join(output, layout.MANIFEST)):  # stopped after its last step
        log.warning("stopped after the manifest was written: the outputs in %s are complete", output)
        return
    if not finished_are_ours:
        log.warning(
            "stopped before the end: removed this run's %d temporary folder(s) in %s; its finished "
            "shards, if any, lie among an earlier run's there",
            len(ours),
            output,
        )
        return
    written = earlier_run_outputs(output)
    model = FileSystems.join(output, layout.ARTIFACT_MODEL)
    found = match_path(model)
    if found and found[0].last_updated_in_seconds >= start - 1:  # not a model it was given (--artifact_model)
        written.append(model)
    if written:
        delete(written)
    if not is_remote(output):  # the site folders it made (object stores have none)
        for folder in {os.path.dirname(path) for path in written} - {output}:
            with contextlib.suppress(OSError):  # not empty: not only ours
                os.rmdir(folder)
    log.warning(
        "stopped before the end: removed this run's %d temporary folder(s) and %d finished file(s) in %s; "
        "no manifest was written",
        len(ours),
        len(written),
        output,
    )


def _run_pipeline(spec: JobSpec, launch: LaunchOptions, options, config, items, ignored, key, scrub) -> None:
    local = _is_local(options)
    spec = dataclasses.replace(spec, run_token="" if is_remote(spec.output) else run_token(spec.output))

    def job() -> None:
        with beam.Pipeline(runner=local_runner(options), options=options) as p:
            build_pipeline(p, spec, config, items, ignored, key, progress, output_shown=scrub(spec.output))

    with contextlib.ExitStack() as stack:
        progress = None
        if local:  # Dataflow shows its own progress; its workers cannot reach this disk
            progress = stack.enter_context(progress_file())
            reporter = stack.enter_context(ProgressReporter(progress, len(items)))
        if local and options.view_as(DirectOptions).direct_running_mode in ("multi_processing", "multi_threading"):
            watchdog = StallWatchdog(launch.stall_timeout_s, finished=lambda: reporter.done)
            run_in_session(job, watchdog, spec.output, scrub)
        else:  # one process: a signal unwinds the job itself (a Dataflow job goes on without its launcher)
            job()


def earlier_run_outputs(output: str) -> list[str]:
    """An earlier run's manifest, quarantine list, report and shards in ``output`` (readers take every
    ``part-*-of-*`` file, so they would mix with a new run's)."""
    patterns = [layout.MANIFEST, layout.QUARANTINE, REPORT_NAME, f"*/{SITE_FILE_PREFIX}-*-of-*{FILE_NAME_SUFFIX}"]
    return sorted(m.path for pattern in patterns for m in match_below(output, pattern))


def _clear_earlier_run(output: str, overwrite: bool, locked: bool) -> None:
    """Refuse an earlier run's outputs (ValueError), or delete them with ``overwrite``; then remove the
    temporary folders runs killed before the end left (``leftovers``): a refused run touches nothing."""
    found = earlier_run_outputs(output)
    shards = sum(path.endswith(FILE_NAME_SUFFIX) for path in found)
    if found and not overwrite:
        names = ", ".join(
            name
            for name in (layout.MANIFEST, layout.QUARANTINE, REPORT_NAME)
            if FileSystems.join(output, name) in found
        )
        raise ValueError(
            f"--output {output}: holds an earlier run's outputs ({shards} TFRecord shard(s)"
            f"{', ' + names if names else ''}); this run's shards would mix with them. Pass --overwrite "
            "to delete them first, or choose another folder"
        )
    clear_temporary_folders(output, locked=locked, overwrite=overwrite)
    if not found:
        return
    delete(found)
    log.info(
        "--overwrite: deleted an earlier run's %d shard(s) and %d report file(s) in %s",
        shards,
        len(found) - shards,
        output,
    )


def _check_artifact_options(spec: JobSpec, sites: set[str]) -> None:
    """ConfigError, before any recording is read, where the artifact model's options would only fail
    (or do nothing) at the end of the run."""
    if not spec.use_artifact_model:
        return
    if spec.artifact_model:
        try:
            load_model(spec.artifact_model)
        except (ValueError, KeyError, *STORE_ERRORS) as err:
            raise ConfigError(
                f"--artifact_model {spec.artifact_model}: cannot load it as the artifact autoencoder "
                f"of an earlier run ({storage_error(err)})"
            ) from None
        return
    # Fewer windows than the autoencoder needs would only ever skip its fit.
    check_int("--ae_sample_size", spec.ae_sample_size, ArtifactAutoencoder().min_fit_windows)
    unknown = sorted(set(spec.ae_train_sites) - sites)
    if unknown:
        raise ConfigError(
            f"--ae_train_sites: {', '.join(unknown)}: no such site among the inputs; expected "
            f"some of {', '.join(sorted(sites))}"
        )


def _describe_datasets(datasets: dict[str, str], redactor: PathRedactor | None = None) -> str:
    """``folder=dataset`` for a few input folders, else counts per dataset (a log line, not a listing
    of thousands of patient folders); folders as tokens under --redact_paths."""
    if len(datasets) <= 8:
        shown = redactor.folder if redactor is not None and redactor.enabled else str
        return ", ".join(f"{shown(k)}={v}" for k, v in sorted(datasets.items()))
    kinds = collections.Counter(datasets.values())
    return ", ".join(f"{kind} in {n} folder{'s' if n > 1 else ''}" for kind, n in sorted(kinds.items()))


def _use_the_cores(options: PipelineOptions, beam_args: list[str], paths: list[str]) -> None:
    """Sets the local runner's mode and worker count from the machine and the input's size
    (``local_parallelism``) unless the command line names either."""
    named = {arg.split("=", 1)[0] for arg in beam_args}
    if named & {"--direct_running_mode", "--direct_num_workers"}:
        return
    chosen = choose_parallelism(input_bytes(paths), pool_threads().count)  # EEGFM_THREADS, else the cores
    direct = options.view_as(DirectOptions)
    direct.direct_running_mode, direct.direct_num_workers = chosen.running_mode, chosen.num_workers
    log.info(
        "local runner: %s, %s (%s); --direct_running_mode and --direct_num_workers choose otherwise",
        chosen.running_mode,
        count(chosen.num_workers, "worker"),
        chosen.reason,
    )


def _is_local(options: PipelineOptions) -> bool:
    return options.view_as(StandardOptions).runner in (None, "DirectRunner", "direct")


def local_runner(options: PipelineOptions):
    """Beam's FnApiRunner for the DirectRunner, set up as the DirectRunner sets it up (it honours
    ``--direct_running_mode`` and ``--direct_num_workers``), else None: the DirectRunner would first
    try Prism, which downloads a Go binary at run time and ignores ``--direct_running_mode``."""
    if not _is_local(options):
        return None
    # Beam's runner and SDK-worker stack (40 more modules): only for a local run, never on Dataflow
    from apache_beam.portability.api import beam_provision_api_pb2
    from apache_beam.runners.portability.fn_api_runner import fn_runner
    from apache_beam.runners.portability.portable_runner import JobServiceHandle

    encoded = JobServiceHandle.encode_pipeline_options(options.get_all_options())
    provision = fn_runner.ExtendedProvisionInfo(beam_provision_api_pb2.ProvisionInfo(pipeline_options=encoded))
    return fn_runner.FnApiRunner(provision_info=provision)
