"""Per-recording processing: the pure core that the Beam job's DoFn wraps.

`process_recording(item, key, config)` reads one recording in bounded chunks and streams it
through harmonize -> resample to 256 Hz -> notch + band-pass -> windows -> quality rules, yielding
three kinds of events:

- `Window`: a kept window as a `WindowRecord` (artifact score from the rules so far; the Beam job
  adds the learned autoencoder score in a later stage);
- `RejectedWindow`: a window the quality rules refused, with reasons (one quarantine line);
- `Outcome`: exactly one per input, last: processed (with counts) or quarantined (with a reason).

Memory is bounded by the chunk length plus one window plus the filters' margins, whatever the
recording's length. Nothing here knows about Beam; everything is unit-testable directly.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import hashlib
import math
import os
import posixpath
import shutil
import tempfile
import zlib
from collections.abc import Iterator

import numpy as np

from eegfm.pipelines import s3_anonymous  # noqa: F401 - workers read recordings: their S3 clients follow --s3_anonymous
from eegfm.pipelines import schema
from eegfm.pipelines.channels import CAP_LAYOUTS
from eegfm.core.config import Config, check_option, check_range
from eegfm.core.logs import get_logger
from eegfm.core.stores import STORE_ERRORS, storage_error
from eegfm.pipelines.deid import pseudonym
from eegfm.pipelines.artifact_ae import band_features_from_psd
from eegfm.pipelines.bids import SidecarError, read_electrodes, read_sidecars
from eegfm.pipelines.bipolar import BipolarReader, bipolar_plan
from eegfm.pipelines.features import compute_features
from eegfm.pipelines.fif_parts import next_part_name
from eegfm.pipelines.filters import FilterConfig, StreamingFilter, design_filters, detect_line_frequency
from eegfm.pipelines.harmonize import (
    HarmonizeError,
    harmonize,
    interpolation_matrix,
    map_channels,
    plan_harmonization,
)
from eegfm.pipelines.ica import fit_ica_cleaner
from eegfm.pipelines.quality import QUALITY_NAMES, QualityConfig, compute_quality_batch, validate_window
from eegfm.pipelines.readers import GZIPPED, Reader, ReaderError, Segment, eeglab_data_file, open_recording
from eegfm.pipelines.resample import TARGET_SFREQ, Resampler
from eegfm.pipelines.sources import LabeledWindow, SourceItem, interval_label

# The TFRecord `quality` vector: the rule metrics, then the learned autoencoder score (-1 until
# the artifact stage fills it in, and in runs with the autoencoder switched off).
AE_NOT_SCORED = -1.0
log = get_logger("process")
RECORD_QUALITY_NAMES = QUALITY_NAMES + ("ae_score",)
# Input samples per channel read at once, whatever chunk_seconds asks: about 7 min at 5 kHz, so
# a high-rate recording's chunk (float64 read, float32 copies) stays a few hundred MB.
MAX_CHUNK_SAMPLES = 2**21


@dataclasses.dataclass
class PreprocessConfig(Config):
    """Everything that changes what the pipeline writes; its hash is stored in every record."""

    window_seconds: float = 10.0
    stride_seconds: float | None = None  # None: window_seconds, windows end to end
    line_freq: str | int | None = "auto"
    l_freq: float = 0.5
    h_freq: float = 70.0
    min_channels: int = 10
    reference: str = "keep"
    # Recordings up to this long are read and filtered in one piece (no overlap re-filtering).
    chunk_seconds: float = 300.0
    line_detect_seconds: float = 120.0
    features: bool = False
    ica: bool = False
    ica_fit_seconds: float = 120.0
    # A window rejected only because a few channels are flat, clipped or beyond max_ptp_uv is
    # kept with those channels interpolated from the others for that window (channel_mask 0).
    repair_channels: int = 3
    # a cap whose labels name no 10-20 site (EGI's E1 ..., EasyCap's numbers), for recordings that
    # use its labels: harmonize.CAP_LAYOUTS; 'auto' recognises BioSemi's ABC labels only
    montage: str = "auto"
    quality: QualityConfig = dataclasses.field(default_factory=QualityConfig)

    def validate(self) -> None:
        check_range("window_seconds", self.window_seconds, 0.5, 3600)
        if self.stride_seconds is None:
            self.stride_seconds = self.window_seconds
        check_range("stride_seconds", self.stride_seconds, 0.5, 3600)
        check_option("line_freq", self.line_freq, ("auto", 50, 60, None))
        check_range("min_channels", self.min_channels, 1, schema.N_CHANS)
        check_option("reference", self.reference, ("keep", "average"))
        check_range("chunk_seconds", self.chunk_seconds, 1.0, 3600)
        check_range("line_detect_seconds", self.line_detect_seconds, 5.0, 3600)
        check_range("ica_fit_seconds", self.ica_fit_seconds, 10.0, 3600)
        check_range("repair_channels", self.repair_channels, 0, schema.N_CHANS - 1)
        check_option("montage", self.montage, ("auto", "file", *CAP_LAYOUTS))
        self.filter_config()  # validates l_freq / h_freq against the 256 Hz Nyquist

    def filter_config(self) -> FilterConfig:
        return FilterConfig(line_freq=self.line_freq, l_freq=self.l_freq, h_freq=self.h_freq)


@dataclasses.dataclass
class Window:
    record: schema.WindowRecord
    source: str
    # Log band powers of the float32 window for the artifact autoencoder, from the same spectrum
    # the quality metrics used (not stored in the TFRecord).
    ae_features: np.ndarray | None = None


@dataclasses.dataclass
class RejectedWindow:
    source: str
    site: str
    window_start_s: float  # NaN where the label's own offset is unusable
    reasons: list[str]
    stage: str = "quality"  # or "labels": the window's label (a csv row) is unusable


@dataclasses.dataclass
class Outcome:
    """How one input file ended; the manifest has one of these per input."""

    source: str
    status: str  # 'processed' | 'quarantined'
    site: str = ""
    stage: str = ""
    reason: str = ""
    windows: int = 0
    labeled_windows: int = 0  # of the windows, those with a label or votes
    rejected_windows: int = 0
    eeg_seconds: float = 0.0
    sfreq_in: float = 0.0
    n_chans_in: int = 0
    interpolated: tuple[str, ...] = ()
    marked_bad: tuple[str, ...] = ()  # recorded channels the file (FIF bads) or a BIDS channels.tsv marks bad
    other_rate: tuple[str, ...] = ()  # EDF signals at another sampling rate than the EEG (left out)
    constant: tuple[str, ...] = ()  # EEG channels that never move (not recorded): left out, interpolated
    split_parts: tuple[str, ...] = ()  # a split FIF recording: the files read, first part first
    segments: int = 0  # stretches recorded back to back: more than 1 where recording paused (EDF+D ...)
    # channels placed by a cap (BioSemi ABC labels, --montage) or by the file's own positions
    # ('file'): the cap, and the electrode recorded as each 10-20 site (the one its label names on
    # BioSemi's 32/64 caps, else the nearest within harmonize.CAP_SITE_TOLERANCE_DEG)
    cap: str = ""
    cap_sites: dict[str, str] = dataclasses.field(default_factory=dict)
    line_freq: int | None = None
    dataset: str = ""
    source_sha256: str = ""
    rejection_rules: dict[str, int] = dataclasses.field(default_factory=dict)
    # windows kept by interpolating a few bad channels in them (repair_channels), and per channel
    repaired_windows: int = 0
    repaired: dict[str, int] = dataclasses.field(default_factory=dict)
    # --ica: components fitted, and the eye (eog) and muscle (emg) ones removed
    ica: dict[str, int] = dataclasses.field(default_factory=dict)
    # a bipolar recording: the derivations its electrodes were reconstructed from (pipelines.bipolar),
    # those electrodes, the derivations of chains not connected to them (left out) and those
    # constant from start to end (flat: not used)
    bipolar: dict[str, list[str]] = dataclasses.field(default_factory=dict)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


class StageError(Exception):
    """Ends a recording with a quarantine outcome at a named stage."""

    def __init__(self, stage: str, reason: str):
        super().__init__(reason)
        self.stage, self.reason = stage, reason


class _Hashing:
    """A file object's reads, hashed as they pass."""

    def __init__(self, fileobj, digest):
        self._fileobj, self._digest = fileobj, digest

    def read(self, size: int = -1) -> bytes:
        block = self._fileobj.read(size)
        self._digest.update(block)
        return block


