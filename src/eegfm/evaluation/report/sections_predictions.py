"""The report's section on what the model says of EEG: pages of held-out windows as a reader sees
them (10 s, double banana, negative up, a calibration bar) with the model's probabilities beside
the experts' label, each recording's power spectrum, and the class mix the model predicts on
each corpus it was run on (``corpus_check.json``) and on each ``eegfm-predict`` output.

The derivations are the 18 of the longitudinal bipolar montage, ``contract.montages.DOUBLE_BANANA``,
in the order the review page draws them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from eegfm.contract.channels import CANONICAL_CHANNELS
from eegfm.contract.montages import DOUBLE_BANANA
from eegfm.contract.schema import SFREQ
from eegfm.core.palette import class_colours
from eegfm.core.tasks import HMS_CLASSES
from eegfm.evaluation.report.discover import Found, read_json
from eegfm.evaluation.report.document import Picture, Section, Table, png_of
from eegfm.evaluation.report.scoring import Scored

PAGE_SECONDS = 10.0
SPACING_UV = 150.0  # between traces: about 7 µV/mm on a 30 mm/s page's proportions
CALIBRATION_UV = 100.0
MAX_PSD_HZ = 45.0  # above it, line noise and the anti-aliasing filter
MAX_RECORDINGS = 40  # lines in the all-recordings spectrum


def bipolar(eeg: np.ndarray) -> np.ndarray:
    """(18, T) µV double-banana derivations of the (19, T) canonical-order window."""
    index = {name: k for k, name in enumerate(CANONICAL_CHANNELS)}
    return np.stack([eeg[index[a]] - eeg[index[b]] for a, b in DOUBLE_BANANA])


def _draw_traces(axes, eeg: np.ndarray) -> None:
    """The window's first 10 s as 18 derivations, negative up (the EEG convention), with a 1 s by
    100 µV calibration bar at the right."""
    n = min(eeg.shape[1], int(PAGE_SECONDS * SFREQ))
    traces = bipolar(eeg[:, :n])
    time = np.arange(n) / SFREQ
    for k, trace in enumerate(traces):
        axes.plot(time, k * SPACING_UV + trace - np.median(trace), color="black", linewidth=0.5)
    axes.set_yticks(np.arange(len(DOUBLE_BANANA)) * SPACING_UV, [f"{a}-{b}" for a, b in DOUBLE_BANANA], fontsize=7)
    axes.set_ylim(len(DOUBLE_BANANA) * SPACING_UV, -SPACING_UV)  # inverted: negative up, the first derivation on top
    # the bar in a margin right of the traces, level with the last derivation
    x0, y0 = n / SFREQ + 0.35, (len(DOUBLE_BANANA) - 1) * SPACING_UV
    axes.plot([x0, x0, x0 + 1.0], [y0 - CALIBRATION_UV, y0, y0], color="tab:red", linewidth=1.5, clip_on=False)
    axes.text(x0 + 0.08, y0 - CALIBRATION_UV / 2, f"{CALIBRATION_UV:.0f} µV", ha="left", va="center", fontsize=7)
    axes.text(x0 + 0.5, y0 + 0.15 * SPACING_UV, "1 s", ha="center", va="top", fontsize=7)
    axes.set_xlim(0, n / SFREQ + 1.5)
    axes.set_xticks(range(int(n / SFREQ) + 1))
    axes.spines[["top", "right"]].set_visible(False)
    axes.set_xlabel("seconds into the window", fontsize=8)
    for second in range(1, int(n / SFREQ)):
        axes.axvline(second, color="0.85", linewidth=0.5, zorder=0)


def _draw_probabilities(axes, probabilities: np.ndarray, classes: Sequence[str]) -> None:
    """The model's probabilities as one stacked bar in the classes' colours."""
    colours = class_colours(classes)
    left = 0.0
    for p, name in zip(probabilities, classes, strict=True):
        axes.barh(0, p, left=left, color=colours[name], label=f"{name} {p:.2f}")
        left += p
    axes.set_xlim(0, 1)
    axes.set_axis_off()
    axes.legend(fontsize=7, ncol=len(classes), loc="upper center", bbox_to_anchor=(0.5, 0.0), frameon=False)


def _draw_psd(axes, freqs: np.ndarray, psd: np.ndarray) -> None:
    """One recording's spectrum as mne draws it: a thin line per channel, their mean bold, log scale."""
    band = (freqs >= 0.5) & (freqs <= MAX_PSD_HZ)
    for channel in psd:
        axes.semilogy(freqs[band], channel[band], color="0.6", linewidth=0.4)
    axes.semilogy(freqs[band], psd.mean(axis=0)[band], color="black", linewidth=1.2, label="mean of 19")
    axes.set_xlabel("Hz", fontsize=8)
    axes.set_ylabel("µV²/Hz (Welch)", fontsize=8)
    axes.grid(alpha=0.3, which="both")
    axes.legend(fontsize=7)


