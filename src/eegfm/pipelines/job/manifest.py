"""The job's reports: ``manifest.json`` (config, channels, counts, every input with its outcome,
shards), ``quarantine.jsonl`` (a line per rejected input or window), and a local run's summary."""

from __future__ import annotations

import collections
import json
import math
import os

from apache_beam.io.filesystems import FileSystems

from eegfm.contract import layout, schema
from eegfm.core.stores import fix_s3_empty_uploads, is_remote, remove_folder
from eegfm.core.tasks import TASK_CLASSES
from eegfm.pipelines.datasets import Ignored
from eegfm.pipelines.job.process_io import RECORD_QUALITY_NAMES, Outcome, PreprocessConfig
from eegfm.pipelines.signal.feature_names import FEATURE_NAMES


def manifest_header(
    config: PreprocessConfig, sites: tuple[str, ...], output_shown: str, redact_paths: bool, ignored: list[Ignored]
) -> dict:
    """What the manifest says before any recording is read."""
    return {
        "pipeline_version": schema.PIPELINE_VERSION,
        "config": config.to_dict(),
        "config_hash": config.config_hash(),
        "channels": list(schema.CHANNELS),
        "sfreq": schema.SFREQ,
        "quality_names": list(RECORD_QUALITY_NAMES),
        "feature_names": list(FEATURE_NAMES) if config.features else [],
        "classes": {task: list(classes) for task, classes in TASK_CLASSES.items()},
        "sites": list(sites),
        "output": output_shown,
        "redact_paths": redact_paths,
        "ignored": [{"source": g.path, "status": "ignored", "reason": g.reason} for g in ignored],
    }


def window_counts(counted: tuple[str, str, str, int, str]) -> list[tuple[str, float]]:
    site, subject, label, n_times, corpus_split = counted
    return [
        ("site/" + site, 1),
        ("subject/" + subject, 1),
        ("label/" + label, 1),
        (f"site_label/{site}/{label}", 1),
        ("total", 1),
        ("seconds", n_times / schema.SFREQ),
        (f"samples/{n_times}", 1),
        *([("split/" + corpus_split, 1)] if corpus_split else []),
    ]


def quarantine_line(event) -> str:
    """The quarantine.jsonl line of a quarantined input (`Outcome`), an `Ignored` file or a `RejectedWindow`."""
    if isinstance(event, Outcome):
        line = {"path": event.source, "stage": event.stage, "reason": event.reason, "kind": "input"}
    elif isinstance(event, Ignored):
        line = {"path": event.path, "stage": "discover", "reason": event.reason, "kind": "ignored"}
    else:
        start = float(event.window_start_s)
        line = {"path": event.source, "stage": event.stage, "reason": "; ".join(event.reasons), "kind": "window"}
        line.update(window_start_s=round(start, 6) if math.isfinite(start) else None, site=event.site)
    return json.dumps(line, sort_keys=True)


def write_manifest(_, path, header, outcomes, counts, shards, model_used, quarantine_lines, spill_dir):
    """Write quarantine.jsonl and the manifest at ``path``; remove the spill folder (read back once
    the shards exist). ``shards``: the sink's ``(path, records, bytes)`` of every shard."""
    # Any worker may run this, maybe one that imported no sink: an empty quarantine.jsonl on S3
    # needs the uploader fix there too.
    fix_s3_empty_uploads()
    remove_folder(spill_dir)
    with FileSystems.create(FileSystems.join(os.path.dirname(path), layout.QUARANTINE)) as fh:
        fh.write("".join(line + "\n" for line in sorted(quarantine_lines)).encode())
    inputs = sorted((o.as_dict() for o in outcomes), key=lambda d: d["source"])
    manifest = dict(header)
    manifest["inputs"] = header["ignored"] + [
        {k: v for k, v in d.items() if k != "interpolated"} | {"interpolated": list(d["interpolated"])} for d in inputs
    ]
    manifest.pop("ignored")
    manifest["counts"] = _counts(inputs, counts, len(manifest["inputs"]), len(header["ignored"]))
    # Local shards relative to the output folder; remote ones under it as header["output"] shows
    # it (its names redacted under --redact_paths).
    output, shown = os.path.dirname(path).rstrip("/"), header["output"].rstrip("/")
    named = {os.path.relpath(s[0], output) if not is_remote(s[0]) else shown + s[0][len(output) :]: s for s in shards}
    manifest["shards"] = sorted(named)
    # Beside the list (which older readers take as it is): what each shard holds, so a reader
    # refuses a truncated, emptied or missing one instead of training on the rest.
    manifest["shard_records"] = {name: int(named[name][1]) for name in manifest["shards"]}
    manifest["shard_bytes"] = {name: int(named[name][2]) for name in manifest["shards"]}
    manifest["artifact_model"] = next((m for m in model_used if m), None)
    with FileSystems.create(path) as fh:
        fh.write(json.dumps(manifest, indent=2, sort_keys=True).encode())
    return path


