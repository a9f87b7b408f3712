"""The survey behind ``eegfm-quality-survey`` (``survey``): what each quality rule flags on whole corpora.

Every recording goes through the pipeline's own per-recording path (``process_recording``, the
default :class:`~pipelines.job.process_io.PreprocessConfig`); for each corpus the table gives the windows
kept and dropped, the share of kept windows on which each rule and sign fires, the share whose
rule score reaches 0.5 (an artifact window, as the recommendation table reads it) and, with
an artifact model, the share the autoencoder flags, each recording scored against itself
(:meth:`~pipelines.quality.artifact_autoencoder.ArtifactAutoencoder.score_recording`). Corpora are named by the
user; no path, file name or channel label reaches the output.
"""

from __future__ import annotations

import glob
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from eegfm.pipelines.datasets import discover
from eegfm.pipelines.job.process import process_recording
from eegfm.pipelines.job.process_io import PreprocessConfig, RejectedWindow, Window
from eegfm.pipelines.quality import QUALITY_NAMES, RULES
from eegfm.pipelines.quality.artifact_autoencoder import ArtifactAutoencoder
from eegfm.pipelines.quality.rules import SIGNS, default_config, window_rules

KEY = b"quality-survey: pseudonyms are never shown"
FLAGGED = 0.5


def _windows_of(items, config: PreprocessConfig, name: str):
    """(kept windows' quality vectors and artifact scores, per recording its AE features, rejections)."""
    kept, features, rejected = [], [], Counter()
    for item in tqdm(items, desc=name, unit="rec", disable=None):
        own = []
        for event in process_recording(item, KEY, config, config.config_hash()):
            if isinstance(event, Window):
                kept.append((event.record.quality[: len(QUALITY_NAMES)], event.record.artifact_score))
                own.append(event.ae_features)
            elif isinstance(event, RejectedWindow):
                rejected.update({reason.split(":", 1)[0] for reason in event.reasons})
        if own:
            features.append(np.stack(own))
    return kept, features, rejected


def survey_corpus(items, config: PreprocessConfig, name: str, model: ArtifactAutoencoder | None) -> dict[str, Any]:
    """Counts and per-rule shares of one corpus's windows (see the module docstring)."""
    kept, features, rejected = _windows_of(items, config, name)
    fired: Counter = Counter()
    for vector, _ in kept:
        # The flags as the report made them; extents are not stored, so a rule counts where it fired.
        fired.update(window_rules(dict(zip(QUALITY_NAMES, map(float, vector))), config.quality)[1])
    n = len(kept)
    out: dict[str, Any] = {"recordings": len(items), "windows": n, "dropped": dict(rejected)}
    if n:
        out["fires"] = {rule: fired[rule] / n for rule in (*RULES, *SIGNS)}
        out["artifact_rules"] = float(np.mean([score >= FLAGGED for _, score in kept]))
    if model is not None and features:
        scores = np.concatenate([model.score_recording(f) for f in features])
        out["artifact_autoencoder"] = float(np.mean(scores >= FLAGGED))
        out["novelty_median"] = float(np.median([model.novelty(f) for f in features]))
    return out


def markdown(report: dict[str, dict]) -> str:
    """Rules as rows, corpora as columns: the share of kept windows each rule fires on."""
    names = list(report)
    rows = ["| | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]

    def row(label, cell):
        rows.append(f"| {label} | " + " | ".join(cell(report[n]) for n in names) + " |")

    row("recordings / windows kept", lambda r: f"{r['recordings']} / {r['windows']}")
    row("windows dropped (by rule)", lambda r: ", ".join(f"{k} {v}" for k, v in r["dropped"].items()) or "0")
    for rule in (*RULES, *SIGNS):
        row(f"`{rule}` fires", lambda r, rule=rule: f"{r['fires'][rule]:.1%}" if "fires" in r else "-")
    row("**artifact: rule score >= 0.5**", lambda r: f"{r['artifact_rules']:.1%}" if "fires" in r else "-")
    if any("artifact_autoencoder" in r for r in report.values()):
        row("**artifact: autoencoder >= 0.5**", lambda r: f"{r.get('artifact_autoencoder', float('nan')):.1%}")
        row("autoencoder novelty (median z)", lambda r: f"{r.get('novelty_median', float('nan')):.1f}")
    return "\n".join(rows) + "\n"


class NoRecordings(ValueError):
    """A corpus whose pattern matches no recording (the message names the corpus, not the pattern)."""


def survey_corpora(corpora: Sequence[tuple[str, str]], artifact_model: Path | None = None) -> dict[str, dict]:
    """:func:`survey_corpus` of each ``(name, glob)`` in ``corpora``, by name, with the default quality
    rules and, where given, the autoencoder saved at ``artifact_model``; NoRecordings for a corpus
    whose glob matches none."""
    model = ArtifactAutoencoder.load(artifact_model) if artifact_model else None
    config = PreprocessConfig(quality=default_config())
    report = {}
    for name, pattern in corpora:
        try:
            items = discover(sorted(glob.glob(pattern)) or [pattern], warn_sidecars=False)[0]
        except (FileNotFoundError, ValueError) as err:
            raise NoRecordings(f"--corpus {name}: no recording found ({type(err).__name__})") from None
        report[name] = survey_corpus(items, config, name, model)
    return report
