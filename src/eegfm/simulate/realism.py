"""The realism report's terms: the real corpora it reads (:class:`CorpusSpec`), the groups of
windows it measures, the small background corpus it simulates, and each corpus's summary against
the real range.

``eegfm-realism --against NAME=DIR[:STATE[:GLOB]] ... --output OUT`` runs every file
of every corpus through the pipeline's own per-recording path (``eegfm.evaluation.realism_report``, which
runs the report: it needs both the simulator and the pipeline), computes the statistics of
:mod:`~simulate.realism_stats` per group of windows and summarizes each corpus by the
median over its groups (``value``) and their range (``span``). A group is one file's windows, or
for the simulator one recording's windows in one state.

The simulated background is the windows lying wholly inside an ``Other`` episode (background,
states and artifacts, no six-class pattern); their eyes-closed/open state comes from
``truth.jsonl``'s ``states``. A real corpus has one state for all its files: ``closed``, ``open``
or ``unknown`` (its windows count for the state-free statistics only). The real range of a
statistic is the union of the real corpora's spans: the simulated value is inside when it lies
within it. Corpora are named by the name the user gave and files are only counted, so no
patient identifier (file name, header field) reaches any output.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from eegfm.simulate.corpus import CorpusConfig, generate_corpus
from eegfm.simulate.realism_stats import GENERAL_STATS, STATE_STATS, group_statistics
from eegfm.simulate.sites import archetypes, default_sites

STATES = ("closed", "open", "unknown")
READABLE_SUFFIXES = (".edf", ".bdf", ".parquet", ".fif", ".set", ".vhdr", ".cnt")
# The simulator's states that count as eyes closed / eyes open for the alpha statistics.
SIM_STATE_ALIASES = {"closed": "closed", "open": "open"}
MIN_INSIDE_FRACTION = 1.0  # a simulated window must lie wholly in one state to carry it


class SpecError(ValueError):
    """A corpus specification or directory the report cannot use."""


@dataclasses.dataclass(frozen=True)
class CorpusSpec:
    """A real corpus: ``name`` (how the report refers to it), its ``root`` directory, the eyes
    ``state`` of all its recordings and an optional file ``pattern`` (a glob relative to root)."""

    name: str
    root: Path
    state: str = "unknown"
    pattern: str = ""

    def files(self) -> list[Path]:
        """The recordings the spec selects, sorted; SpecError if there are none."""
        if self.pattern:
            files = sorted(p for p in self.root.glob(self.pattern) if p.is_file())
        else:
            files = sorted(p for p in self.root.rglob("*") if p.is_file() and p.suffix.lower() in READABLE_SUFFIXES)
        if not files:
            what = (
                f"matching {self.pattern!r}" if self.pattern else f"with a suffix among {', '.join(READABLE_SUFFIXES)}"
            )
            raise SpecError(f"corpus {self.name!r}: no files {what} under {self.root}")
        return files


def parse_spec(text: str) -> CorpusSpec:
    """``NAME=DIR[:STATE[:GLOB]]`` -> :class:`CorpusSpec`; SpecError saying what is wrong."""
    name, sep, rest = text.partition("=")
    if not sep or not name or not name.replace("_", "").replace("-", "").isalnum():
        raise SpecError(f"expected NAME=DIR[:STATE[:GLOB]] with NAME of letters, digits, - and _; got {text!r}")
    if name == "simulated":
        raise SpecError(f"the name 'simulated' is reserved for the simulated corpus; got {text!r}")
    directory, _, tail = rest.partition(":")
    state, _, pattern = tail.partition(":")
    state = state or "unknown"
    if state not in STATES:
        raise SpecError(f"STATE: expected one of {', '.join(STATES)}; got {state!r} in {text!r}")
    root = Path(directory).expanduser()
    if not directory or not root.is_dir():
        raise SpecError(f"DIR: expected an existing directory; got {directory!r} in {text!r}")
    return CorpusSpec(name=name, root=root, state=state, pattern=pattern)


@dataclasses.dataclass
class Group:
    """Windows of one file (and state): (n, 19, T) µV, (n, 19) channel mask, their state."""

    state: str
    windows: np.ndarray
    mask: np.ndarray


def interval_state(states: list[dict], start: float, end: float) -> str | None:
    for interval in states:
        if interval["start_s"] <= start and end <= interval["end_s"]:
            return interval["state"]
    return None


def background_profiles(n_sites: int, seed: int):
    """Site profiles whose recordings are mostly background (class ``Other``), for the report."""
    base = tuple(site.replace(class_prevalence={"Other": 1.0}) for site in archetypes())
    return tuple(default_sites(n_sites, seed, base=base))


def simulate_background_corpus(
    output: Path, sites: int = 4, subjects_per_site: int = 2, minutes: float = 3.0, seed: int = 0
) -> Path:
    """Write a small EDF corpus of mostly-background recordings to ``output``."""
    config = CorpusConfig(
        sites=sites,
        subjects_per_site=subjects_per_site,
        recordings_per_subject=1,
        minutes=minutes,
        seed=seed,
        format="edf",
        site_profiles=background_profiles(sites, seed),
    )
    generate_corpus(config, output)
    return output


def _span(values: list[float]) -> dict:
    values = [v for v in values if np.isfinite(v)]
    if not values:
        return {"value": None, "span": None, "groups": 0}
    return {"value": float(np.median(values)), "span": [float(min(values)), float(max(values))], "groups": len(values)}


def summarize(groups: list[Group]) -> dict:
    """A corpus's statistics (median over groups and their span), per-channel |µV| medians and
    mean spectra (for the figure)."""
    results = [(g, group_statistics(g.windows, g.mask)) for g in groups]
    stats = {name: _span([r["stats"][name] for _, r in results]) for name in GENERAL_STATS}
    for state in ("closed", "open"):
        chosen = [r for g, r in results if g.state == state]
        for name in STATE_STATS:
            stats[f"{name}_{state}"] = _span([r["stats"][name] for r in chosen])
    per_channel = {
        kind: {ch: _span([r["per_channel"][kind][ch] for _, r in results]) for ch in results[0][1]["per_channel"][kind]}
        for kind in ("abs_uv_median", "abs_uv_p95")
    }
    freqs = results[0][1]["freqs"]
    spectra = {"freqs": freqs, "overall": np.nanmean([r["overall"] for _, r in results], axis=0)}
    for state in ("closed", "open"):
        chosen = [r["posterior"] for g, r in results if g.state == state]
        spectra[f"posterior_{state}"] = np.nanmean(chosen, axis=0) if chosen else None
    return {
        "windows": int(sum(len(g.windows) for g in groups)),
        "groups": len(groups),
        "stats": stats,
        "per_channel": per_channel,
        "spectra": spectra,
    }


def compare(real: dict[str, dict], simulated: dict) -> dict:
    """Per statistic: the union of the real corpora's spans, how many real groups (files) it spans,
    and whether the simulated value lies inside it (None where no real corpus or no simulated group
    has the statistic). A range from a few groups is narrow: the count says so."""
    out = {}
    for name in simulated["stats"]:
        having = [c["stats"][name] for c in real.values() if c["stats"][name]["span"]]
        spans = [stat["span"] for stat in having]
        value = simulated["stats"][name]["value"]
        low = min(s[0] for s in spans) if spans else None
        high = max(s[1] for s in spans) if spans else None
        inside = None if value is None or low is None else bool(low <= value <= high)
        out[name] = {
            "real_range": None if low is None else [low, high],
            "real_groups": sum(stat["groups"] for stat in having),
            "simulated": value,
            "inside": inside,
        }
    return out
