"""The report's first section: the few numbers a reader wants before the details, each taken
from a later section's numbers (and absent where that section is)."""

from __future__ import annotations

from collections.abc import Sequence

from eegfm.evaluation.report.document import Section, fmt, interval
from eegfm.evaluation.report.sections_sites import ALL_SITES


def _by_key(sections: Sequence[Section]) -> dict[str, dict]:
    return {s.key: s.numbers for s in sections if not s.missing}


def _data_point(numbers: dict) -> list[str]:
    return [
        f"Data ({name}): {d['n_sites']} sites, {d['n_subjects']} subjects, {fmt(d['input_eeg_hours'], 2)} h of EEG, "
        f"{d['windows']} windows; {d['quarantined']} inputs quarantined."
        for name, d in numbers.items()
    ]


def _site_points(groups: dict) -> list[str]:
    points = []
    for group, results in groups.items():
        if ALL_SITES in results:
            points.append(
                f"KL / class prior's, {group}, all sites: {interval(results[ALL_SITES]['kl_vs_baseline'], 2)}."
            )
        worst = max((s for s in results if s != ALL_SITES), key=lambda s: results[s]["kl_vs_baseline"]["value"])
        points.append(
            f"Worst site, {group}: {worst} at {interval(results[worst]['kl_vs_baseline'], 2)} (1 = the class prior)."
        )
    return points


def summary_section(sections: Sequence[Section]) -> Section:
    """Headline numbers: the data, the model against the class prior (held-out and unseen sites,
    with intervals), leave-one-site-out, the site probe, the most predicted class per corpus and
    explanation reliability."""
    numbers = _by_key(sections)
    section = Section("summary", "At a glance")
    if "data" in numbers:
        section.points += _data_point(numbers["data"])
    if "per_site" in numbers:
        section.points += _site_points(numbers["per_site"]["groups"])
    for name, loso in numbers.get("loso", {}).items():
        vs = loso["summary"].get("vs_baseline", {})
        section.points.append(
            f"Leave-one-site-out ({name}): KL {fmt(vs.get('mean_ratio'), 2)}x the class prior's on average, "
            f"{fmt(vs.get('worst_ratio'), 2)}x at the worst site."
        )
    probe = numbers.get("shift", {}).get("probe", {})
    if "accuracy" in probe:
        section.points.append(
            f"A linear probe tells the sites apart from the embeddings with {probe['accuracy']:.2f} accuracy "
            f"(chance {probe['chance']:.2f})."
        )
    for corpus, mix in numbers.get("predictions", {}).get("class_mix", {}).items():
        top = max(mix["shares"], key=mix["shares"].get)
        section.points.append(f"Predicted on {corpus}: {top} for {mix['shares'][top]:.0%} of {mix['windows']} windows.")
    if "explanations" in numbers:
        e = numbers["explanations"]
        section.points.append(f"Explanations: {e['n_reliable']} of {e['n_windows']} windows passed their checks.")
    if not section.points:
        section.missing = "None of the sections had its inputs: nothing to summarise."
    section.numbers = {"points": list(section.points)}
    return section
