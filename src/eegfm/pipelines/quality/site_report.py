"""A run's data quality across sites as one picture: ``python -m eegfm.pipelines.quality.site_report OUT`` writes
``OUT/report.png`` from ``manifest.json`` and a sample of the windows, one row per site in each panel:
recordings processed and quarantined (by stage); windows written, repaired and rejected (by rule);
how often each 10-20 channel was interpolated; the windows' ``artifact_score``; and, where the
manifest counts them, the windows' labels. Only de-identified data is drawn (pseudonyms, counts).
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from eegfm.contract import layout
from eegfm.contract.channels import CANONICAL_CHANNELS
from eegfm.contract.schema import decode_features
from eegfm.contract.tfrecord import read_records
from eegfm.core.palette import class_colours
from eegfm.core.stores import filesystems, is_remote, join_path, open_binary
from eegfm.core.threads import fair_threads

REPORT_NAME = "report.png"


def site_summary(manifest: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Per site: recordings processed, quarantined by stage, EEG hours, windows written / repaired /
    rejected, rejection rules, per channel the recordings that interpolated it, and ``labels``
    where the manifest counts them. Inputs without a site (older manifests) count under ``"(no site)"``."""
    sites: dict[str, dict[str, Any]] = {}
    for row in manifest.get("inputs", ()):
        if row.get("status") not in ("processed", "quarantined"):
            continue
        name = row.get("site") or "(no site)"
        if name not in sites:
            counters = {"quarantined": Counter(), "rules": Counter(), "interpolated": Counter()}
            sites[name] = {"processed": 0, "eeg_hours": 0.0, "windows": 0, "repaired": 0, "rejected": 0, **counters}
        site = sites[name]
        # A recording quarantined because every window was rejected counts its rejections too
        site["rejected"] += int(row.get("rejected_windows", 0))
        site["rules"].update({str(k): int(v) for k, v in (row.get("rejection_rules") or {}).items()})
        if row["status"] == "quarantined":
            site["quarantined"][row.get("stage") or "unknown"] += 1
            continue
        site["processed"] += 1
        site["eeg_hours"] += float(row.get("eeg_seconds", 0.0)) / 3600.0
        site["windows"] += int(row.get("windows", 0))
        site["repaired"] += int(row.get("repaired_windows", 0))
        site["interpolated"].update(row.get("interpolated") or ())
    # Windows by label ('task:class', 'unlabeled:-1'), where the manifest counts them per site
    for name, labels in (manifest.get("counts", {}).get("per_site_label") or {}).items():
        if name in sites:
            sites[name]["labels"] = Counter({str(k): int(v) for k, v in labels.items()})
    return dict(sorted(sites.items()))


def artifact_scores(output: str, manifest: Mapping[str, Any], max_windows: int) -> dict[str, np.ndarray]:
    """The ``artifact_score`` of the first ``max_windows`` windows of each site's shards."""
    scores: dict[str, list[float]] = {}
    for shard in manifest.get("shards", ()):
        # <site>/<file> under the folder given: the manifest names remote shards by the URL the job
        # wrote to, which --redact_paths hides and a copied folder no longer has
        site, name = shard.replace("\\", "/").split("/")[-2:]
        path = join_path(output, site, name)
        found = scores.setdefault(site, [])
        if len(found) >= max_windows:
            continue
        with open_binary(path) as fileobj:
            for record in read_records(fileobj):
                found.append(float(decode_features(record)["artifact_score"][1][0]))
                if len(found) >= max_windows:
                    break
    return {site: np.array(values) for site, values in sorted(scores.items())}


def _label_name(label: str, classes: Mapping[str, Sequence[str]], tasks: int) -> str:
    """'hms6:3' as 'LRDA' (with its task where the run has several), 'unlabeled:-1' as 'unlabeled'."""
    task, _, code = label.rpartition(":")
    names = classes.get(task, ())
    if task == "unlabeled" or not code.lstrip("-").isdigit() or not 0 <= int(code) < len(names):
        return "unlabeled" if task == "unlabeled" else label
    return f"{task}: {names[int(code)]}" if tasks > 1 else names[int(code)]


# colours of the quarantining stages, taken in turn (green is the processed recordings')
_STAGE_COLOURS = ("tab:orange", "tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:gray")


def _stacked_bars(axes, rows: np.ndarray, bars, notes: list[str], fontsize: int, title: str) -> None:
    """``bars`` ((values, colour, label) ...) stacked left to right, each row's note beside its bar."""
    left = np.zeros(len(rows))
    for values, colour, label in bars:
        axes.barh(rows, values, left=left, color=colour, label=label)
        left = left + values
    for row, note in zip(rows, notes):
        if note:
            axes.annotate(f" {note}", (left[row], row), va="center", fontsize=fontsize)
    axes.set_title(title, fontsize=9)
    axes.set_xlim(0, 1.25 * max(left.max(), 1))  # room for the notes beside the longest bar
    axes.legend(fontsize=7, loc="best")