def _counts(inputs: list[dict], counts: dict, n_inputs: int, n_ignored: int) -> dict:
    """The manifest's ``counts`` of the inputs' outcomes and of the windows written (``counts``: the
    sums of ``window_counts``)."""

    def named(prefix: str) -> dict[str, int]:
        return {k[len(prefix) :]: int(v) for k, v in sorted(counts.items()) if k.startswith(prefix)}

    per_site_label: dict[str, dict[str, int]] = {}
    for key, n in named("site_label/").items():
        site, label = key.split("/", 1)
        per_site_label.setdefault(site, {})[label] = n

    return {
        "inputs": n_inputs,
        "processed": sum(d["status"] == "processed" for d in inputs),
        "quarantined": sum(d["status"] == "quarantined" for d in inputs),
        "ignored": n_ignored,
        "windows": int(counts.get("total", 0)),
        "rejected_windows": sum(int(d["rejected_windows"]) for d in inputs),
        "repaired_windows": sum(int(d.get("repaired_windows", 0)) for d in inputs),
        # processed recordings whose channels a cap's layout (or the file's digitized positions) placed
        "caps": dict(
            sorted(collections.Counter(d["cap"] for d in inputs if d.get("cap") and d["status"] == "processed").items())
        ),
        **_ica_totals(inputs),
        "window_eeg_hours": round(float(counts.get("seconds", 0.0)) / 3600.0, 6),
        "input_eeg_hours": round(sum(float(d["eeg_seconds"]) for d in inputs) / 3600.0, 6),
        "per_site": named("site/"),
        "per_subject": named("subject/"),
        "per_label": named("label/"),
        # each site's windows by label: a class balance that differs between sites shows here
        "per_site_label": per_site_label,
        # windows by the corpus's own split (the TUH corpora's train, dev, eval); pretraining
        # reads it to say how many windows its exclude_corpus_splits leaves out
        "per_corpus_split": named("split/"),
        # windows by length in samples at 256 Hz: sliding windows, HMS's 50 s, labels.csv events ...
        "per_length_samples": named("samples/"),
    }


def _ica_totals(inputs: list[dict]) -> dict:
    """``{"ica_removed": {"eog", "emg", "recordings"}}`` over the recordings --ica cleaned; {} without."""
    cleaned = [d["ica"] for d in inputs if d.get("ica")]
    if not cleaned:
        return {}
    removed = {kind: sum(c[f"{kind}_removed"] for c in cleaned) for kind in ("eog", "emg")}
    return {"ica_removed": {**removed, "recordings": len(cleaned)}}


def count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def summarize(manifest: dict, seconds: float) -> str:
    """The table a local run prints at its end; rows without anything to say are left out."""
    c = manifest["counts"]
    rate = c["input_eeg_hours"] / seconds if seconds > 0 else float("nan")
    ica = c.get("ica_removed")
    overlap = ""
    if c["window_eeg_hours"] > c["input_eeg_hours"]:
        overlap = " (windows overlap: stride < window, or overlapping labeled sub-windows)"
    rows = [
        ("input files", c["inputs"]),
        ("processed", c["processed"]),
        # Workers' log lines do not reach this terminal in multi_processing mode; the file has every reason.
        ("quarantined", f"{c['quarantined']} (reasons in quarantine.jsonl)" if c["quarantined"] else 0),
        ("ignored (sidecars, parts, docs)", c["ignored"]),
        ("windows written", c["windows"]),
        ("windows rejected", c["rejected_windows"]),
        c.get("repaired_windows")
        and ("windows repaired", f"{c['repaired_windows']} (kept with a few bad channels interpolated)"),
        c.get("caps") and ("placed by cap layout", ", ".join(f"{cap} {n}" for cap, n in c["caps"].items())),
        ("EEG hours read", f"{c['input_eeg_hours']:.3f}"),
        ("EEG hours in windows", f"{c['window_eeg_hours']:.3f}{overlap}"),
        ("sites", len(c["per_site"])),
        ("TFRecord files", len(manifest.get("shards", ()))),
        ("artifact model", manifest.get("artifact_model") or "none (rules only)"),
        ica
        and (
            "ICA components removed",
            f"{ica['eog']} eye, {ica['emg']} muscle in " + count(ica["recordings"], "recording"),
        ),
        ("wall time", f"{seconds:.1f} s"),
        ("throughput", f"{rate:.3f} EEG-hours/s"),
    ]
    rows = [row for row in rows if row]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"  {k.ljust(width)}  {v}" for k, v in rows)