def _copy(src, dst, digest, gzipped: bool) -> None:
    """``src`` to ``dst`` in blocks, ``digest`` over the bytes as stored; gunzipped on the way."""
    source = _Hashing(src, digest)
    if not gzipped:
        shutil.copyfileobj(source, dst, 1 << 20)
        return
    try:
        with gzip.GzipFile(fileobj=source, mode="rb") as unzipped:
            shutil.copyfileobj(unzipped, dst, 1 << 20)
    except (EOFError, zlib.error, gzip.BadGzipFile) as err:
        raise StageError("read", f"not a valid gzip file ({' '.join(str(err).split())[:200]})") from None
    while source.read(1 << 20):  # the digest covers the whole file, whatever gzip left unread
        pass


@contextlib.contextmanager
def localized(path: str) -> Iterator[tuple[str, str]]:
    """A local path for `path` (remote files are streamed to a temp file, a gzipped EDF/BDF is
    decompressed into one) and the SHA-256 of the file as stored."""
    from apache_beam.io.filesystem import CompressionTypes
    from apache_beam.io.filesystems import FileSystems

    raw = CompressionTypes.UNCOMPRESSED  # as stored: a .fif.gz stays gzip, as on local disk
    if path.lower().endswith(".mff") and ("://" in path or os.path.isdir(path)):
        with _localized_folder(path) as found:
            yield found
        return
    gzipped = path.lower().endswith(GZIPPED)
    if "://" not in path and not gzipped:
        with open(path, "rb") as fh:  # file_digest reads into one buffer: 30-50% faster than read()
            sha = hashlib.file_digest(fh, "sha256").hexdigest()
        yield path, sha
        return
    digest = hashlib.sha256()
    suffix = "".join(os.path.basename(path).partition(".")[1:]) or ".bin"
    if gzipped:
        suffix = suffix[:-len(".gz")]
    with tempfile.TemporaryDirectory(prefix="eegfm-") as tmp:
        # A split FIF keeps its name: a part may name the next only by number, relative to its own;
        # so does an EEGLAB .set, whose data file MNE looks for under the .set's own name too.
        fif = path.lower().endswith((".fif", ".fif.gz"))
        named = fif or path.lower().endswith(".set")
        local = os.path.join(tmp, os.path.basename(path) if named else "recording." + suffix.lstrip("."))
        opened = open(path, "rb") if "://" not in path else FileSystems.open(path, compression_type=raw)
        with opened as src, open(local, "wb") as dst:
            _copy(src, dst, digest, gzipped)
        # BrainVision/EEGLAB headers name companion files next to them; fetch those too.
        companions = _companions(path, local)
        if path.lower().endswith(".set") and not FileSystems.exists(companions[0]):
            companions = _renamed_eeglab_data(path, local)
        for companion in companions:
            if FileSystems.exists(companion):
                target = os.path.join(tmp, os.path.basename(companion))
                with FileSystems.open(companion, compression_type=raw) as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst)
        if fif:
            _fetch_split_parts(path, local)
        yield local, digest.hexdigest()