def _draw_recordings(axes, sites: Mapping[str, Mapping[str, Any]], names: list[str], rows: np.ndarray) -> None:
    """Recordings processed and quarantined (stacked by stage), each site's EEG hours beside its bar."""
    stages = sorted({stage for s in sites.values() for stage in s["quarantined"]})
    bars = [(np.array([sites[n]["processed"] for n in names], dtype=float), "tab:green", "processed")]
    for k, stage in enumerate(stages):
        counts = np.array([sites[n]["quarantined"].get(stage, 0) for n in names], dtype=float)
        bars.append((counts, _STAGE_COLOURS[k % len(_STAGE_COLOURS)], f"quarantined at {stage}"))
    hours = [f"{sites[n]['eeg_hours']:.2f} h" for n in names]
    _stacked_bars(axes, rows, bars, hours, 7, "recordings (EEG hours processed)")


def _draw_windows(axes, sites: Mapping[str, Mapping[str, Any]], names: list[str], rows: np.ndarray) -> None:
    """Windows written, repaired and rejected, each site's three commonest rejection rules beside its bar."""
    written, repaired, rejected = (
        np.array([sites[n][k] for n in names], dtype=float) for k in ("windows", "repaired", "rejected")
    )
    bars = [
        (written - repaired, "tab:blue", "written"),
        (repaired, "tab:cyan", "written, repaired"),
        (rejected, "tab:red", "rejected"),
    ]
    rules = [", ".join(f"{rule} {n}" for rule, n in sites[name]["rules"].most_common(3)) for name in names]
    _stacked_bars(axes, rows, bars, rules, 6, "windows (rejection rules)")


def _draw_channels(figure, axes, sites: Mapping[str, Mapping[str, Any]], names: list[str]) -> None:
    """Per site and 10-20 channel, the share of its processed recordings with the channel interpolated."""
    processed = np.array([max(sites[n]["processed"], 1) for n in names], dtype=float)
    shares = (
        np.array([[sites[n]["interpolated"].get(ch, 0) for ch in CANONICAL_CHANNELS] for n in names], dtype=float)
        / processed[:, None]
    )
    extent = (-0.5, len(CANONICAL_CHANNELS) - 0.5, len(names) - 0.5, -0.5)
    image = axes.imshow(shares, aspect="auto", cmap="Oranges", vmin=0.0, vmax=1.0, extent=extent)
    axes.set_xticks(range(len(CANONICAL_CHANNELS)), CANONICAL_CHANNELS, rotation=90, fontsize=7)
    axes.set_title("share of recordings with the channel interpolated", fontsize=9)
    figure.colorbar(image, ax=axes, fraction=0.04, pad=0.02)


def _draw_quality(axes, scores: Mapping[str, np.ndarray], names: list[str], rows: np.ndarray) -> None:
    """A box plot of each site's sampled artifact scores (none for a site without any)."""
    data = [scores.get(n, np.array([])) for n in names]
    shown = [k for k, values in enumerate(data) if len(values)]
    if shown:
        boxes = [data[k] for k in shown]
        axes.boxplot(boxes, positions=rows[shown], orientation="horizontal", widths=0.6, flierprops={"markersize": 2})
    axes.set_xlim(0.0, 1.0)
    axes.set_title("windows' artifact_score (0 clean, 1 artifact)", fontsize=9)


def draw_report(
    sites: Mapping[str, Mapping[str, Any]],
    scores: Mapping[str, np.ndarray],
    title: str = "",
    classes: Mapping[str, Sequence[str]] | None = None,
):
    """The panels as a matplotlib Figure (see the module doc); the fifth, each site's windows by
    label (``classes``: the manifest's class names per task), where the manifest counts them."""
    # matplotlib: heavy, only where a report is drawn
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = list(sites)
    rows = np.arange(len(names))
    with_labels = any(sites[n].get("labels") for n in names)
    figure = Figure(figsize=(18.5 if with_labels else 15, 2.2 + 0.45 * max(len(names), 3)))
    FigureCanvasAgg(figure)
    n_panels = 5 if with_labels else 4
    panels = figure.subplots(1, n_panels, gridspec_kw={"width_ratios": [1, 1, 1.6, 1, 1.2][:n_panels]})
    recordings, windows, channels, quality = panels[:4]
    _draw_recordings(recordings, sites, names, rows)
    _draw_windows(windows, sites, names, rows)
    _draw_channels(figure, channels, sites, names)
    _draw_quality(quality, scores, names, rows)
    if with_labels:
        _draw_labels(panels[4], [sites[n].get("labels", Counter()) for n in names], rows, classes or {})
    for axes in panels:  # one row per site, first at the top, in every panel
        axes.set_ylim(len(names) - 0.5, -0.5)
        axes.set_yticks(rows, names if axes is recordings else [], fontsize=8)
        axes.grid(axis="x", alpha=0.3)
    if title:
        figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    return figure


