"""Writing the realism report: ``realism.json``, ``realism.md`` and ``realism.png``.

``realism.json`` has a stable layout::

    {"version": 1,
     "statistics": {name: description},
     "corpora": {corpus: {"kind": "real" | "simulated", "state", "files", "groups", "windows",
                          "stats": {name: {"value", "span": [min, max], "groups"}},
                          "per_channel": {"abs_uv_median" | "abs_uv_p95": {channel: {...}}}}},
     "comparison": {name: {"real_range": [min, max], "real_groups", "simulated", "inside"}}}

``value`` is the median over a corpus's groups (files, or simulated recording x state) and
``span`` their range; ``real_range`` is the union of the real corpora's spans; ``null`` where a
corpus has no group with the statistic (e.g. no eyes-open recording).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from eegfm.simulate.realism_stats import BANDS, DISTANCE_BINS, POSTERIOR, SLOPE_EXCLUDE, SLOPE_FIT

REPORT_VERSION = 1


def descriptions() -> dict[str, str]:
    """One line per statistic, as written in the report."""
    out = {
        "abs_uv_median": "median over channels of each channel's median |µV|",
        "abs_uv_p95": "median over channels of each channel's 95th percentile |µV|",
        "slope_1f": f"slope of log10 PSD vs log10 Hz, {SLOPE_FIT[0]:g}-{SLOPE_FIT[1]:g} Hz without "
        f"{SLOPE_EXCLUDE[0]:g}-{SLOPE_EXCLUDE[1]:g} Hz, channel-mean Welch spectrum",
    }
    for band, (low, high) in BANDS.items():
        out[f"{band}_rel"] = f"{band} ({low:g}-{high:g} Hz) power / 1-30 Hz power, all channels"
    for name, (low, high) in DISTANCE_BINS.items():
        out[f"corr_{name}"] = f"mean Pearson correlation of channel pairs {low:g}-{high:g} apart (unit head sphere)"
    posterior = "/".join(POSTERIOR)
    for state in ("closed", "open"):
        out[f"alpha_peak_hz_{state}"] = f"eyes {state}: {posterior} spectrum's largest rise above its 1/f line, 7-13 Hz"
        out[f"alpha_share_{state}"] = f"eyes {state}: {posterior} 8-13 Hz power / 1-30 Hz power"
    return out


def _corpus_entry(summary: dict) -> dict:
    keys = ("kind", "state", "files", "groups", "windows", "stats", "per_channel")
    return {key: summary[key] for key in keys}


def build_report(real: dict[str, dict], simulated: dict, comparison: dict) -> dict:
    """The JSON-ready report (module docstring); spectra stay out of it."""
    corpora = {name: _corpus_entry(summary) for name, summary in real.items()}
    corpora["simulated"] = _corpus_entry(simulated)
    return {"version": REPORT_VERSION, "statistics": descriptions(), "corpora": corpora, "comparison": comparison}


def _fmt(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"


def _cell(stat: dict) -> str:
    if stat["value"] is None:
        return "–"
    low, high = stat["span"]
    return f"{_fmt(stat['value'])} [{_fmt(low)}, {_fmt(high)}]" if stat["groups"] > 1 else _fmt(stat["value"])


def markdown_table(report: dict) -> str:
    """Statistic rows; one column per corpus (median [min, max] over its groups), the real range
    (and how many files span it) and whether the simulated value lies inside it."""
    names = [n for n in report["corpora"] if n != "simulated"]
    header = ["statistic", *names, "simulated", "real range", "inside"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for stat, comparison in report["comparison"].items():
        cells = [_cell(report["corpora"][n]["stats"][stat]) for n in [*names, "simulated"]]
        rng = comparison["real_range"]
        real = "–" if rng is None else f"{_fmt(rng[0])} – {_fmt(rng[1])} ({comparison['real_groups']} files)"
        inside = {True: "yes", False: "**no**", None: "n/a"}[comparison["inside"]]
        lines.append("| " + " | ".join([f"`{stat}`", *cells, real, inside]) + " |")
    return "\n".join(lines)


def write_markdown(report: dict, path: Path) -> None:
    corpora = report["corpora"]
    counts = ", ".join(
        f"{name}: {c['files']} files, {c['groups']} groups, {c['windows']} windows, state {c['state']}"
        for name, c in corpora.items()
    )
    inside = [c["inside"] for c in report["comparison"].values() if c["inside"] is not None]
    text = [
        "# Realism of the simulated background",
        "",
        "Every corpus went through the pipeline's `process_recording` (19 canonical channels, the "
        "recording's reference, 256 Hz, notch and 0.5-70 Hz band-pass, 10 s windows, quality rules). "
        "Cells: median over groups (files; simulated recordings x state) [min, max]. The real range "
        "is the union of the real corpora's spans, over the files named beside it; `inside` says whether the "
        "simulated median lies in it.",
        "",
        f"Corpora: {counts}.",
        "",
        markdown_table(report),
        "",
        f"{sum(inside)} of {len(inside)} statistics of the simulated background lie inside the real range.",
        "",
        "## Statistics",
        "",
        *[f"- `{name}`: {text}" for name, text in report["statistics"].items()],
        "",
    ]
    path.write_text("\n".join(text))


def write_figure(real: dict[str, dict], simulated: dict, path: Path) -> None:
    """PSDs (all channels; posterior eyes closed) overlaid and correlation against distance."""
    # matplotlib only when the figure is drawn: eegfm-simulate --help and corpora need none.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    corpora = {**real, "simulated": simulated}
    centres = [0.5 * (low + min(high, 2.0)) for low, high in DISTANCE_BINS.values()]
    for name, summary in corpora.items():
        style = {"color": "black", "linewidth": 2.5} if name == "simulated" else {"linewidth": 1.2}
        spectra = summary["spectra"]
        band = (spectra["freqs"] >= 1) & (spectra["freqs"] <= 45)
        freqs = spectra["freqs"][band]
        axes[0].loglog(freqs, spectra["overall"][band], label=name, **style)
        if spectra["posterior_closed"] is not None:
            axes[1].loglog(freqs, spectra["posterior_closed"][band], label=name, **style)
        corr = [summary["stats"][f"corr_{b}"]["value"] for b in DISTANCE_BINS]
        axes[2].plot(centres, [np.nan if c is None else c for c in corr], marker="o", label=name, **style)
    axes[0].set(title="PSD, mean of channels", xlabel="Hz", ylabel="µV²/Hz")
    axes[1].set(title="PSD, " + "/".join(POSTERIOR) + ", eyes closed", xlabel="Hz", ylabel="µV²/Hz")
    axes[2].set(title="correlation vs electrode distance", xlabel="distance (unit head sphere)", ylabel="r")
    for ax in axes:
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