def _page(scored: Scored, window: int, eeg: np.ndarray, number: int) -> bytes:
    """One page: the window's traces, the model's probabilities, its recording's spectrum."""
    from matplotlib.figure import Figure  # matplotlib only when a figure is drawn: not for --help

    probabilities = np.exp(scored.logits[window] - scored.logits[window].max())
    probabilities /= probabilities.sum()
    predicted = scored.classes[int(probabilities.argmax())]
    truth = scored.classes[int(scored.target[window].argmax())]
    figure = Figure(figsize=(12.0, 6.4), layout="constrained")
    grid = figure.add_gridspec(2, 2, width_ratios=[3.2, 1.2], height_ratios=[12, 1])
    _draw_traces(figure.add_subplot(grid[0, 0]), eeg)
    _draw_probabilities(figure.add_subplot(grid[1, 0]), probabilities, scored.classes)
    recording = None if scored.recordings is None else str(scored.recordings[window])
    psd_axes = figure.add_subplot(grid[:, 1])
    if recording in scored.psd and scored.psd_freqs is not None:
        _draw_psd(psd_axes, scored.psd_freqs, scored.psd[recording])
        psd_axes.set_title("its recording's held-out windows", fontsize=8)
    colour = class_colours(scored.classes)[predicted]
    figure.suptitle(
        f"page {number}: the experts say {truth}; the model {predicted} ({probabilities.max():.2f}); "
        f"site {scored.sites[window]}",
        fontsize=10,
        color=colour,
    )
    return png_of(figure)


def _all_spectra(scored: Scored) -> bytes | None:
    """Every scored recording's channel-mean spectrum, one line each, coloured by site."""
    from matplotlib.figure import Figure

    if not scored.psd or scored.psd_freqs is None or scored.recordings is None:
        return None
    site_of = dict(zip(scored.recordings.tolist(), scored.sites.tolist(), strict=True))
    sites = sorted(set(site_of.values()))
    freqs = scored.psd_freqs
    band = (freqs >= 0.5) & (freqs <= MAX_PSD_HZ)
    figure = Figure(figsize=(8.0, 4.2), layout="constrained")
    axes = figure.subplots()
    labelled: set[str] = set()
    for recording in sorted(scored.psd)[:MAX_RECORDINGS]:
        site = site_of.get(recording, "?")
        colour = f"C{sites.index(site) % 10}" if site in sites else "0.5"
        label = None if site in labelled else site
        labelled.add(site)
        axes.semilogy(freqs[band], scored.psd[recording].mean(axis=0)[band], color=colour, linewidth=0.8, label=label)
    axes.set_xlabel("Hz")
    axes.set_ylabel("µV²/Hz, mean of the 19 channels (Welch)")
    axes.grid(alpha=0.3, which="both")
    axes.legend(fontsize=7, title="site", title_fontsize=7)
    return png_of(figure)


def _label_order(labels: set[str], given: Sequence[str] = ()) -> list[str]:
    """``given`` (a model's labels, every one: a class it never predicts shows as 0 %) first, then
    the HMS classes in their order, then the rest, of ``labels``."""
    order = [*given, *(c for c in HMS_CLASSES if c not in given)]
    return [c for c in order if c in labels or c in given] + sorted(labels - set(order))


def class_mix(found: Found) -> dict[str, dict[str, Any]]:
    """Per corpus the model was run on (``corpus_check.json``) and per ``eegfm-predict`` output
    (``recordings.json``): its windows, recordings and the share of windows per predicted class."""
    mix: dict[str, dict[str, Any]] = {}
    for path in found.corpus_checks:
        for corpus, result in read_json(path).items():
            if isinstance(result, dict) and result.get("classes"):
                mix[corpus] = {"counts": result["classes"], "recordings": result.get("recordings"), "labels": ()}
    for folder in found.predictions:
        document = read_json(folder / "recordings.json", "recordings")
        counts: Counter[str] = Counter()
        for recording in document["recordings"]:
            counts.update(recording.get("windows_by_label") or {})
        if counts:
            name = f"{folder.name} (eegfm-predict)"
            mix[name] = {"counts": dict(counts), "recordings": len(document["recordings"])}
            mix[name]["labels"] = tuple(document.get("labels") or ())
    for entry in mix.values():
        total = sum(entry["counts"].values())
        entry["windows"] = total
        entry["shares"] = {c: n / total for c, n in entry["counts"].items()}
    return mix