def _label_order(label: str) -> tuple[bool, str, int]:
    """Unlabeled windows last; each task's classes in their order."""
    task, _, code = label.rpartition(":")
    return task == "unlabeled", task, int(code) if code.lstrip("-").isdigit() else 0


def _draw_labels(axes, labels: Sequence[Counter], rows: np.ndarray, classes: Mapping[str, Sequence[str]]) -> None:
    """Each site's windows by label as shares of its windows (stacked): class balance by site."""
    every = sorted({label for counts in labels for label in counts}, key=_label_order)
    tasks = len({label.rpartition(":")[0] for label in every} - {"unlabeled"})
    names = [_label_name(label, classes, tasks) for label in every]
    # a class by its palette colour whatever its task (the class is the name after "task: "), unlabeled grey
    kinds = [name.rpartition(": ")[2] if tasks > 1 else name for name in names]
    colours = {"unlabeled": "0.8", **class_colours([k for k in kinds if k != "unlabeled"])}
    totals = np.array([max(sum(counts.values()), 1) for counts in labels], dtype=float)
    left = np.zeros(len(labels))
    for label, name, kind in zip(every, names, kinds, strict=True):
        shares = np.array([counts.get(label, 0) for counts in labels]) / totals
        axes.barh(rows, shares, left=left, color=colours[kind], label=name)
        left += shares
    axes.set_xlim(0.0, 1.0)
    axes.set_title("windows by label (share of the site's)", fontsize=9)
    axes.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0))


def write_report(output: str, target: str | None = None, max_windows: int = 2000) -> str:
    """Draw the run in ``output`` (its manifest and shards) as a PNG at ``target`` (default
    ``output/report.png``, on an object store too); returns where it went."""
    try:
        with open_binary(join_path(output, layout.MANIFEST)) as fileobj:
            manifest = json.loads(fileobj.read())
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{join_path(output, 'manifest.json')}: no manifest; expected the --output "
            "folder of a finished pipelines.job.preprocess run"
        ) from None
    sites = site_summary(manifest)
    if not sites:
        raise ValueError(f"{output}: its manifest lists no processed or quarantined recording; nothing to draw")
    counts = manifest.get("counts", {})
    title = (
        f"{counts.get('processed', 0)} recordings processed, {counts.get('quarantined', 0)} quarantined "
        f"({counts.get('ignored', 0)} other files listed); {counts.get('windows', 0)} windows, "
        f"{counts.get('window_eeg_hours', 0):.2f} EEG-hours"
    )
    figure = draw_report(sites, artifact_scores(output, manifest, max_windows), title, manifest.get("classes", {}))
    picture = io.BytesIO()
    figure.savefig(picture, format="png", dpi=110)
    target = target or join_path(output, REPORT_NAME)
    with filesystems(target).create(target) if is_remote(target) else open(target, "wb") as fileobj:
        fileobj.write(picture.getvalue())
    return target


def main(argv: list[str] | None = None) -> int:
    fair_threads()  # before any work: core/threads.py
    parser = argparse.ArgumentParser(
        prog="eegfm-data-report",
        description="Draw a pipelines.job.preprocess run's data quality across sites as one PNG: recordings "
        "processed and quarantined (by stage), windows written, repaired and rejected (by rule), how "
        "often each 10-20 channel was interpolated, the windows' artifact_score and their labels, one "
        "row per site.",
    )
    parser.add_argument("output", metavar="OUT", help="the --output folder of a finished run (local, gs:// or s3://)")
    parser.add_argument(
        "--report", default=None, help="where to write the PNG (default OUT/report.png; local, gs:// or s3://)"
    )
    parser.add_argument(
        "--max_windows",
        type=int,
        default=2000,
        help="windows per site whose artifact_score is drawn: the first ones of its shards "
        "(more: a fuller picture, a longer read)",
    )
    args = parser.parse_args(argv)
    if args.max_windows < 1:
        parser.error(f"--max_windows: expected an integer >= 1; got {args.max_windows}")
    try:
        print(write_report(args.output, args.report, args.max_windows))
    except (OSError, ValueError) as err:
        print(f"report: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
