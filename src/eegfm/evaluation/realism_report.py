"""The simulator's realism report: the simulated background against real corpora, each file run
through the pipeline (``eegfm-realism``, the command of :mod:`eegfm.evaluation.realism`).

The report judges the simulated background by the statistics of the pipeline's own preprocessed
windows of real corpora, so it needs both the simulator and the pipeline and sits above both.
Each file of each corpus runs through the pipeline's per-recording path
(:func:`~eegfm.pipelines.job.process.process_recording`: read, harmonize to the 19 canonical channels
keeping the recording's reference, resample to 256 Hz, notch and band-pass, 10 s windows, quality
rules); the specs, statistics, summaries and figures are :mod:`eegfm.simulate.realism`'s and
:mod:`eegfm.simulate.realism_output`'s.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from eegfm.contract.schema import SFREQ
from eegfm.pipelines.datasets import SourceItem
from eegfm.pipelines.job.process import process_recording
from eegfm.pipelines.job.process_io import PreprocessConfig, Window
from eegfm.simulate.realism import (
    CorpusSpec,
    Group,
    SpecError,
    compare,
    interval_state,
    simulate_background_corpus,
    summarize,
)
from eegfm.simulate.realism_output import build_report, write_figure, write_markdown


def file_windows(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The pipeline's accepted windows of one file: (n, 19, T) µV, (n, 19) mask, (n,) starts in
    seconds. Rejected windows are left out; a quarantined file gives none."""
    config = PreprocessConfig(spectrogram=False)
    item = SourceItem(path=str(path), dataset="edf", site="realism")
    windows, masks, starts = [], [], []
    for event in process_recording(item, b"realism-report-key-0123456789abc", config, "realism"):
        if isinstance(event, Window):
            windows.append(np.asarray(event.record.eeg, dtype=np.float32))
            masks.append(np.asarray(event.record.channel_mask) > 0)
            starts.append(float(event.record.window_start_s))
    if not windows:
        return np.zeros((0, 19, 0), np.float32), np.zeros((0, 19), bool), np.zeros(0)
    return np.stack(windows), np.stack(masks), np.array(starts)


def real_groups(spec: CorpusSpec, progress: Callable[[Iterable], Iterable] = iter) -> tuple[list[Group], int]:
    """One group per file of ``spec`` that gave windows, and the number of files tried."""
    files = spec.files()
    groups = []
    for path in progress(files):
        windows, mask, _ = file_windows(path)
        if len(windows):
            groups.append(Group(spec.state, windows, mask))
    return groups, len(files)


def simulated_groups(root: Path, progress: Callable[[Iterable], Iterable] = iter) -> tuple[list[Group], int]:
    """Groups of a simulated corpus's background windows: per recording and state, the windows
    wholly inside an ``Other`` episode and one ``states`` interval of its truth."""
    truth_path = root / "truth.jsonl"
    if not truth_path.is_file():
        raise SpecError(f"{root} holds no truth.jsonl (is it a simulated corpus?)")
    records = [json.loads(line) for line in truth_path.read_text().splitlines() if line.strip()]
    records = [r for r in records if r.get("edf_path")]
    if not records:
        raise SpecError(f"{root} holds no EDF recordings (simulate it with --format edf or both)")
    groups = []
    for record in progress(records):
        windows, mask, starts = file_windows(root / "edf" / record["edf_path"])
        span = windows.shape[-1] / SFREQ
        others = [(e["start_s"], e["end_s"]) for e in record["episodes"] if e["class"] == "Other"]
        by_state: dict[str, list[int]] = {}
        for i, start in enumerate(starts):
            if not any(a <= start and start + span <= b for a, b in others):
                continue
            state = interval_state(record.get("states", []), start, start + span) or "unknown"
            by_state.setdefault(state, []).append(i)
        for state, rows in sorted(by_state.items()):
            groups.append(Group(state, windows[rows], mask[rows]))
    return groups, len(records)


def run_report(
    specs: list[CorpusSpec],
    output: Path,
    *,
    simulated: Path | None = None,
    sim_options: dict | None = None,
    progress: Callable[[Iterable, str], Iterable] = lambda it, _desc: it,
) -> dict:
    """Compute, write ``realism.json``, ``realism.md`` and ``realism.png`` under ``output`` and
    return the report; simulates a small background corpus when ``simulated`` is None."""
    for spec in specs:
        spec.files()  # every spec is checked before the slow work starts
    real = {}
    for spec in specs:
        groups, n_files = real_groups(spec, lambda it, s=spec: progress(it, s.name))
        if not groups:
            raise SpecError(f"corpus {spec.name!r}: none of its {n_files} files gave a usable window")
        real[spec.name] = {**summarize(groups), "kind": "real", "state": spec.state, "files": n_files}
    with tempfile.TemporaryDirectory(prefix="realism-sim-") as tmp:
        if simulated is None:
            simulated = simulate_background_corpus(Path(tmp) / "corpus", **(sim_options or {}))
        groups, n_files = simulated_groups(simulated, lambda it: progress(it, "simulated"))
    if not groups:
        raise SpecError("the simulated corpus gave no background window (no Other episode?)")
    sim = {**summarize(groups), "kind": "simulated", "state": "from truth states", "files": n_files}
    report = build_report(real, sim, compare(real, sim))
    output.mkdir(parents=True, exist_ok=True)
    (output / "realism.json").write_text(json.dumps(report, indent=2, sort_keys=False) + "\n")
    write_markdown(report, output / "realism.md")
    write_figure(real, sim, output / "realism.png")
    return report
