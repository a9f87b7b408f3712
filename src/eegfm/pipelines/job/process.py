"""The per-recording core the Beam job wraps (and nothing here knows about Beam).

`process_recording` streams one recording in bounded chunks through harmonize -> resample to
256 Hz -> notch + band-pass -> windows -> quality rules (``windowing``), yielding `Window`s,
`RejectedWindow`s and, last, its one `Outcome` (``events``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterator

import numpy as np

from eegfm.contract import schema
from eegfm.core.dsp.resample import Resampler
from eegfm.core.logs import get_logger
from eegfm.core.stores import read_errors, storage_error
from eegfm.pipelines.datasets import LabeledWindow, SourceItem, as_background
from eegfm.pipelines.datasets.bids import SidecarError, read_electrodes, read_sidecars
from eegfm.pipelines.job.process_io import Outcome, PreprocessConfig, RejectedWindow, StageError, Window
from eegfm.pipelines.privacy.deid import pseudonym
from eegfm.pipelines.readers import Reader, ReaderError, open_recording
from eegfm.pipelines.readers.local_copy import DecompressLimit, localized
from eegfm.pipelines.readers.regular_files import NotRegularFile
from eegfm.pipelines.signal.bipolar import BipolarReader, bipolar_plan
from eegfm.pipelines.signal.chunking import leading_stretch, peak_to_peak
from eegfm.pipelines.signal.filters import design_filters, detect_line_frequency
from eegfm.pipelines.signal.harmonize import HarmonizeError, harmonize, map_channels, plan_harmonization
from eegfm.pipelines.signal.ica import fit_ica_cleaner
from eegfm.pipelines.signal.window_spectrograms import WindowSpectrograms
from eegfm.pipelines.signal.windowing import Cutting, Span, cut_span, mark_annotated_bad, plan_windows

log = get_logger("process")

# Stretches the constant-channel test reads, spread over the recording: a channel must be still in
# every one, so a dropout or an electrode loose for a while is not taken for one never recorded.
_PROBES, _PROBE_SECONDS = 8, 2.0


def constant_rows(reader: Reader, rows: list[int], tol_uv: float) -> tuple[str, ...]:
    """The names of the channels ``rows`` within ``tol_uv`` peak-to-peak in every probe stretch:
    never recorded (an export's template fills them with zeros), so interpolated as missing."""
    n, width = reader.info.n_times, max(1, int(_PROBE_SECONDS * reader.info.sfreq))
    if not rows:
        return ()
    still = np.ones(len(rows), dtype=bool)
    n_chans = len(reader.info.ch_names)
    for start in sorted({int(s) for s in np.linspace(0, max(0, n - width), _PROBES)}):
        still &= peak_to_peak(lambda a, b: _read(reader, a, b), rows, start, min(n, start + width), n_chans) <= tol_uv
        if not still.any():
            return ()
    return tuple(reader.info.ch_names[rows[i]] for i in np.flatnonzero(still))


def _ids(item: SourceItem, reader: Reader, key: bytes, sha: str) -> dict[str, str]:
    subject_raw = item.subject_key or reader.identity_key or f"file:{sha}"
    return {
        "site_id": pseudonym(key, "site", item.site),
        "subject_id": pseudonym(key, "subject", subject_raw),
        "session_id": pseudonym(key, "session", f"{subject_raw}\x00{item.session_key}") if item.session_key else "",
        "recording_id": pseudonym(key, "recording", sha),
    }


def process_recording(
    item: SourceItem, key: bytes, config: PreprocessConfig, config_hash: str
) -> Iterator[Window | RejectedWindow | Outcome]:
    """Stream one input file to windows, then exactly one `Outcome`; one that fails part-way ends
    quarantined with ``windows`` 0, and the caller drops the windows it yielded."""
    item = as_background(item, config.background)  # the one place --background relabels a recording
    # The site is known before the file is opened: a quarantined input counts against its site.
    outcome = Outcome(
        source=item.path, status="quarantined", dataset=item.dataset, site=pseudonym(key, "site", item.site)
    )
    name = os.path.basename(item.path)
    try:
        # Listing found it unreadable (a folder it may not list, a dangling link): say that, as the Beam job's
        # stage does, rather than what opening it would raise (eegfm-predict and the server come straight here).
        if item.read_problem:
            raise StageError("read", item.read_problem)
        if item.label_problem:
            raise StageError("labels", item.label_problem)
        limit = DecompressLimit(config.max_decompressed_ratio, config.max_decompressed_gb)
        with localized(item.path, limit) as (local, sha):
            outcome.source_sha256 = sha
            with _open(local) as reader:
                for event in _stream(item, reader, key, config, config_hash, sha, outcome.record):
                    _count(outcome, event)
                    yield event
        outcome.status = "processed" if outcome.windows else "quarantined"
        if not outcome.windows and not outcome.reason:
            outcome.stage = "windows"
            rules = ", ".join(f"{k} x{v}" for k, v in sorted(outcome.rejection_rules.items()))
            outcome.reason = f"{name}: " + (
                f"no usable windows: all {outcome.rejected_windows} windows rejected ({rules})"
                if outcome.rejected_windows
                else f"recording shorter than one window ({outcome.eeg_seconds:.1f} s of EEG)"
            )
    except StageError as err:
        outcome.stage, outcome.reason = err.stage, f"{name}: {err.reason}"
        # a header that fails to parse may name its labels before a reader gives them
        outcome.channel_labels = outcome.channel_labels or getattr(err.__cause__, "labels", ())
    except NotRegularFile as err:  # swapped for a FIFO or a device after the listing: never waited on
        outcome.stage, outcome.reason = "read", f"{name}: {err.why}"
    except read_errors() as err:  # the file's or its store's reasons
        detail = (
            storage_error(err) if getattr(err, "exception_details", None) or not isinstance(err, OSError) else err
        )  # BeamIOError, a store's own error
        outcome.stage, outcome.reason = "read", f"{name}: cannot read file ({detail})"
    except Exception as err:  # dead letter: one recording that breaks a library must not stop the run
        log.exception("unexpected failure on %s", item.path)
        outcome.status, outcome.stage = "quarantined", "unexpected"
        outcome.reason = (
            f"{name}: unexpected {type(err).__name__} "
            f"({' '.join(str(err).split())[:300]}); see the job log for the traceback"
        )
    if outcome.status != "processed":
        outcome.windows = outcome.labeled_windows = outcome.repaired_windows = 0
        outcome.repaired = {}
    yield outcome


def _count(outcome: Outcome, event: Window | RejectedWindow) -> None:
    if isinstance(event, RejectedWindow):
        outcome.rejected_windows += 1
        for rule in event.rule_names():
            outcome.rejection_rules[rule] = outcome.rejection_rules.get(rule, 0) + 1
        return
    outcome.windows += 1
    outcome.labeled_windows += int(event.record.label >= 0 or bool(len(event.record.votes)))
    if event.repaired:
        outcome.repaired_windows += 1
        for channel in event.repaired:
            outcome.repaired[channel] = outcome.repaired.get(channel, 0) + 1


def _open(local: str) -> contextlib.closing[Reader]:
    try:
        return contextlib.closing(open_recording(local))
    except ReaderError as err:
        raise StageError("read", str(err).split(": ", 1)[-1]) from err


def _event_windows(item: SourceItem, events) -> tuple[LabeledWindow, ...]:
    """A labeled window from each of the recording's annotations that ``item.event_labels`` names."""
    labels = {code.lower(): label for code, label in item.event_labels}
    windows = tuple(
        LabeledWindow(onset, item.event_window_s, labels[text.strip().lower()], task=item.task)
        for onset, _, text in events
        if text.strip().lower() in labels
    )
    if not windows:
        raise StageError(
            "labels",
            f"no annotation {' or '.join(code for code, _ in item.event_labels)} (it has "
            f"{len(events)} other{'s' * (len(events) != 1)}): expected the data set's event codes, "
            "which label its windows",
        )
    return windows


def _bipolar(reader: Reader, marked_bad: tuple[str, ...], config: PreprocessConfig, digitized):
    """A bipolar recording's plan (``pipelines.signal.bipolar``) and its flat derivations, where its channels
    alone place fewer than ``min_channels`` 10-20 sites; else None."""
    names = reader.info.ch_names
    plan = bipolar_plan(names, exclude=marked_bad)
    if plan is None:
        return None
    # A flat derivation (an unplugged pair, a template's zeros) would tie its two electrodes together.
    flat = constant_rows(reader, list(plan.derivations), config.quality.flat_tol_uv)
    if flat and (plan := bipolar_plan(names, exclude=[*marked_bad, *flat])) is None:
        return None
    try:
        if len(map_channels(names, config.montage, digitized).canonical) >= config.min_channels:
            return None
    except HarmonizeError:  # the harmonizer reports it, on the channels as recorded
        return None
    return plan, flat


def _electrodes(reader: Reader, plan, config: PreprocessConfig) -> Reader:
    """The reader of the electrodes ``plan``'s derivations give; a StageError where they place too few sites."""
    names = reader.info.ch_names
    sites = map_channels(plan.electrodes).canonical
    if len(sites) < config.min_channels:
        chains = "; ".join(", ".join(chain) for chain in plan.chains)
        raise StageError(
            "harmonize",
            f"a bipolar montage ({len(plan.derivations) + len(plan.left_out)} derivations such as "
            f"{', '.join(names[i] for i in plan.derivations[:3])}): its derivations form {len(plan.chains)} "
            f"chains with no electrode in common ({chains}), each against a reference of its own, so only the "
            f"largest gives electrode potentials: {len(sites)} of the 19 10-20 sites "
            f"({', '.join(sorted(sites, key=schema.CHANNELS.index))}); need at least {config.min_channels} "
            "(--min_channels). A derivation joining the chains (the double banana's T7-FT9, FT9-FT10, FT10-T8 "
            "bridge) or a referential export would give them all",
        )
    return BipolarReader(reader, plan)


def _read(reader: Reader, start: int, stop: int) -> np.ndarray:
    try:
        return reader.read(start, stop, check_finite=False)
    except ReaderError as err:
        raise StageError("read", str(err).split(": ", 1)[-1]) from err


def _stream(item, reader, key, config, config_hash, sha, record) -> Iterator[Window | RejectedWindow]:
    """The recording's windows; ``record(**fields)`` (``Outcome.record``) gets what the outcome
    says of the recording as soon as it is known."""
    other_rate = tuple(reader.skipped)
    record(
        sfreq_in=reader.info.sfreq,
        n_chans_in=len(reader.info.ch_names),
        channel_labels=tuple(reader.info.ch_names),
        other_rate=other_rate,
        split_parts=tuple(reader.split_parts),
    )
    sidecars, marked_bad, digitized, unplaced = _sidecars(item, reader, config)
    record(marked_bad=marked_bad)
    bipolar = _bipolar(reader, marked_bad, config, digitized)
    if bipolar is not None:
        plan, flat = bipolar
        record(bipolar={**plan.as_dict(reader.info.ch_names), "flat": list(flat)})
        reader = _electrodes(reader, plan, config)
    info = reader.info
    if item.event_labels:
        item = dataclasses.replace(item, windows=_event_windows(item, reader.events))
    plan = _plan_channels(reader, config, marked_bad, digitized, unplaced, other_rate, record)
    cmap = plan[0]
    ids = _ids(item, reader, key, sha)
    record(interpolated=cmap.missing, site=ids["site_id"], **_cap_record(cmap, info.ch_names))
    n_rows = schema.N_CHANS + int("ecg" in cmap.auxiliary)
    mask = np.array([0 if c in cmap.missing else 1 for c in schema.CHANNELS], dtype=np.int64)
    harmonized = _harmonizer(reader, plan, n_rows)
    if config.ica:
        harmonized = _with_ica(reader, plan, n_rows, mask, harmonized, config, record)
    line_freq = _line_frequency(config, sidecars, info, harmonized, n_rows)
    record(line_freq=line_freq)
    # The data set's own sidecar (participants.tsv, subject-info.csv) wins over file headers.
    clinical = {"age": item.age if item.age is not None else info.clinical.age, "sex": item.sex or info.clinical.sex}
    design = design_filters(schema.SFREQ, config.filter_config(), line_freq)
    spectrograms = WindowSpectrograms(item, config.spectrogram, ids["recording_id"])
    cut = Cutting(
        item=item,
        sfreq=info.sfreq,
        n_chans=len(info.ch_names),
        harmonized=harmonized,
        design=design,
        n_rows=n_rows,
        mask=mask,
        ids=ids,
        clinical=clinical,
        config=config,
        config_hash=config_hash,
        sha=sha,
        spectrograms=spectrograms,
    )
    yield from _windows(cut, reader, record)


def _plan_channels(reader: Reader, config: PreprocessConfig, marked_bad, digitized, unplaced, other_rate, record):
    """The harmonization plan, once the channels constant from start to end are recorded;
    `StageError` for a flat recording or channels that cannot be harmonized."""
    info = reader.info
    try:
        cmap = map_channels(info.ch_names, config.montage, digitized)
        eeg_rows = sorted({*cmap.canonical.values(), *cmap.extra_eeg.values()})
        constant = constant_rows(reader, eeg_rows, config.quality.flat_tol_uv)
        record(constant=constant)
        if constant and len(constant) == len(eeg_rows):
            raise StageError(
                "quality",
                f"all {len(constant)} EEG channels are constant from start to end "
                f"(peak-to-peak within {config.quality.flat_tol_uv:g} uV wherever probed): a flat "
                "recording, nothing was recorded",
            )
        return plan_harmonization(
            info.ch_names,
            min_channels=config.min_channels,
            exclude=marked_bad,
            constant=constant,
            montage=config.montage,
            cmap=cmap,
        )
    except HarmonizeError as err:
        empty = reader.empty_columns
        note = f"; columns entirely NaN (not recorded): {', '.join(empty)}" if empty else ""
        if other_rate:
            note += f"; signals at another sampling rate, left out: {', '.join(other_rate)}"
        if unplaced:
            note += f"; {unplaced}"
        raise StageError("harmonize", f"{err}{note}") from err


def _cap_record(cmap, ch_names) -> dict:
    """The cap and the electrode each 10-20 site took, for a recording named by cap position."""
    if not cmap.cap:
        return {}
    return {
        "cap": "file" if cmap.cap.startswith("file-") else cmap.cap,  # 'file': its digitized positions
        "cap_sites": {site: ch_names[i] for site, i in cmap.canonical.items()},
    }


def _with_ica(reader: Reader, plan, n_rows: int, mask: np.ndarray, harmonized, config: PreprocessConfig, record):
    """Fits the ICA cleaner on the first ``ica_fit_seconds``, records what it removed, returns the
    harmonizer that applies it."""
    info = reader.info
    n_fit = min(info.n_times, int(config.ica_fit_seconds * info.sfreq))
    rows, sfreq = leading_stretch(harmonized, info.sfreq, n_rows, len(info.ch_names), n_fit)
    try:
        cleaner = fit_ica_cleaner(rows[: schema.N_CHANS], sfreq, mask)
    except ValueError as err:
        raise StageError("ica", str(err)) from err
    record(
        ica={
            "components": cleaner.n_components,
            "eog_removed": len(cleaner.excluded_eog),
            "emg_removed": len(cleaner.excluded_emg),
        }
    )
    return _harmonizer(reader, plan, n_rows, cleaner)


def _line_frequency(config: PreprocessConfig, sidecars, info, harmonized, n_rows: int):
    """The mains frequency to notch (None: none); for ``auto`` the sidecars' record, else the one
    detected in the first ``line_detect_seconds``."""
    if config.line_freq != "auto":
        return config.line_freq
    if sidecars.line_freq is not None:  # the data set's own record of its mains
        return sidecars.line_freq
    n_detect = min(info.n_times, int(config.line_detect_seconds * info.sfreq))
    if n_detect < info.sfreq:  # under a second tells no mains apart; such a recording has no window anyway
        return None
    rows, sfreq = leading_stretch(harmonized, info.sfreq, n_rows, len(info.ch_names), n_detect)
    return detect_line_frequency(rows[: schema.N_CHANS], sfreq)


def _sidecars(item: SourceItem, reader: Reader, config: PreprocessConfig):
    """The BIDS sidecars, the channels they or the file mark bad, and, for ``--montage file``, the
    electrode positions (digitized, and what could not be placed)."""
    try:
        sidecars = read_sidecars(item.channels_tsv, item.eeg_json)
    except SidecarError as err:
        raise StageError("sidecar", str(err)) from err
    names = reader.info.ch_names
    marked = dict.fromkeys([*reader.bad_channels, *sidecars.bad_channels])
    marked_bad = tuple(name for name in marked if name in names)
    digitized, unplaced = reader.digitized, ""
    if config.montage == "file" and item.electrodes_tsv:
        try:  # a BIDS data set's record of where each electrode sat wins over the file's own
            digitized, unplaced = read_electrodes(item.electrodes_tsv, item.coordsystem_json)
        except SidecarError as err:
            raise StageError("sidecar", str(err)) from err
    return sidecars, marked_bad, digitized, unplaced


def _windows(cut: Cutting, reader: Reader, record) -> Iterator[Window | RejectedWindow]:
    """Every window: the labels' unusable ones, those outside the recording, those cut from its spans."""
    item, config, sfreq = cut.item, cut.config, cut.sfreq
    rate_plan = Resampler(sfreq, cut.n_rows, schema.SFREQ).plan
    spans = [Span(seg, rate_plan.output_length(seg.stop - seg.start)) for seg in reader.segments]
    outside = plan_windows(item, spans, config)
    mark_annotated_bad(spans, reader.bad_spans, sfreq)
    record(eeg_seconds=sum(seg.stop - seg.start for seg in reader.segments) / sfreq, segments=len(spans))
    if len(spans) > 1 and not item.windows and not any(span.requests for span in spans):
        longest = max(span.n_out for span in spans) / schema.SFREQ
        raise StageError(
            "windows",
            f"none of its {len(spans)} stretches recorded without a break (epochs, or "
            f"the parts between gaps) is as long as one window: the longest is {longest:.1f} s, "
            f"windows are {config.window_seconds:g} s (--window_seconds)",
        )
    site = cut.ids["site_id"]
    for window in item.windows:
        if window.problem:
            yield RejectedWindow(
                item.path, site, window.offset_s, [window.problem], stage="labels", rules=("bad_label",)
            )
    for start_s, rule, reason in outside:
        yield RejectedWindow(item.path, site, start_s, [reason], rules=(rule,))
    for span in spans:
        if span.requests:
            yield from cut_span(span, cut)


def _harmonizer(reader: Reader, plan, n_rows: int, cleaner=None):
    """``(rows, bad)`` of input samples ``start:stop``: the 19 10-20 channels (ICA-cleaned with
    ``cleaner``) and any ECG row, and where a sample was non-finite (set to 0)."""

    def harmonized(start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        raw = _read(reader, start, stop)
        # A column sum is non-finite if any sample is (or, rarely, on overflow): one cheap pass
        # clears clean chunks, the exact test runs only on suspect ones.
        bad_samples = ~np.isfinite(raw.sum(axis=0))
        if bad_samples.any():
            finite = np.isfinite(raw)
            bad_samples = ~finite.all(axis=0)
            raw = np.where(finite, raw, 0.0).astype(np.float32)
        # EEG and ECG rows go straight into one buffer: no copy of the chunk to concatenate them.
        rows = np.empty((n_rows, raw.shape[1]), dtype=np.float32)
        out = harmonize(raw, reader.info.ch_names, reference="keep", plan=plan, out=rows[: schema.N_CHANS])
        if cleaner is not None:
            rows[: schema.N_CHANS] = _clean(cleaner, out.data, plan)
        if n_rows > schema.N_CHANS:
            rows[schema.N_CHANS] = out.auxiliary["ecg"]
        return rows, bad_samples

    return harmonized


def _clean(cleaner, eeg: np.ndarray, plan) -> np.ndarray:
    """ICA-clean measured channels and carry the removed artifact into interpolated ones."""
    cleaned = cleaner.apply(eeg)
    cmap, matrix = plan
    if matrix is not None and cmap.missing:
        rows = list(cleaner.measured)
        removed = (eeg[rows] - cleaned[rows]).astype(np.float64)
        # The spline's first columns weight the measured canonical channels, in canonical order.
        weights = matrix[:, : len(rows)]
        for k, name in enumerate(cmap.missing):
            cleaned[schema.CHANNELS.index(name)] -= (weights[k] @ removed).astype(np.float32)
    return cleaned