def _mix_figure(mix: Mapping[str, Mapping[str, Any]], classes: Sequence[str]) -> bytes:
    """One stacked bar per corpus: its windows' shares per predicted class, in the classes' colours."""
    from matplotlib.figure import Figure

    colours = class_colours(classes)
    figure = Figure(figsize=(10.0, 1.2 + 0.45 * len(mix)), layout="constrained")
    axes = figure.subplots()
    rows = np.arange(len(mix))
    left = np.zeros(len(mix))
    for name in classes:
        shares = np.array([entry["shares"].get(name, 0.0) for entry in mix.values()])
        axes.barh(rows, shares, left=left, color=colours[name], label=name)
        left += shares
    axes.set_yticks(rows, [f"{name} ({entry['windows']} windows)" for name, entry in mix.items()], fontsize=8)
    axes.invert_yaxis()
    axes.set_xlim(0, 1)
    axes.set_xlabel("share of the corpus's windows, by the model's most likely class")
    axes.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return png_of(figure)


def _pages(scored: Scored, section: Section) -> None:
    """The trace pages (one per target class, the first such held-out window) and the spectra."""
    pages = []
    for number, window in enumerate(sorted(scored.examples, key=lambda w: int(scored.target[w].argmax())), start=1):
        section.pictures.append(
            Picture(f"page_{number}.png", _page(scored, window, scored.examples[window], number), "")
        )
        truth = scored.classes[int(scored.target[window].argmax())]
        predicted = scored.classes[int(scored.logits[window].argmax())]
        section.pictures[-1].caption = f"page {number}: a held-out window the experts call {truth}"
        pages.append({"target": truth, "predicted": predicted, "site": str(scored.sites[window])})
    section.numbers["pages"] = pages
    spectra = _all_spectra(scored)
    if spectra is not None:
        section.numbers["recordings_with_spectrum"] = len(scored.psd)
        shown = min(len(scored.psd), MAX_RECORDINGS)
        caption = f"power spectrum of each held-out recording ({shown} of {len(scored.psd)}), coloured by site"
        section.pictures.append(Picture("spectra.png", spectra, caption))


def predictions_section(scored: Scored | None, found: Found) -> Section:
    """Trace pages and spectra of the fine-tuned model's held-out windows; the class mix per corpus."""
    title = "Predictions: the EEG and what the model says"
    section = Section("predictions", title)
    if scored is not None and scored.examples:
        section.paragraphs.append(
            f"One page per class: the first held-out window ({scored.split} split) the experts gave it, its first "
            f"{PAGE_SECONDS:.0f} s in the double-banana montage (18 derivations: the HMS spectrogram chains and "
            "Fz-Cz, Cz-Pz), negative up, with a 1 s by 100 µV calibration bar; under it the model's probabilities "
            f"(temperature {scored.temperature:.2f}), beside it the Welch spectrum (2 s Hann segments) of the "
            "recording's held-out windows, each channel and their mean, on a log scale."
        )
        _pages(scored, section)
    mix = class_mix(found)
    if mix:
        labels = _label_order(
            {c for e in mix.values() for c in e["counts"]}, next((e["labels"] for e in mix.values() if e["labels"]), ())
        )
        section.paragraphs.append(
            "The class mix the model predicts on each corpus it was run on (eegfm-corpus-check's corpus_check.json, "
            "real EEG it never trained on) and on each eegfm-predict output: the share of windows whose most "
            "likely class each is."
        )
        section.pictures.append(Picture("class_mix.png", _mix_figure(mix, labels), "predicted class mix per corpus"))
        rows = [
            [name, str(e["recordings"]), str(e["windows"])] + [f"{e['shares'].get(c, 0.0):.0%}" for c in labels]
            for name, e in mix.items()
        ]
        section.tables.append(Table(["corpus", "recordings", "windows", *labels], rows))
        section.numbers["class_mix"] = {
            name: {k: e[k] for k in ("recordings", "windows", "shares")} for name, e in mix.items()
        }
    if not section.pictures:
        section.missing = (
            "No held-out windows scored and no corpus_check.json or recordings.json below the run folders "
            "(python -m eegfm.evaluation.corpus_check, eegfm-predict)."
        )
    return section
