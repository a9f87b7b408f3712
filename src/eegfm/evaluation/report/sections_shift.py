"""The report's sections on the embedding space: a 2-D projection of the held-out windows'
pooled encoder output coloured by class and by site, and how far apart the sites lie in it (a
linear probe predicting the site, and each site's MMD to the rest beside its performance gap)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from eegfm.core.palette import class_colours
from eegfm.evaluation.report.document import Picture, Section, Table, fmt, missing, png_of
from eegfm.evaluation.report.scoring import Scored
from eegfm.evaluation.report.sections_sites import ALL_SITES
from eegfm.evaluation.report.stats import mmd_permutation_p, mmd_squared, project_2d, site_probe

N_PERMUTATIONS = 200
MAX_MMD_WINDOWS = 500  # per side: the kernel matrices grow with the square, the permutations repeat them


def _at_most(points: np.ndarray, seed: int) -> np.ndarray:
    """``points``, or a seeded random ``MAX_MMD_WINDOWS`` of them."""
    if len(points) <= MAX_MMD_WINDOWS:
        return points
    return points[np.random.default_rng(seed).choice(len(points), MAX_MMD_WINDOWS, replace=False)]


def _scatter(
    coordinates: np.ndarray, groups: Mapping[str, np.ndarray], method: str, class_order: Sequence[str]
) -> bytes:
    """Two panels of the same points: coloured by class (``core.palette``'s colours of the
    model's ``class_order``), and by site."""
    from matplotlib.figure import Figure  # matplotlib only when a figure is drawn: not for --help

    palette = class_colours(class_order)
    figure = Figure(figsize=(11.0, 4.6))
    for axes, (title, labels) in zip(figure.subplots(1, 2), groups.items()):
        for k, name in enumerate(sorted(set(labels.tolist()))):
            keep = labels == name
            colour = palette.get(name, f"C{k % 10}") if title == "class" else f"C{k % 10}"
            axes.scatter(*coordinates[keep].T, s=16, alpha=0.75, color=colour, label=f"{name} ({keep.sum()})")
        axes.set_title(f"by {title}", fontsize=10)
        axes.set_xlabel(f"{method} 1")
        axes.set_ylabel(f"{method} 2")
        axes.grid(alpha=0.3)
        axes.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    figure.tight_layout()
    return png_of(figure)


def embeddings_section(scored: Scored | None, method: str, seed: int, why: str) -> Section:
    """The held-out windows' embeddings projected to 2-D, coloured by target class and by site."""
    title = "Embeddings"
    if scored is None or scored.embeddings is None:
        return missing("embeddings", title, why)
    if len(scored.embeddings) < 3:
        return missing("embeddings", title, f"{len(scored.embeddings)} held-out windows: too few to project")
    coordinates = project_2d(scored.embeddings, method, seed)
    classes = np.asarray(scored.classes)[scored.target.argmax(-1)]
    section = Section("embeddings", title)
    section.paragraphs.append(
        f"{len(coordinates)} held-out windows ({scored.split} split) of the fine-tuned model: its encoder's pooled "
        f"output ({scored.embeddings.shape[1]} dimensions) projected by {method.upper()}. Clusters by site rather "
        "than by class mean the encoder sees the hospital before the pattern."
    )
    section.numbers = {"method": method, "n_windows": len(coordinates), "dimensions": int(scored.embeddings.shape[1])}
    section.pictures.append(
        Picture(
            "embeddings.png",
            _scatter(coordinates, {"class": classes, "site": scored.sites}, method.upper(), list(scored.classes)),
            f"{method.upper()} of the held-out embeddings: by class (left), by site (right)",
        )
    )
    return section


def _gaps(per_site: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> dict[str, dict[str, float]]:
    """Per site and group, its KL / class prior minus all held-out sites' together (positive: worse
    than the model's average)."""
    groups = list(per_site.values())
    pooled = next((g[ALL_SITES]["kl_vs_baseline"]["value"] for g in groups if ALL_SITES in g), None)
    gaps: dict[str, dict[str, float]] = {}
    for name, group in per_site.items():
        for site, result in group.items():
            if site != ALL_SITES and pooled is not None:
                gaps.setdefault(site, {})[name] = result["kl_vs_baseline"]["value"] - pooled
    return gaps


def shift_section(scored: Scored | None, per_site: Mapping[str, Any], seed: int, why: str) -> Section:
    """Site probe accuracy against chance, and each site's MMD to the others beside its gap."""
    title = "Domain shift between sites"
    if scored is None or scored.embeddings is None:
        return missing("shift", title, why)
    sites = sorted(set(scored.sites.tolist()))
    if len(sites) < 2:
        return missing("shift", title, f"the held-out windows come from {len(sites)} site: no shift to measure")
    section = Section("shift", title)
    try:
        probe = site_probe(scored.embeddings, scored.sites, seed)
    except ValueError as err:
        probe = {"error": str(err)}
    gaps = _gaps(per_site)
    rows, mmd = [], {}
    for k, site in enumerate(sites):
        mine = scored.sites == site
        x, y = _at_most(scored.embeddings[mine], seed), _at_most(scored.embeddings[~mine], seed)
        mmd[site] = {
            "mmd2": mmd_squared(x, y),
            "p_value": mmd_permutation_p(x, y, N_PERMUTATIONS, seed + k),
            "n_windows": int(mine.sum()),
            "gap": gaps.get(site, {}),
        }
        gap_text = "; ".join(f"{fmt(v, 2)} ({g})" for g, v in mmd[site]["gap"].items()) or "—"
        rows.append(
            [site, fmt(mmd[site]["n_windows"]), fmt(mmd[site]["mmd2"], 4), fmt(mmd[site]["p_value"], 3), gap_text]
        )
    section.numbers = {"probe": probe, "mmd": mmd, "n_permutations": N_PERMUTATIONS}
    subjects = {site: len(set(scored.subjects[scored.sites == site].tolist())) for site in sites}
    if max(subjects.values()) == 1:
        section.paragraphs.append(
            "Each site has one held-out subject here, so site and subject coincide: what separates the sites may be "
            "the subjects. A split with more held-out subjects per site (--set test_fraction=...) tells them apart."
        )
    if "error" in probe:
        section.paragraphs.append(f"Site probe not fitted: {probe['error']}.")
    else:
        section.paragraphs.append(
            f"A logistic regression on the standardised embeddings tells the {probe['n_sites']} sites apart with "
            f"{probe['accuracy']:.2f} ± {probe['accuracy_std']:.2f} accuracy ({probe['folds']}-fold, stratified by "
            f"site over {probe['n_windows']} windows) against {probe['chance']:.2f} by chance "
            "(the largest site's share)."
        )
    section.paragraphs.append(
        "MMD²: squared maximum mean discrepancy (RBF kernel, median-distance bandwidth) between a site's embeddings "
        f"and the other sites' (at most {MAX_MMD_WINDOWS} random windows of each); p: share of {N_PERMUTATIONS} "
        "random splits as far apart. The gap is the site's KL / "
        "class prior minus that of all held-out windows together (positive: the model does worse there)."
    )
    section.tables.append(Table(["site", "windows", "MMD²", "p", "performance gap (KL ratio)"], rows))
    return section
