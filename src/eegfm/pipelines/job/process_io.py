"""What ``process_recording`` takes (`PreprocessConfig`) and yields: `Window`s (kept, scored by the rules so far),
`RejectedWindow`s (one quarantine line each) and, last, one `Outcome` per input."""

from __future__ import annotations

import dataclasses

import numpy as np

from eegfm.contract import schema
from eegfm.contract.channels import CAP_LAYOUTS
from eegfm.core.config import Config, check_bool, check_option, check_range
from eegfm.core.tasks import BACKGROUND_CLASSES
from eegfm.pipelines.job.limits import DEFAULT_MAX_DECOMPRESSED_GB, DEFAULT_MAX_DECOMPRESSED_RATIO
from eegfm.pipelines.quality import QUALITY_NAMES, QualityConfig
from eegfm.pipelines.signal.filters import FilterConfig

# The TFRecord `quality` vector: the rule metrics, then the autoencoder's score (-1 until the
# artifact stage fills it in, or without the autoencoder).
AE_NOT_SCORED = -1.0
RECORD_QUALITY_NAMES = QUALITY_NAMES + ("ae_score",)


@dataclasses.dataclass
class PreprocessConfig(Config):
    """Everything that changes what the pipeline writes; its hash is stored in every record."""

    window_seconds: float = schema.WINDOW_SECONDS
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
    # each window's Kaggle-layout spectrogram (contract.spectrogram) in its record
    spectrogram: bool = True
    ica: bool = False
    ica_fit_seconds: float = 120.0
    # A window rejected only because a few channels are flat, clipped or beyond max_ptp_uv is
    # kept with those channels interpolated from the others for that window (channel_mask 0).
    repair_channels: int = 3
    # a cap whose labels name no 10-20 site (EGI's E1 ..., EasyCap's numbers), for recordings that
    # use its labels: harmonize.CAP_LAYOUTS; 'auto' recognises BioSemi's ABC labels only
    montage: str = "auto"
    max_decompressed_ratio: float = DEFAULT_MAX_DECOMPRESSED_RATIO
    max_decompressed_gb: float = DEFAULT_MAX_DECOMPRESSED_GB
    # a task (hms6): every window of every input is a background window of it, labeled its
    # background class (datasets.items.as_background); '' keeps the data sets' own labels
    background: str = ""
    quality: QualityConfig = dataclasses.field(default_factory=QualityConfig)

    def validate(self) -> None:
        check_range("window_seconds", self.window_seconds, 0.5, 3600)
        check_bool("spectrogram", self.spectrogram)
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
        check_range("max_decompressed_ratio", self.max_decompressed_ratio, 1.0, 1e6)
        check_range("max_decompressed_gb", self.max_decompressed_gb, 0.0, 1e6, low_inclusive=False)
        check_option("background", self.background, ("", *BACKGROUND_CLASSES))
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
    repaired: tuple[str, ...] = ()  # channels interpolated in this window only (repair_channels)


@dataclasses.dataclass
class RejectedWindow:
    source: str
    site: str
    window_start_s: float  # NaN where the label's own offset is unusable
    reasons: list[str]
    stage: str = "quality"  # or "labels": the window's label (a csv row) is unusable
    rules: tuple[str, ...] = ()  # the manifest's rejection_rules it counts under; () : each reason's prefix

    def rule_names(self) -> tuple[str, ...]:
        return self.rules or tuple(reason.split(":", 1)[0] for reason in self.reasons)


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
    # channels placed by a cap (--montage) or by the file's own positions ('file'): the cap, and
    # the electrode recorded as each 10-20 site
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
    # a bipolar recording: the derivations its electrodes were rebuilt from (pipelines.signal.bipolar),
    # those electrodes, and the derivations left out (unconnected chains) or flat
    bipolar: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    # the channel labels as recorded, for the redactor (pipelines.privacy.redact) to find in the reason; never written
    channel_labels: tuple[str, ...] = dataclasses.field(default=(), repr=False)

    def as_dict(self) -> dict:
        out = dataclasses.asdict(self)
        del out["channel_labels"]
        return out

    def record(self, **fields) -> None:
        """Sets what a step learned of the recording as soon as it is known, so that one quarantined
        part-way still shows it; a name that is not a field is a programming error (AttributeError)."""
        unknown = sorted(set(fields) - {field.name for field in dataclasses.fields(self)})
        if unknown:
            raise AttributeError(f"Outcome has no field {', '.join(unknown)}")
        for name, value in fields.items():
            setattr(self, name, value)


class StageError(Exception):
    """Ends a recording with a quarantine outcome at a named stage."""

    def __init__(self, stage: str, reason: str):
        super().__init__(reason)
        self.stage, self.reason = stage, reason