@contextlib.contextmanager
def _localized_folder(path: str) -> Iterator[tuple[str, str]]:
    """A recording that is a folder (EGI's MFF): a local one as it is, a remote one fetched file by
    file into one of the same name. The SHA-256 covers each file's name and bytes, so both agree."""
    from apache_beam.io.filesystem import CompressionTypes
    from apache_beam.io.filesystems import FileSystems

    from eegfm.core.stores import match_below

    top = path.rstrip("/")
    digest = hashlib.sha256()
    if "://" not in path:
        for name in sorted(os.path.relpath(os.path.join(folder, f), top).replace(os.sep, "/")
                           for folder, _, files in os.walk(top) for f in files):
            with open(os.path.join(top, name), "rb") as fh:
                digest.update(name.encode() + b"\0" + hashlib.file_digest(fh, "sha256").digest())
        yield top, digest.hexdigest()
        return
    with tempfile.TemporaryDirectory(prefix="eegfm-") as tmp:
        local = os.path.join(tmp, posixpath.basename(top))
        for meta in sorted(match_below(top, "**"), key=lambda m: m.path):
            name = meta.path[len(top) + 1:]
            target = os.path.join(local, *name.split("/"))
            os.makedirs(os.path.dirname(target), exist_ok=True)
            one = hashlib.sha256()
            with FileSystems.open(meta.path, compression_type=CompressionTypes.UNCOMPRESSED) as src, \
                    open(target, "wb") as dst:
                _copy(src, dst, one, False)
            digest.update(name.encode() + b"\0" + one.digest())
        if not os.path.isdir(local):
            raise StageError("read", "an EGI MFF recording: expected a folder of files; found none under it")
        yield local, digest.hexdigest()


