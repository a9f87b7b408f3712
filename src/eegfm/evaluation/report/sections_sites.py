"""The report's per-site sections: each site's held-out metrics with 95 % confidence intervals
from resampling subjects, leave-one-site-out, confusion matrices, calibration and robustness."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from eegfm.evaluation.report.document import Picture, Section, Table, fmt, interval, missing, png_of
from eegfm.evaluation.report.scoring import Scored
from eegfm.evaluation.report.stats import subject_bootstrap

ALL_SITES = "all sites"


def estimates(scored: Scored, n_resamples: int, seed: int) -> dict[str, Any]:
    """KL, KL / the class prior's and top-class accuracy of ``scored``'s windows, each with its
    subject-bootstrap interval."""
    kl, prior_kl, hit = scored.window_kl(), scored.window_baseline_kl(), scored.window_correct()
    ones = np.ones(len(kl))
    return {
        "n_windows": len(kl),
        "kl": subject_bootstrap(kl, ones, scored.subjects, n_resamples, seed),
        "baseline_kl": float(prior_kl.mean()),
        "kl_vs_baseline": subject_bootstrap(kl, prior_kl, scored.subjects, n_resamples, seed),
        "accuracy": subject_bootstrap(hit, ones, scored.subjects, n_resamples, seed),
    }


def per_site(scored: Scored, n_resamples: int, seed: int) -> dict[str, dict[str, Any]]:
    """``estimates`` for every site's windows and, with several sites, for all of them together."""
    sites = {
        str(site): estimates(scored.subset(scored.sites == site), n_resamples, seed) for site in np.unique(scored.sites)
    }
    if len(sites) > 1:
        sites[ALL_SITES] = estimates(scored, n_resamples, seed)
    return sites


def _rows(results: Mapping[str, Mapping[str, Any]]) -> list[list[str]]:
    return [
        [
            site,
            fmt(r["kl"]["n_subjects"]),
            fmt(r["n_windows"]),
            interval(r["kl"]),
            fmt(r["baseline_kl"]),
            interval(r["kl_vs_baseline"]),
            interval(r["accuracy"]),
        ]
        for site, r in results.items()
    ]


def _forest(groups: Mapping[str, Mapping[str, Mapping[str, Any]]], metric: str, label: str) -> bytes:
    """Each site's ``metric`` with its interval, a row per (group, site)."""
    from matplotlib.figure import Figure  # matplotlib only when a figure is drawn: not for --help

    rows = [(group, site, r[metric]) for group, results in groups.items() for site, r in results.items()]
    figure = Figure(figsize=(8.0, 1.2 + 0.32 * len(rows)))
    axes = figure.add_subplot()
    colours = dict(zip(groups, ("tab:blue", "tab:red", "tab:green")))
    labelled: set[str] = set()
    for y, (group, _site, e) in enumerate(rows):
        low, high = (e["low"], e["high"]) if e["low"] is not None else (e["value"], e["value"])
        axes.plot([low, high], [y, y], color=colours[group], linewidth=2)
        axes.plot(e["value"], y, "o", color=colours[group], label=None if group in labelled else group)
        labelled.add(group)
    if metric == "kl_vs_baseline":  # the class prior's own level
        axes.axvline(1.0, color="0.5", linestyle=":")
    axes.set_yticks(range(len(rows)), [f"{site}" for _, site, _ in rows], fontsize=8)
    axes.set_ylim(len(rows) - 0.5, -0.5)
    axes.set_xlabel(label)
    axes.grid(axis="x", alpha=0.3)
    axes.legend(fontsize=8, loc="best")
    figure.tight_layout()
    return png_of(figure)


def per_site_section(
    within: Scored | None, unseen: Mapping[str, Scored], n_resamples: int, seed: int, why: str
) -> Section:
    """Per-site metrics with subject-bootstrap intervals: the fine-tuned model's held-out subjects
    site by site, and each leave-one-site-out fold's unseen site."""
    title = "Per-site metrics with 95 % confidence intervals"
    if within is None and not unseen:
        return missing("per_site", title, why)
    section = Section("per_site", title)
    groups: dict[str, dict[str, Any]] = {}
    if within is not None:
        groups[f"held-out subjects ({within.split} split)"] = per_site(within, n_resamples, seed)
    if unseen:
        groups["unseen site (leave-one-site-out)"] = {
            site: estimates(scored, n_resamples, seed) for site, scored in sorted(unseen.items())
        }
    section.numbers = {"n_resamples": n_resamples, "seed": seed, "groups": groups}
    section.paragraphs.append(
        f"Intervals are 2.5th-97.5th percentiles over {n_resamples} resamples of whole subjects (with replacement, "
        f"seed {seed}), since one subject's windows are not independent. KL vs class prior below 1 means the model "
        "beats predicting the training split's class mix for every window."
    )
    header = [
        "site",
        "subjects",
        "windows",
        "KL [95 % CI]",
        "class prior KL",
        "KL / class prior [95 % CI]",
        "top-class accuracy [95 % CI]",
    ]
    for group, results in groups.items():
        section.tables.append(Table(header, _rows(results), caption=group))
    section.pictures.append(
        Picture(
            "per_site_kl_ratio.png",
            _forest(groups, "kl_vs_baseline", "KL / class prior's KL (lower is better)"),
            "each site's KL relative to the class prior's, with its subject-bootstrap interval",
        )
    )
    return section
