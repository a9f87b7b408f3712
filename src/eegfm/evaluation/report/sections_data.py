"""The report's sections on what went in and how training went: the data (the pipeline
manifest), the learning curves (metrics.jsonl), the benchmark table and the explanations."""

from __future__ import annotations

import collections
import math
from pathlib import Path
from typing import Any

from eegfm.contract import layout
from eegfm.core.logs import get_logger
from eegfm.evaluation.report.discover import Found, read_json
from eegfm.evaluation.report.document import Picture, Section, Table, fmt, missing, png_of
from eegfm.training.curves import draw, panels_for, read_series
from eegfm.training.data import scan_windows

log = get_logger(__name__)
MAX_SCAN_BYTES = 2_000_000_000  # shards read to count subjects per site (about 10 s per GB here)
MAX_CURVES = 4  # runs whose learning curves are drawn; every run has its row


def _subjects_per_site(folder: Path, manifest: dict[str, Any]) -> dict[str, int]:
    """Distinct subjects per site from the windows' metadata; {} where the shards cannot be read
    or are too large to read for a count (the manifest counts subjects, not per site)."""
    size = sum(int(n) for n in manifest.get("shard_bytes", {}).values())
    if size > MAX_SCAN_BYTES:
        log.info("%s: %.1f GB of shards; subjects per site not counted", folder, size / 1e9)
        return {}
    try:
        windows = scan_windows(str(folder), verify_crc=False)
    except (OSError, ValueError) as err:
        log.warning("%s: subjects per site not counted (%s)", folder, err)
        return {}
    subjects: dict[str, set[str]] = collections.defaultdict(set)
    for window in windows:
        subjects[window["site_id"]].add(window["subject_id"])
    return {site: len(names) for site, names in subjects.items()}


def _site_rows(manifest: dict[str, Any], subjects: dict[str, int]) -> dict[str, dict[str, Any]]:
    """Per site: windows, processed recordings, hours of EEG read, subjects and windows by label."""
    counts = manifest["counts"]
    processed = [d for d in manifest.get("inputs", []) if d.get("status") == "processed"]
    sites: dict[str, dict[str, Any]] = {}
    for site in sorted(set(manifest.get("sites", [])) | set(counts.get("per_site", {}))):
        mine = [d for d in processed if d.get("site") == site]
        sites[site] = {
            "windows": int(counts.get("per_site", {}).get(site, 0)),
            "recordings": len(mine),
            "hours": round(sum(float(d.get("eeg_seconds", 0.0)) for d in mine) / 3600.0, 4),
            "subjects": subjects.get(site),
            "labels": counts.get("per_site_label", {}).get(site, {}),
        }
    return sites


def data_section(found: Found) -> Section:
    """Sites, subjects, hours and quarantined inputs by reason, from each pipeline manifest."""
    title = "The data"
    if not found.manifests:
        return missing("data", title, "No pipeline output (manifest.json beside site-*/ shards) below the run folders.")
    section = Section("data", title)
    for folder in found.manifests:
        manifest = read_json(folder / layout.MANIFEST, "counts")
        counts = manifest["counts"]
        sites = _site_rows(manifest, _subjects_per_site(folder, manifest))
        classes = manifest.get("classes", {})
        inputs = manifest.get("inputs", [])
        by_reason = collections.Counter(d.get("reason") or "?" for d in inputs if d.get("status") == "quarantined")
        ignored = collections.Counter(d.get("reason") or "?" for d in inputs if d.get("status") == "ignored")
        numbers = {
            "sites": sites,
            "n_sites": len(sites),
            "n_subjects": len(counts.get("per_subject", {})),
            "inputs": counts.get("inputs"),
            "processed": counts.get("processed"),
            "quarantined": counts.get("quarantined"),
            "quarantined_by_reason": dict(by_reason),
            "ignored_by_reason": dict(ignored),
            "windows": counts.get("windows"),
            "rejected_windows": counts.get("rejected_windows"),
            "input_eeg_hours": counts.get("input_eeg_hours"),
            "window_eeg_hours": counts.get("window_eeg_hours"),
        }
        section.numbers[folder.name] = numbers
        section.paragraphs.append(
            f"{folder.name}: {numbers['n_sites']} sites, {numbers['n_subjects']} subjects, "
            f"{numbers['processed']} of {numbers['inputs']} inputs processed ({fmt(numbers['input_eeg_hours'], 2)} h "
            f"of EEG), {numbers['windows']} windows written, {numbers['rejected_windows']} windows rejected; "
            f"{numbers['quarantined']} inputs quarantined, {sum(ignored.values())} ignored."
        )
        section.tables.append(
            Table(
                ["site", "subjects", "recordings", "hours", "windows", "windows by label"],
                [
                    [
                        site,
                        fmt(r["subjects"]),
                        fmt(r["recordings"]),
                        fmt(r["hours"], 2),
                        fmt(r["windows"]),
                        _labels(r, classes),
                    ]
                    for site, r in sites.items()
                ],
            )
        )
        reasons = [["quarantined", reason, str(n)] for reason, n in by_reason.most_common()]
        reasons += [["ignored", reason, str(n)] for reason, n in ignored.most_common()]
        if reasons:
            section.tables.append(Table(["status", "reason", "inputs"], reasons))
    return section