def _fetch_split_parts(path: str, local: str) -> None:
    """The later parts of the split FIF recording ``path`` (remote), beside its local copy
    ``local``, as MNE reads them from beside the first; stops at a part that is not there."""
    from apache_beam.io.filesystem import CompressionTypes
    from apache_beam.io.filesystems import FileSystems

    current = local
    while (name := next_part_name(current)) is not None:
        target = os.path.join(os.path.dirname(local), name)
        remote = posixpath.join(posixpath.dirname(path), name)
        if os.path.exists(target) or not FileSystems.exists(remote):
            return  # a loop of names, or a missing part: MNE's reader names it
        with FileSystems.open(remote, compression_type=CompressionTypes.UNCOMPRESSED) as src, \
                open(target, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        current = target


def _companions(path: str, header: str | None = None) -> list[str]:
    """The files beside ``path`` its reader opens too. A BrainVision header names its data and
    marker files (``header``: a local copy of it), which keep their names when the header is
    renamed; without those lines, the header's own name with .eeg/.vmrk."""
    base, ext = os.path.splitext(path)
    ext = ext.lower()
    if ext == ".set":
        return [base + ".fdt"]
    if ext != ".vhdr":
        return []
    named = _brainvision_files(header) if header else {}
    folder = posixpath.dirname(path)
    return [posixpath.join(folder, named[key]) if key in named else base + suffix
            for key, suffix in (("MarkerFile", ".vmrk"), ("DataFile", ".eeg"))]


def _renamed_eeglab_data(path: str, local: str) -> list[str]:
    """The data file of the remote EEGLAB ``path`` that is not ``<name>.fdt``: a .set renamed after
    it was saved still names its old .fdt (``EEG.data``), where MNE looks first. The .set (``local``,
    its copy) is opened only where ``path``'s folder holds some .fdt: a .set without one holds its
    data itself, and may be large."""
    from eegfm.core.stores import match_below

    if not match_below(posixpath.dirname(path), "*.fdt", limit=1):
        return []
    name = eeglab_data_file(local)
    return [posixpath.join(posixpath.dirname(path), name)] if name else []


def _brainvision_files(header: str) -> dict[str, str]:
    """``{"DataFile": name, "MarkerFile": name}`` as the header's [Common Infos] gives them (base
    names only: a header never fetches a file from another folder)."""
    named = {}
    with contextlib.suppress(OSError):
        with open(header, encoding="latin-1") as fh:
            for line in fh:
                key, sep, value = line.strip().partition("=")
                if sep and key in ("DataFile", "MarkerFile") and value.strip():
                    named[key] = posixpath.basename(value.strip().replace("\\", "/"))
    return named


@dataclasses.dataclass(frozen=True)
class _Request:
    start: int  # output sample index at 256 Hz, from the start of its span
    n_times: int
    label: int
    votes: tuple[float, ...]
    task: str
    marked_bad: str = ""  # why the recording's own annotations reject it, if they do


@dataclasses.dataclass(frozen=True)
class _Span:
    """A reader `Segment` at 256 Hz: output samples [0, n_out) from ``onset_s``, and the windows
    to cut from it."""

    segment: Segment
    n_out: int
    requests: list[_Request] = dataclasses.field(default_factory=list)

    @property
    def onset_s(self) -> float:
        return self.segment.onset_s

    @property
    def end_s(self) -> float:
        return self.onset_s + self.n_out / TARGET_SFREQ


def _plan_windows(item: SourceItem, spans: list[_Span], config: PreprocessConfig) -> list[tuple[float, str, str]]:
    """Fill each span's requests; return the windows that fit in none as (start_s, rule, reason).
    Labeled windows with a ``problem`` are left out (``_label_problems``) and cut alone; a
    recording whose label rows were all unusable gets none, unless it has a label of its own
    (``recording_label``): then windows slide over each span."""
    usable = [w for w in item.windows if not w.problem]
    if not (usable or (item.windows and item.recording_label < 0)):
        size = int(round(config.window_seconds * TARGET_SFREQ))
        stride = int(round(config.stride_seconds * TARGET_SFREQ))
        for span in spans:
            for s in range(0, span.n_out - size + 1, stride):
                label = item.recording_label
                if item.intervals:  # TUSZ: the label of the stretch the window lies mostly in
                    start_s = span.onset_s + s / TARGET_SFREQ
                    label = interval_label(start_s, start_s + size / TARGET_SFREQ, item.intervals)
                span.requests.append(_Request(s, size, label, (), item.task if label >= 0 else ""))
        return []
    outside = []
    for w in usable:
        n_times = int(round(w.duration_s * TARGET_SFREQ))
        placed = _placed(w.offset_s, n_times, spans, 0) or _placed(w.offset_s, n_times, spans, w.slack_s)
        if placed is not None:
            span, start = placed
            span.requests.append(_Request(start, n_times, w.label, tuple(w.votes), w.task or item.task))
            continue
        where = f"window [{w.offset_s:.2f} s, {w.offset_s + n_times / TARGET_SFREQ:.2f} s)"
        stops = [(a.end_s, b.onset_s) for a, b in zip(spans, spans[1:])
                 if w.offset_s < b.onset_s and a.end_s < w.offset_s + w.duration_s]
        if stops:
            (gap_start, gap_stop), end = stops[0], w.offset_s + n_times / TARGET_SFREQ
            verb = "lies in" if gap_start <= w.offset_s and end <= gap_stop else "spans"
            outside.append((w.offset_s, "recording_gap", f"{where} {verb} a gap in the recording (nothing recorded "
                            f"from {gap_start:.2f} s to {gap_stop:.2f} s)"))
        else:
            outside.append((w.offset_s, "outside_recording", f"{where} lies outside the recording "
                            f"({spans[0].onset_s:.0f} s, {spans[-1].end_s:.2f} s)"))
    for span in spans:
        span.requests.sort(key=lambda r: (r.start, r.n_times))
    return outside


def _mark_annotated_bad(spans: list[_Span], bad_spans: tuple[tuple[int, int], ...], sfreq: float) -> None:
    """Flag the requests whose input samples touch a span the recording's annotations mark bad.
    The annotation's text is not repeated: it is free text, and may name the patient."""
    if not bad_spans:
        return
    starts = np.array([a for a, _ in bad_spans])
    stops = np.array([b for _, b in bad_spans])
    for span in spans:
        for k, req in enumerate(span.requests):
            first = span.segment.start + math.floor(req.start * sfreq / TARGET_SFREQ)
            last = span.segment.start + math.ceil((req.start + req.n_times) * sfreq / TARGET_SFREQ)
            hit = np.flatnonzero((starts < last) & (stops > first))
            if hit.size:
                a, b = bad_spans[int(hit[0])]
                where = f"{a / sfreq:.2f} s" if b - a == 1 else f"[{a / sfreq:.2f} s, {b / sfreq:.2f} s)"
                more = f" (and {hit.size - 1} more)" if hit.size > 1 else ""
                span.requests[k] = dataclasses.replace(
                    req, marked_bad=f"annotated_bad: the recording's annotations mark {where} bad{more}")


def _placed(offset_s: float, n_times: int, spans: list[_Span], slack_s: float) -> tuple[_Span, int] | None:
    """The span a labeled window lies in and its start there; one overhanging a span's edge by at
    most ``slack_s`` moves inside it (a TUEV event near the recording's start keeps its 5 s)."""
    slack = int(round(slack_s * TARGET_SFREQ))
    for span in spans:
        start = _local_start(offset_s, span)
        fitted = min(max(start, 0), span.n_out - n_times)
        if fitted >= 0 and abs(fitted - start) <= slack:
            return span, fitted
    return None


def _local_start(offset_s: float, span: _Span) -> int:
    return int(round((offset_s - span.onset_s) * TARGET_SFREQ))


# Stretches the constant-channel test reads, spread over the recording: a channel must be still in
# every one, so a dropout (all channels still for a second or two) or an electrode that comes
# loose for a while is not taken for one that was never recorded.
_PROBES, _PROBE_SECONDS = 8, 2.0


def constant_channels(reader: Reader, cmap, tol_uv: float) -> tuple[str, ...]:
    """The EEG channels whose peak-to-peak stays within ``tol_uv`` in every probe stretch: not
    recorded, but written anyway (an export's montage template fills unconnected electrodes with
    zeros). Interpolated like a missing channel, they would otherwise make every window flat."""
    return constant_rows(reader, sorted({*cmap.canonical.values(), *cmap.extra_eeg.values()}), tol_uv)


def constant_rows(reader: Reader, rows: list[int], tol_uv: float) -> tuple[str, ...]:
    """The names of the channels ``rows`` that stay within ``tol_uv`` in every probe stretch."""
    n, width = reader.info.n_times, max(1, int(_PROBE_SECONDS * reader.info.sfreq))
    if not rows:
        return ()
    still = np.ones(len(rows), dtype=bool)
    for start in sorted({int(s) for s in np.linspace(0, max(0, n - width), _PROBES)}):
        piece = np.nan_to_num(_read(reader, start, min(n, start + width))[rows])
        still &= (piece.max(axis=1) - piece.min(axis=1)) <= tol_uv
        if not still.any():
            return ()
    return tuple(reader.info.ch_names[rows[i]] for i in np.flatnonzero(still))


def _ids(item: SourceItem, reader: Reader, key: bytes, sha: str) -> dict[str, str]:
    subject_raw = item.subject_key or reader.identity_key or f"file:{sha}"
    return {
        "site_id": pseudonym(key, "site", item.site),
        "subject_id": pseudonym(key, "subject", subject_raw),
        "session_id": pseudonym(key, "session", f"{subject_raw}\x00{item.session_key}")
        if item.session_key else "",
        "recording_id": pseudonym(key, "recording", sha),
    }


def _read_errors() -> tuple[type[BaseException], ...]:
    """What reading a file raises for the file's or its store's reasons: OSError, GCS's errors and
    Beam's S3ClientError (an object that answers 403 Forbidden, say), which is no OSError."""
    try:
        from apache_beam.io.aws.clients.s3.messages import S3ClientError
    except ImportError:
        return STORE_ERRORS
    return (*STORE_ERRORS, S3ClientError)


READ_ERRORS = _read_errors()


def process_recording(
    item: SourceItem, key: bytes, config: PreprocessConfig, config_hash: str
) -> Iterator[Window | RejectedWindow | Outcome]:
    """Stream one input file to windows; always ends with exactly one `Outcome`. A recording that
    fails part-way ends quarantined with ``windows`` 0: the caller drops the windows it yielded."""
    # The site is known before the file is opened: a quarantined input counts against its site.
    outcome = Outcome(source=item.path, status="quarantined", dataset=item.dataset,
                      site=pseudonym(key, "site", item.site))
    try:
        if item.label_problem:
            raise StageError("labels", item.label_problem)
        with localized(item.path) as (local, sha):
            outcome.source_sha256 = sha
            with _open(local, item.path) as reader:
                yield from _stream(item, reader, key, config, config_hash, sha, outcome)
        outcome.status = "processed" if outcome.windows else "quarantined"
        if not outcome.windows and not outcome.reason:
            outcome.stage = "windows"
            rules = ", ".join(f"{k} x{v}" for k, v in sorted(outcome.rejection_rules.items()))
            outcome.reason = f"{os.path.basename(item.path)}: " + (
                f"no usable windows: all {outcome.rejected_windows} windows rejected ({rules})"
                if outcome.rejected_windows
                else f"recording shorter than one window ({outcome.eeg_seconds:.1f} s of EEG)"
            )
    except StageError as err:
        outcome.stage, outcome.reason = err.stage, f"{os.path.basename(item.path)}: {err.reason}"
    except READ_ERRORS as err:
        detail = storage_error(err) if getattr(err, "exception_details", None) or not isinstance(err, OSError) \
            else err  # BeamIOError, a store's own error
        outcome.stage, outcome.reason = "read", f"{os.path.basename(item.path)}: cannot read file ({detail})"
    except Exception as err:  # dead letter: one recording that breaks a library must not stop the run
        log.exception("unexpected failure on %s", item.path)
        outcome.status, outcome.stage = "quarantined", "unexpected"
        outcome.reason = (f"{os.path.basename(item.path)}: unexpected {type(err).__name__} "
                          f"({' '.join(str(err).split())[:300]}); see the job log for the traceback")
    if outcome.status != "processed":
        outcome.windows = outcome.labeled_windows = outcome.repaired_windows = 0
        outcome.repaired = {}
    yield outcome


@contextlib.contextmanager
def _open(local: str, original: str) -> Iterator[Reader]:
    try:
        reader = open_recording(local)
    except ReaderError as err:
        raise StageError("read", str(err).split(": ", 1)[-1]) from err
    try:
        yield reader
    finally:
        reader.close()


def _event_windows(item: SourceItem, events) -> tuple[LabeledWindow, ...]:
    """A labeled window from each of the recording's annotations that ``item.event_labels`` names."""
    labels = {code.lower(): label for code, label in item.event_labels}
    windows = tuple(LabeledWindow(onset, item.event_window_s, labels[text.strip().lower()], task=item.task)
                    for onset, _, text in events if text.strip().lower() in labels)
    if not windows:
        raise StageError("labels", f"no annotation {' or '.join(code for code, _ in item.event_labels)} (it has "
                         f"{len(events)} other{'s' * (len(events) != 1)}): expected the data set's event codes, "
                         "which label its windows")
    return windows


def _referential(reader: Reader, outcome: Outcome, config: PreprocessConfig, digitized) -> Reader:
    """A bipolar recording's reader as the electrodes its derivations give (``pipelines.bipolar``),
    where its channels alone place fewer than ``min_channels`` 10-20 sites; else the reader."""
    names = reader.info.ch_names
    plan = bipolar_plan(names, exclude=outcome.marked_bad)
    if plan is None:
        return reader
    # A flat derivation (an unplugged pair, a template's zeros) would tie its two electrodes together.
    flat = constant_rows(reader, list(plan.derivations), config.quality.flat_tol_uv)
    if flat:
        plan = bipolar_plan(names, exclude=[*outcome.marked_bad, *flat])
        if plan is None:
            return reader
    try:
        if len(map_channels(names, config.montage, digitized).canonical) >= config.min_channels:
            return reader
    except HarmonizeError:  # the harmonizer reports it, on the channels as recorded
        return reader
    outcome.bipolar = {**plan.as_dict(names), "flat": list(flat)}
    sites = map_channels(plan.electrodes).canonical
    if len(sites) < config.min_channels:
        chains = "; ".join(", ".join(chain) for chain in plan.chains)
        raise StageError("harmonize", (
            f"a bipolar montage ({len(plan.derivations) + len(plan.left_out)} derivations such as "
            f"{', '.join(names[i] for i in plan.derivations[:3])}): its derivations form {len(plan.chains)} "
            f"chains with no electrode in common ({chains}), each against a reference of its own, so only the "
            f"largest gives electrode potentials: {len(sites)} of the 19 10-20 sites "
            f"({', '.join(sorted(sites, key=schema.CHANNELS.index))}); need at least {config.min_channels} "
            "(--min_channels). A derivation joining the chains (the double banana's T7-FT9, FT9-FT10, FT10-T8 "
            "bridge) or a referential export would give them all"))
    return BipolarReader(reader, plan)


def _read(reader: Reader, start: int, stop: int) -> np.ndarray:
    try:
        return reader.read(start, stop, check_finite=False)
    except ReaderError as err:
        raise StageError("read", str(err).split(": ", 1)[-1]) from err


def _stream(item, reader, key, config, config_hash, sha, outcome) -> Iterator[Window | RejectedWindow]:
    info = reader.info
    outcome.sfreq_in, outcome.n_chans_in = info.sfreq, len(info.ch_names)
    outcome.other_rate = tuple(getattr(reader, "skipped", ()))
    outcome.split_parts = tuple(getattr(reader, "split_parts", ()))
    try:
        sidecars = read_sidecars(item.channels_tsv, item.eeg_json)
    except SidecarError as err:
        raise StageError("sidecar", str(err)) from err
    marked = dict.fromkeys([*getattr(reader, "bad_channels", ()), *sidecars.bad_channels])
    outcome.marked_bad = tuple(name for name in marked if name in info.ch_names)
    digitized, unplaced = getattr(reader, "digitized", None), ""
    if config.montage == "file" and item.electrodes_tsv:
        try:  # a BIDS data set's record of where each electrode sat wins over the file's own
            digitized, unplaced = read_electrodes(item.electrodes_tsv, item.coordsystem_json)
        except SidecarError as err:
            raise StageError("sidecar", str(err)) from err
    reader = _referential(reader, outcome, config, digitized)
    info = reader.info
    if item.event_labels:
        item = dataclasses.replace(item, windows=_event_windows(item, reader.events))
    try:
        cmap = map_channels(info.ch_names, config.montage, digitized)
        outcome.constant = constant_channels(reader, cmap, config.quality.flat_tol_uv)
        if outcome.constant and len(outcome.constant) == len({*cmap.canonical.values(), *cmap.extra_eeg.values()}):
            raise StageError("quality", f"all {len(outcome.constant)} EEG channels are constant from start to end "
                             f"(peak-to-peak within {config.quality.flat_tol_uv:g} uV wherever probed): a flat "
                             "recording, nothing was recorded")
        plan = plan_harmonization(info.ch_names, min_channels=config.min_channels, exclude=outcome.marked_bad,
                                  constant=outcome.constant, montage=config.montage, cmap=cmap)
    except HarmonizeError as err:
        empty = getattr(reader, "empty_columns", ())
        note = f"; columns entirely NaN (not recorded): {', '.join(empty)}" if empty else ""
        if outcome.other_rate:
            note += f"; signals at another sampling rate, left out: {', '.join(outcome.other_rate)}"
        if unplaced:
            note += f"; {unplaced}"
        raise StageError("harmonize", f"{err}{note}") from err
    cmap = plan[0]
    outcome.interpolated = cmap.missing
    if cmap.cap:
        outcome.cap = "file" if cmap.cap.startswith("file-") else cmap.cap  # 'file': its digitized positions
        outcome.cap_sites = {site: info.ch_names[i] for site, i in cmap.canonical.items()}
    ids = _ids(item, reader, key, sha)
    outcome.site = ids["site_id"]
    # The data set's own sidecar (participants.tsv, subject-info.csv) wins over file headers.
    clinical = {
        "age": item.age if item.age is not None else info.clinical.age,
        "sex": item.sex or info.clinical.sex,
    }
    has_ecg = "ecg" in cmap.auxiliary
    n_rows = schema.N_CHANS + int(has_ecg)

    cleaner = None

    def harmonized(start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        raw = _read(reader, start, stop)
        # A column sum is NaN or infinite if any of its samples is (or, rarely, if finite samples
        # overflow): one cheap pass finds clean chunks, the exact test runs only on suspect ones.
        bad_samples = ~np.isfinite(raw.sum(axis=0))
        if bad_samples.any():
            finite = np.isfinite(raw)
            bad_samples = ~finite.all(axis=0)
            raw = np.where(finite, raw, 0.0).astype(np.float32)
        # EEG and ECG rows go straight into one buffer: concatenating them after was a copy of
        # the whole chunk at the input rate.
        rows = np.empty((n_rows, raw.shape[1]), dtype=np.float32)
        out = harmonize(raw, info.ch_names, reference="keep", plan=plan, out=rows[: schema.N_CHANS])
        eeg = out.data if cleaner is None else _clean(cleaner, out.data, plan)
        if eeg is not out.data:
            rows[: schema.N_CHANS] = eeg
        if has_ecg:
            rows[schema.N_CHANS] = out.auxiliary["ecg"]
        return rows, bad_samples

    if config.ica:
        n_fit = min(info.n_times, int(config.ica_fit_seconds * info.sfreq))
        try:
            cleaner = fit_ica_cleaner(harmonized(0, n_fit)[0][: schema.N_CHANS], info.sfreq,
                                      _channel_mask(item, outcome))
        except ValueError as err:
            raise StageError("ica", str(err)) from err
        outcome.ica = {"components": cleaner.n_components, "eog_removed": len(cleaner.excluded_eog),
                       "emg_removed": len(cleaner.excluded_emg)}

    line_freq = config.line_freq
    if line_freq == "auto" and sidecars.line_freq is not None:  # the data set's own record of its mains
        line_freq = sidecars.line_freq
    elif line_freq == "auto":
        n_detect = min(info.n_times, int(config.line_detect_seconds * info.sfreq))
        line_freq = detect_line_frequency(harmonized(0, n_detect)[0][: schema.N_CHANS], info.sfreq)
    outcome.line_freq = line_freq
    design = design_filters(TARGET_SFREQ, config.filter_config(), line_freq)
    rate_plan = Resampler(info.sfreq, n_rows).plan
    spans = [_Span(seg, rate_plan.output_length(seg.stop - seg.start)) for seg in reader.segments]
    outside = _plan_windows(item, spans, config)
    _mark_annotated_bad(spans, reader.bad_spans, info.sfreq)
    outcome.eeg_seconds = sum(seg.stop - seg.start for seg in reader.segments) / info.sfreq
    outcome.segments = len(spans)
    if len(spans) > 1 and not item.windows and not any(span.requests for span in spans):
        longest = max(span.n_out for span in spans) / TARGET_SFREQ
        raise StageError("windows", f"none of its {len(spans)} stretches recorded without a break (epochs, or "
                         f"the parts between gaps) is as long as one window: the longest is {longest:.1f} s, "
                         f"windows are {config.window_seconds:g} s (--window_seconds)")
    for window in item.windows:
        if window.problem:
            outcome.rejected_windows += 1
            outcome.rejection_rules["bad_label"] = outcome.rejection_rules.get("bad_label", 0) + 1
            yield RejectedWindow(item.path, ids["site_id"], window.offset_s, [window.problem], stage="labels")
    for start_s, rule, reason in outside:
        outcome.rejected_windows += 1
        outcome.rejection_rules[rule] = outcome.rejection_rules.get(rule, 0) + 1
        yield RejectedWindow(item.path, ids["site_id"], start_s, [reason])
    for span in spans:
        if span.requests:
            yield from _stream_span(span, item, reader, harmonized, design, n_rows, ids, clinical, config,
                                    config_hash, sha, has_ecg, outcome)


def _stream_span(span, item, reader, harmonized, design, n_rows, ids, clinical, config, config_hash, sha,
                 has_ecg, outcome) -> Iterator[Window | RejectedWindow]:
    """Resample, filter and cut one span: its filters start afresh, as at a recording's start,
    so no window mixes samples from either side of a gap."""
    info, seg, requests = reader.info, span.segment, span.requests
    resampler = Resampler(info.sfreq, n_rows)
    filt = StreamingFilter(design, n_rows)
    raw_buf = _Rolling(n_rows)  # resampled, before filtering (for clipping/flat checks)
    bad_buf = _Rolling(1)  # 1 where an input sample was non-finite
    out_buf = _Rolling(n_rows)
    chunk = max(1, min(int(config.chunk_seconds * info.sfreq), MAX_CHUNK_SAMPLES))
    next_req = 0
    for start in range(seg.start, seg.stop, chunk):
        stop = min(seg.stop, start + chunk)
        data, bad = harmonized(start, stop)
        last = stop >= seg.stop
        block = resampler.finish(data) if last else resampler.push(data)
        raw_buf.append(block)
        out_buf.append(filt.finish(block) if last else filt.push(block))
        bad_buf.append(_resample_mask(bad, start - seg.start, stop - seg.start, info.sfreq, bad_buf.end,
                                      block.shape[1])[None])
        ready = []
        while next_req < len(requests) and requests[next_req].start + requests[next_req].n_times <= out_buf.end:
            ready.append(requests[next_req])
            next_req += 1
        for batch in _quality_batches(ready):
            yield from _make_windows(item, span, batch, raw_buf, out_buf, bad_buf, ids, clinical, config,
                                     config_hash, sha, has_ecg, outcome)
        keep_from = requests[next_req].start if next_req < len(requests) else out_buf.end
        for buf in (raw_buf, out_buf, bad_buf):
            buf.drop_before(keep_from)


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


def _resample_mask(bad: np.ndarray, start: int, stop: int, sfreq: float, out_start: int, n: int) -> np.ndarray:
    """Mark output samples whose time falls on a non-finite input sample (nearest in time)."""
    if n == 0 or not bad.any():
        return np.zeros(n, dtype=bool)
    t_out = (out_start + np.arange(n)) / TARGET_SFREQ
    idx = np.clip(np.round(t_out * sfreq).astype(np.int64) - start, 0, stop - start - 1)
    return bad[idx]


class _Rolling:
    """A growing 2-D buffer addressed by global sample index, trimmed from the left."""

    def __init__(self, n_rows: int):
        self.base = 0
        self.data = np.zeros((n_rows, 0), dtype=np.float32)

    @property
    def end(self) -> int:
        return self.base + self.data.shape[1]

    def append(self, block: np.ndarray) -> None:
        """Add ``block`` after the end; an empty buffer adopts it (the caller never writes to it
        again), which saves copying a whole recording that arrives in one chunk."""
        if not block.shape[1]:
            return
        block = block.astype(self.data.dtype, copy=False)
        self.data = block if not self.data.shape[1] else np.concatenate([self.data, block], axis=1)

    def take(self, start: int, n: int) -> np.ndarray:
        return self.data[:, start - self.base: start - self.base + n]

    def drop_before(self, index: int) -> None:
        cut = max(0, min(index, self.end) - self.base)
        if cut:
            self.data = self.data[:, cut:]
            self.base += cut


# Windows scored together: shares compute_quality_batch's per-call work, bounded in memory
# (32 windows of 50 s are 24 MB of float32).
_QUALITY_BATCH = 32


def _quality_batches(requests: list) -> Iterator[list]:
    """Consecutive runs of equally long requests, at most _QUALITY_BATCH each."""
    batch: list = []
    for req in requests:
        if batch and (len(batch) == _QUALITY_BATCH or req.n_times != batch[0].n_times):
            yield batch
            batch = []
        batch.append(req)
    if batch:
        yield batch


def _make_windows(item, span, batch, raw_buf, out_buf, bad_buf, ids, clinical, config, config_hash, sha,
                  has_ecg, outcome):
    mask = _channel_mask(item, outcome)
    # The buffers hold each electrode against the recording's own reference: flat and clipped
    # electrodes are found there (an average reference would spread them over every channel), and
    # the average reference, linear like the filters, is taken per window after any repair.
    filtered = np.stack([out_buf.take(r.start, r.n_times) for r in batch])
    unfiltered = np.stack([raw_buf.take(r.start, r.n_times)[: schema.N_CHANS] for r in batch])
    referenced = _referenced(filtered, config)
    reports = compute_quality_batch(referenced[:, : schema.N_CHANS], TARGET_SFREQ, config.quality,
                                    channel_mask=mask, unfiltered=unfiltered)
    for req, window, own, raw, report in zip(batch, referenced, filtered, unfiltered, reports):
        n_bad = int(bad_buf.take(req.start, req.n_times).sum())
        window_mask = mask
        if config.repair_channels and not req.marked_bad and not n_bad:
            repaired = repair_window(own, raw, report, mask, config)
            if repaired is not None:
                window, window_mask, report = repaired
                outcome.repaired_windows += 1
                for name in (c for c, was, now in zip(schema.CHANNELS, mask, window_mask) if was and not now):
                    outcome.repaired[name] = outcome.repaired.get(name, 0) + 1
        yield _make_window(item, span, req, window, report, n_bad, window_mask, ids, clinical, config,
                           config_hash, sha, has_ecg, outcome)


# Window rules a few channels can fire on their own, with the per-channel metric that says which.
_CHANNEL_RULES = {
    "flat": ("channel_flat_fraction", "max_flat_fraction"),
    "clipping": ("channel_clip_fraction", "max_clip_fraction"),
    "high_amplitude": ("channel_ptp_uv", "max_ptp_uv"),
}


def repair_window(window: np.ndarray, unfiltered: np.ndarray, report, mask: np.ndarray,
                  config: PreprocessConfig):
    """A rejected window (``window``, ``unfiltered``: its electrodes against the recording's own
    reference) whose only fault is at most ``repair_channels`` flat, clipped or out-of-range
    channels, with those channels (and any the recording lacks) interpolated from the window's
    other measured channels: (window as written, channel_mask, quality report), or None when it
    cannot be saved that way. Interpolation is spatial and filtering temporal, both linear, so
    interpolating the filtered window equals filtering an interpolated recording; an electrode
    that comes loose for a minute costs its own channel for that minute, not the whole minute."""
    quality = config.quality
    keep, reasons = validate_window(report, quality)
    fired = {reason.split(":", 1)[0] for reason in reasons}  # rule names (or artifact_score)
    if keep or not fired <= set(_CHANNEL_RULES):
        return None
    measured = mask.astype(bool)
    bad = np.zeros_like(measured)
    for rule in fired:
        metric, field = _CHANNEL_RULES[rule]
        bad |= measured & (np.asarray(getattr(report, metric)) >= getattr(quality, field))
    new_mask = (measured & ~bad).astype(mask.dtype)
    if not 0 < bad.sum() <= config.repair_channels or new_mask.sum() < config.min_channels:
        return None
    sources, targets = np.flatnonzero(new_mask), np.flatnonzero(new_mask == 0)
    weights = interpolation_matrix(tuple(schema.CHANNELS[i] for i in sources),
                                   tuple(schema.CHANNELS[i] for i in targets))
    window, unfiltered = window.copy(), unfiltered.copy()
    for rows in (window, unfiltered):  # the ECG row, if any, stays as recorded
        rows[targets] = (weights @ rows[sources].astype(np.float64)).astype(np.float32)
    window = _referenced(window, config)
    fixed = compute_quality_batch(window[None, : schema.N_CHANS], TARGET_SFREQ, quality, channel_mask=new_mask,
                                  unfiltered=unfiltered[None])[0]
    return (window, new_mask, fixed) if validate_window(fixed, quality)[0] else None


def _referenced(windows: np.ndarray, config: PreprocessConfig) -> np.ndarray:
    """``windows`` (..., rows, n_times) with the 19 EEG rows against their average where
    ``--reference average`` asks for it (a copy); the ECG row, if any, is left alone."""
    if config.reference != "average":
        return windows
    out = windows.copy()
    eeg = out[..., : schema.N_CHANS, :]
    eeg -= eeg.mean(axis=-2, keepdims=True)
    return out


def _make_window(item, span, req, filtered, report, n_bad, mask, ids, clinical, config, config_hash, sha,
                 has_ecg, outcome):
    eeg = filtered[: schema.N_CHANS]
    # On the recording's time axis: after a gap, a window starts where it was recorded.
    start_index = int(round(span.onset_s * TARGET_SFREQ)) + req.start
    window_start_s = span.onset_s + req.start / TARGET_SFREQ
    keep, reasons = validate_window(report, config.quality)
    if req.marked_bad:
        keep, reasons = False, [req.marked_bad] + reasons
    if n_bad:
        keep = False
        reasons = [f"non_finite: {n_bad} samples were NaN or infinite in the source"] + reasons
    if keep and float(np.abs(eeg).max()) >= 65504:
        keep, reasons = False, [f"amplitude: {float(np.abs(eeg).max()):.4g} uV exceeds the float16 range"]
    if not keep:
        outcome.rejected_windows += 1
        for reason in reasons:
            rule = reason.split(":", 1)[0]
            outcome.rejection_rules[rule] = outcome.rejection_rules.get(rule, 0) + 1
        return RejectedWindow(item.path, ids["site_id"], window_start_s, reasons)
    outcome.windows += 1
    outcome.labeled_windows += int(req.label >= 0 or bool(req.votes))
    return Window(schema.WindowRecord(
        eeg=eeg,
        channel_mask=mask,
        site_id=ids["site_id"], subject_id=ids["subject_id"], session_id=ids["session_id"],
        recording_id=ids["recording_id"],
        window_start_s=window_start_s,
        window_start_index=start_index,
        quality=np.append(report.vector(), np.float32(AE_NOT_SCORED)),
        artifact_score=float(report.artifact_score),
        label=req.label,
        votes=np.asarray(req.votes, dtype=np.float32),
        task=req.task,
        age=math.nan if clinical["age"] is None else clinical["age"],
        sex=clinical["sex"],
        extra=(compute_features(eeg, TARGET_SFREQ, spectrum=report.spectrum) if config.features
               else np.zeros(0, np.float32)),
        ecg=filtered[schema.N_CHANS] if has_ecg else None,
        corpus_split=item.corpus_split,
        source_sha256=sha,
        config_hash=config_hash,
    ), item.path, band_features_from_psd(report.spectrum.freqs, report.spectrum.psd).astype(np.float32))


def _channel_mask(item: SourceItem, outcome: Outcome) -> np.ndarray:
    return np.array([0 if c in outcome.interpolated else 1 for c in schema.CHANNELS], dtype=np.int64)