def _labels(row: dict[str, Any], classes: dict[str, list[str]]) -> str:
    """``task:index`` counts by class name where the manifest names the task's classes."""

    def name(label: str) -> str:
        task, _, index = label.rpartition(":")
        names = classes.get(task, [])
        return names[int(index)] if index.isdigit() and int(index) < len(names) else label

    return ", ".join(f"{name(label)}: {n}" for label, n in sorted(row["labels"].items())) or "none"


def _run_summary(run: Path, series: dict) -> dict[str, Any]:
    """Steps, the last training loss and the best held-out loss a run logged."""
    summary: dict[str, Any] = {"steps": int(max(int(s.max()) for s, _ in series.values())) if series else 0}
    for key in ("train/loss", "loss"):
        if key in series:
            summary["final_train_loss"] = float(series[key][1][-1])
            break
    if "val/loss" in series:
        steps, values = series["val/loss"]
        summary["best_val_loss"] = float(values.min())
        summary["best_val_step"] = int(steps[values.argmin()])
        summary["first_val_loss"] = float(values[0])
    for key in ("val/baseline_kl", "val/baseline_loss"):
        if key in series:
            summary["val_baseline"] = float(series[key][1][-1])
    return summary


def curves_section(found: Found) -> Section:
    """Each pretraining and fine-tuning run's metrics.jsonl drawn as training.curves draws it."""
    title = "Learning curves"
    runs = [r for r in [*found.pretrain_runs, *found.finetune_runs] if (r / layout.METRICS).is_file()]
    if not runs:
        return missing("curves", title, "No metrics.jsonl of a pretraining or fine-tuning run below the run folders.")
    section = Section("curves", title)
    rows = []
    for k, run in enumerate(runs):
        series = read_series(run / layout.METRICS)
        name = "/".join(run.parts[-2:])
        summary = _run_summary(run, series)
        section.numbers[name] = summary
        rows.append(
            [
                name,
                fmt(summary["steps"]),
                fmt(summary.get("final_train_loss")),
                fmt(summary.get("first_val_loss")),
                fmt(summary.get("best_val_loss")),
                fmt(summary.get("val_baseline")),
            ]
        )
        # the folds' curves repeat the model's, a benchmark's runs each other's: their table rows say how they ended
        if run.parent in found.loso or len(section.pictures) >= MAX_CURVES:
            continue
        figure = draw(series, panels_for(series), name)
        if figure is not None:
            section.pictures.append(Picture(f"curves_{k}.png", png_of(figure), f"learning curves of {name}"))
    section.tables.append(
        Table(["run", "steps", "last training loss", "first held-out loss", "best held-out loss", "class prior"], rows)
    )
    return section


def benchmark_section(found: Found) -> Section:
    """benchmark.json's ``method.split.metric`` means (± std over seeds) as one table per benchmark."""
    title = "Benchmark"
    if not found.benchmarks:
        return missing(
            "benchmark", title, "No benchmark.json (python -m eegfm.evaluation.comparison) below the run folders."
        )
    section = Section("benchmark", title)
    for folder in found.benchmarks:
        document = read_json(folder / "benchmark.json")
        flat = {k: v for k, v in document.items() if k != "run" and isinstance(v, dict) and "mean" in v}
        section.numbers[folder.name] = {k: {"mean": v["mean"], "std": v.get("std")} for k, v in flat.items()}
        columns = sorted({k.split(".", 1)[1] for k in flat})
        methods = sorted({k.split(".", 1)[0] for k in flat})
        rows = [[m] + [_mean_std(flat.get(f"{m}.{c}")) for c in columns] for m in methods]
        section.paragraphs.append(f"{folder.name}: mean ± standard deviation over seeds (benchmark.json).")
        section.tables.append(Table(["method", *columns], rows))
    return section


def _mean_std(summary: dict[str, Any] | None) -> str:
    if not summary or summary.get("mean") is None or not math.isfinite(summary["mean"]):
        return "—"
    return f"{summary['mean']:.3f} ± {summary.get('std') or 0.0:.3f}"


def explanations_section(found: Found) -> Section:
    """Each explained window's predicted class, explanation_reliable and the reasons why."""
    title = "Explanations and their specificity"
    if not found.explanations:
        return missing(
            "explanations",
            title,
            "No explanations/*.json (python -m eegfm.serving.predict ... --explain) below the run folders.",
        )
    section = Section("explanations", title)
    rows, windows = [], []
    for path in found.explanations:
        document = read_json(path, "explanation_reliable", "predicted")
        why = document.get("why") or []
        why_text = "; ".join(why) if isinstance(why, list) else str(why)
        windows.append(
            {
                "file": path.name,
                "predicted": document["predicted"],
                "explanation_reliable": bool(document["explanation_reliable"]),
                "why": why,
            }
        )
        rows.append(
            [path.name, str(document["predicted"]), "yes" if document["explanation_reliable"] else "no", why_text]
        )
    reliable = sum(w["explanation_reliable"] for w in windows)
    section.numbers = {"windows": windows, "n_windows": len(windows), "n_reliable": reliable}
    section.paragraphs.append(
        f"{reliable} of {len(windows)} explained windows passed the class-specificity and model-randomisation "
        "checks (explanation_reliable); the others' maps should not be read as the model's reasons."
    )
    section.tables.append(Table(["window", "predicted", "reliable", "why"], rows))
    return section
