"""The command line of eegfm-preprocess: its options (``build_parser``) and the typed job they give
(``job_from_args``: the graph's ``JobSpec``, the ``PreprocessConfig`` of ``config_from_args`` and the
launcher's ``LaunchOptions``). The arguments neither it nor Beam knows are ``unknown_args``'s.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

# Only light modules at the top: --help, a usage error and shell completion load no Beam, scipy or
# readers (tests/test_commands.py); what needs them is imported by the function that uses it.
from eegfm.contract.channels import CAP_LAYOUTS
from eegfm.contract.schema import WINDOW_SECONDS
from eegfm.core.config import ConfigError, check_int, user_path
from eegfm.core.tasks import BACKGROUND_CLASSES
from eegfm.pipelines.datasets.names import DATASETS
from eegfm.pipelines.job.limits import (
    DEFAULT_MAX_DECOMPRESSED_GB,
    DEFAULT_MAX_DECOMPRESSED_RATIO,
    DEFAULT_MAX_SHARD_BYTES,
)
from eegfm.pipelines.job.spec import JobSpec, LaunchOptions
from eegfm.pipelines.privacy.deid import DEFAULT_KEY_FILE
from eegfm.pipelines.quality.artifact_fit_size import min_fit_windows
from eegfm.pipelines.signal.feature_names import FEATURE_NAMES

if TYPE_CHECKING:
    from eegfm.pipelines.job.process_io import PreprocessConfig


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="eegfm-preprocess",
        description="Raw EEG recordings -> de-identified, harmonized, 256 Hz, artifact-scored windows in snappy "
        "TFRecords, with a manifest that accounts for every input.",
        epilog="Any other flag is a Beam pipeline option, e.g. --runner DataflowRunner --project P "
        "--region R --temp_location gs://B/tmp --setup_file ./setup.py. A local run uses a worker process per core "
        "from 200 MB of input on, unless --direct_running_mode (in_memory, multi_processing, multi_threading) or "
        "--direct_num_workers N say otherwise. A flag that is neither is refused (Beam "
        "itself would run without it). Object stores: gs:// uses "
        "Google application default credentials; s3:// takes --s3_access_key_id, "
        "--s3_secret_access_key, --s3_region_name and --s3_endpoint_url (an S3-compatible store), "
        "else boto3's usual sources (AWS_* variables, ~/.aws, the instance role).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    io_ = parser.add_argument_group("inputs and outputs")
    _add_input_output_options(io_)
    _add_pseudonym_options(io_)
    _add_sharding_options(io_)
    sig = parser.add_argument_group("signal processing")
    _add_window_and_filter_options(sig)
    _add_channel_options(sig)
    _add_chunk_feature_and_ica_options(sig)
    _add_artifact_options(parser.add_argument_group("artifacts and quality"))
    parser.add_argument(
        "--cold_workers",
        action="store_true",
        help="accepted for older scripts: Beam starts every multi_processing worker as it does",
    )
    parser.add_argument(
        "--stall_timeout_s",
        type=float,
        default=LaunchOptions.stall_timeout_s,
        help="a local run that finishes no recording and whose processes use under a quarter of a core and "
        "under 1 MiB of I/O for this long is stopped with an error rather than left waiting (a worker that "
        "never answers); 0: never",
    )
    parser.add_argument("--verbose", action="store_true", help="debug logging, including Beam's")
    return parser


def _add_input_output_options(io_) -> None:
    io_.add_argument(
        "--input",
        type=user_path,
        action="extend",
        nargs="+",
        required=True,
        metavar="PATH",
        help="one or more files, globs or folders; local, gs:// or s3://; repeatable. In a quoted glob "
        "* stays within a folder and **/ spans any number of them. A split FIF is one recording; a "
        "copy of another input (the same bytes) is quarantined naming the one kept",
    )
    io_.add_argument("--output", type=user_path, required=True, help="output folder (local, gs:// or s3://)")
    io_.add_argument(
        "--overwrite",
        action="store_true",
        help="delete an earlier run's outputs in --output first; without it such a folder is an "
        "error, since readers take every shard in it and would mix the two runs",
    )
    io_.add_argument(
        "--report",
        action="store_true",
        help="after the run, draw its data quality across sites as OUTPUT/report.png "
        "(python -m eegfm.pipelines.quality.site_report OUTPUT draws it later)",
    )
    io_.add_argument(
        "--dataset",
        default="auto",
        choices=DATASETS,
        help="layout adapter (docs/datasets.md describes each): hms = Kaggle train.csv + train_eegs/; "
        "bids = BIDS; eegmat, eegmmi = PhysioNet; tuab, tuep, tusz, tuev, tuar = the TUH corpora; "
        "chbmit = CHB-MIT; siena = Siena Scalp EEG; edf = any folder of EDF/BDF/FIF/BrainVision/EEGLAB "
        "files and EGI MFF folders (+ optional labels.csv); auto detects it per top-level folder",
    )
    io_.add_argument(
        "--background",
        default=None,
        choices=list(BACKGROUND_CLASSES),
        metavar="TASK",
        help="label every window of every input as background of TASK ("
        + ", ".join(f"{task}: class {name}" for task, name in BACKGROUND_CLASSES.items())
        + ", with all of its expert votes), in place of the data set's own labels; subjects, sessions "
        "and corpus splits stay the data set's. For real recordings of people without the task's "
        "findings (eegmat, a normal EEG clinic), which fine-tuning adds with --background DIR",
    )
    io_.add_argument(
        "--site",
        default=None,
        help="site name for every input; default: the first folder below each input folder (for "
        "a glob, below the folder before its first wildcard; for a file, its folder)",
    )
    io_.add_argument(
        "--max_decompressed_ratio",
        type=float,
        default=DEFAULT_MAX_DECOMPRESSED_RATIO,
        help="a gzipped EDF/BDF (.edf.gz, .bdf.gz) is quarantined at read, its partial copy deleted, once it "
        "expands past this many times its stored size (files under 16 MiB decompressed never are): EEG "
        "compresses 2-4x, a gzip bomb thousands of times",
    )
    io_.add_argument(
        "--max_decompressed_gb",
        type=float,
        default=DEFAULT_MAX_DECOMPRESSED_GB,
        help="a gzipped EDF/BDF is quarantined at read once it expands past this many GB (10^9 bytes): "
        "the most temporary disk one recording takes",
    )
    io_.add_argument(
        "--s3_anonymous",
        action="store_true",
        help="read s3:// inputs with unsigned requests, without credentials (public buckets such as "
        "s3://openneuro.org/); --output and --pseudonym_key_file cannot be on S3 then",
    )


def _add_pseudonym_options(io_) -> None:
    io_.add_argument(
        "--pseudonym_key_file",
        type=user_path,
        default=DEFAULT_KEY_FILE,
        help="secret key for the HMAC-SHA256 pseudonyms of site/subject/session/recording "
        "(created with a random key on first use if it is the default path). Keep it to get "
        "the same pseudonyms in later runs; use a gs:// path on Dataflow",
    )
    io_.add_argument(
        "--create_key_file",
        action="store_true",
        help="create --pseudonym_key_file with a new random key if it does not exist (local paths); "
        "without it a missing key file is an error, not a new key that matches no earlier run",
    )
    names = io_.add_mutually_exclusive_group()
    names.add_argument(
        "--keep_paths",
        action="store_true",
        help="file and folder names appear as given; use only where names carry no identifiers. By default the "
        "inputs are named by keyed tokens (dir-<hex>, file-<hex> with its extensions) below the folder each "
        "--input is given in, and channel labels that are no electrode, reference or auxiliary signal by "
        "chan-<hex>, in manifest.json, quarantine.jsonl, the logs and messages; eegfm-redact maps tokens back",
    )
    io_.add_argument(
        "--shown_folders",
        nargs="+",
        default=None,
        metavar="DIR",
        help="with redaction: the folders whose paths stay readable; every name below them, and every "
        "path outside them, is a token (default: the folder each --input is given in). A tool that passes "
        "files it chose names the folder its user gave, or none of theirs",
    )
    names.add_argument(
        "--redact_paths",
        action="store_true",
        help="the default (names and non-electrode channel labels redacted, see --keep_paths); accepted so "
        "older command lines still run",
    )


def _add_sharding_options(io_) -> None:
    io_.add_argument(
        "--num_shards",
        type=int,
        default=0,
        help="TFRecord shards per site, each a contiguous part of about equal size of the site's "
        "windows; 0: as few as --max_shard_mb allows. The same inputs give the same files either way",
    )
    io_.add_argument(
        "--max_shard_mb",
        type=float,
        default=DEFAULT_MAX_SHARD_BYTES / 2**20,
        help="with --num_shards 0, the most MiB of records in a shard (at most one window over; a 10 s "
        "window is about 0.1 MiB): loader workers and ranks that share a file each read all of it",
    )


def _add_window_and_filter_options(sig) -> None:
    sig.add_argument(
        "--window_seconds",
        type=float,
        default=WINDOW_SECONDS,
        help="window length for unlabeled recordings (HMS labeled sub-windows are always 50 s)",
    )
    sig.add_argument(
        "--stride_seconds",
        type=float,
        default=None,
        help="step between window starts (default: --window_seconds, windows end to end); "
        "smaller overlaps windows, larger leaves the signal between them out (the run warns)",
    )
    sig.add_argument(
        "--line_freq",
        default="auto",
        choices=["auto", "50", "60", "none"],
        help="mains frequency to notch (with its harmonics); auto takes a BIDS recording's "
        "PowerLineFrequency (*_eeg.json) where given, else detects 50/60 Hz from the first "
        "--line_detect_seconds of each recording and notches nothing if neither stands out",
    )
    sig.add_argument("--l_freq", type=float, default=0.5, help="band-pass lower edge in Hz (passband edge)")
    sig.add_argument(
        "--h_freq",
        type=float,
        default=70.0,
        help="band-pass upper edge in Hz; must stay well below 128 Hz, the Nyquist frequency "
        "of the 256 Hz output, because the resampler's anti-aliasing filter already rolls off "
        "from about 105 Hz and content near Nyquist is partly aliased",
    )


def _add_channel_options(sig) -> None:
    sig.add_argument(
        "--min_channels",
        type=int,
        default=10,
        help="fewest of the 19 10-20 channels a recording must have; the rest are "
        "interpolated by spherical splines and marked 0 in channel_mask",
    )
    sig.add_argument(
        "--repair_channels",
        type=int,
        default=3,
        help="a window rejected only because at most this many channels are flat, clipped or "
        "beyond the amplitude limit (an electrode off for a while) is kept with those channels "
        "interpolated from the others for that window and marked 0 in its channel_mask "
        '("repaired" in the manifest); 0 rejects such windows',
    )
    sig.add_argument(
        "--montage",
        default="auto",
        choices=["auto", "file", *CAP_LAYOUTS],
        metavar="CAP",
        help="the cap of recordings whose channels are named by cap position, not 10-20 site: "
        f"one of {', '.join(CAP_LAYOUTS)} (each 10-20 site takes the recorded electrode nearest it, "
        "within 7 degrees; manifest: cap, cap_sites); file: the electrode positions a file (or a BIDS "
        "*_electrodes.tsv) holds; auto: BioSemi's ABC labels only. docs/preprocessing.md has the details",
    )
    sig.add_argument(
        "--reference",
        default="keep",
        choices=["keep", "average"],
        help="keep the recording's reference, or re-reference to the average of the 19 channels",
    )


def _add_chunk_feature_and_ica_options(sig) -> None:
    sig.add_argument(
        "--chunk_seconds",
        type=float,
        default=300.0,
        help="how much of a recording is read at once (at most 2^21 samples per channel): "
        "peak memory is bounded by it; recordings shorter than it are filtered in one pass",
    )
    sig.add_argument(
        "--features",
        action="store_true",
        help=f"store {len(FEATURE_NAMES)} extra features per window (time statistics, "
        "relative band powers, spectral entropy) in the 'extra' field",
    )
    sig.add_argument(
        "--spectrogram",
        dest="spectrogram",
        action="store_true",
        default=True,
        help="store each window's spectrogram in Kaggle's HMS layout (400 rows: LL, RL, LP, RP chains x "
        "0.59-19.92 Hz, a frame per 2 s, log1p uV^2/Hz) in the 'spectrogram' field: for HMS labeled "
        "windows the 10 min of train_spectrograms/<spectrogram_id>.parquet, else computed from the "
        "window (default)",
    )
    sig.add_argument(
        "--no_spectrogram",
        dest="spectrogram",
        action="store_false",
        help="store no spectrogram (smaller records; models without the spectrogram modality)",
    )
    sig.add_argument(
        "--ica",
        action="store_true",
        help="remove eye-blink and muscle components with ICA (extended Infomax solved by Picard, "
        "fitted on the first --ica_fit_seconds of each recording; eye components found by "
        "correlation with Fp1/Fp2). Off by default: it costs a few seconds per recording and "
        "alters the signal",
    )
    sig.add_argument(
        "--ica_fit_seconds",
        type=float,
        default=120.0,
        help="seconds at the start of each recording used to fit the ICA",
    )


def _add_artifact_options(art) -> None:
    art.add_argument(
        "--artifact_model",
        type=user_path,
        default=None,
        help="reuse a saved artifact autoencoder (artifact_ae.npz of an earlier run) instead of fitting one",
    )
    art.add_argument(
        "--no_artifact_model", action="store_true", help="score artifacts with the rules only (ae_score stays -1)"
    )
    art.add_argument(
        "--ae_train_sites",
        default="",
        help="comma-separated site names whose windows train the autoencoder (default all); "
        "for leave-one-site-out studies give only the training sites. A corpus's eval split "
        "(TUH's edf/eval/ recordings) never trains it",
    )
    art.add_argument(
        "--ae_sample_size",
        type=int,
        default=2000,
        help="at most this many windows (a deterministic sample) fit the autoencoder; at least "
        f"{min_fit_windows()} (a fifth of them calibrate its scores). With fewer "
        "training-site windows in all, no autoencoder is fitted and the rules alone score artifacts "
        "(logged)",
    )
    art.add_argument(
        "--max_artifact_score",
        type=float,
        default=1.0,
        help="quarantine windows whose combined artifact score exceeds this (1.0 keeps all)",
    )
    art.add_argument(
        "--config",
        type=user_path,
        default=None,
        help="YAML file with PreprocessConfig fields (quality: thresholds ... as nested keys); "
        "the flags given on the command line override it, the others leave its values alone",
    )


def config_from_args(args, given: set[str] | None = None) -> PreprocessConfig:
    """``--config``'s YAML (else the defaults) with the flags of PreprocessConfig's fields on top.
    ``given``: the flags the command line set; with a YAML file only those override it (a flag left
    at its default must not undo the file). None: every flag counts."""
    from eegfm.pipelines.job.process_io import PreprocessConfig  # the signal path's configs (scipy): not for --help

    base = PreprocessConfig.from_yaml(args.config) if args.config else PreprocessConfig()
    wanted = (lambda name: True) if given is None or not args.config else given.__contains__
    names = [f.name for f in dataclasses.fields(PreprocessConfig) if hasattr(args, f.name)]
    fields = {name: getattr(args, name) for name in names if wanted(name)}
    if fields.get("stride_seconds", 0.0) is None:
        del fields["stride_seconds"]  # not given: windows end to end, unless a YAML file overlaps them
    if fields.get("background", "") is None:
        del fields["background"]  # not given: the data sets' own labels, unless a YAML file says otherwise
    if "window_seconds" in fields and "stride_seconds" not in fields and base.stride_seconds == base.window_seconds:
        fields["stride_seconds"] = fields["window_seconds"]
    if "line_freq" in fields:
        fields["line_freq"] = {"auto": "auto", "50": 50, "60": 60, "none": None}[fields["line_freq"]]
    quality = (
        base.quality.replace(max_artifact_score=args.max_artifact_score)
        if wanted("max_artifact_score")
        else base.quality
    )
    return base.replace(**fields, quality=quality)


def given_flags(parser: argparse.ArgumentParser, argv: list[str] | None) -> set[str]:
    """The destinations the command line sets itself, not through their defaults."""
    probe = copy.deepcopy(parser)
    for action in probe._actions:
        action.default = argparse.SUPPRESS
        action.required = False
    known, _ = probe.parse_known_args(argv)
    return set(vars(known))


def shard_bytes(mib: float) -> int:
    return max(1, round(mib * 2**20))


def check_sharding(args) -> None:
    check_int("--num_shards", args.num_shards, 0)
    if not (math.isfinite(args.max_shard_mb) and args.max_shard_mb > 0):
        raise ConfigError(f"--max_shard_mb: expected a number of MiB > 0; got {args.max_shard_mb}")


def job_from_args(args, beam_args: Sequence[str], given: set[str] | None = None):
    """The typed job the parsed command line asks for: its :class:`JobSpec`, :class:`PreprocessConfig`
    (``given``: see :func:`config_from_args`) and :class:`LaunchOptions` (``beam_args``: the arguments
    the parser left to Beam); ConfigError (or ValueError) for a value they refuse."""
    check_sharding(args)
    launch = LaunchOptions(
        dataset=args.dataset,
        site=args.site,
        overwrite=args.overwrite,
        report=args.report,
        create_key_file=args.create_key_file,
        s3_anonymous=args.s3_anonymous,
        stall_timeout_s=args.stall_timeout_s,
        beam_args=tuple(beam_args),
    )
    return job_spec(args), config_from_args(args, given), launch


def job_spec(args) -> JobSpec:
    """The graph's :class:`~pipelines.job.spec.JobSpec` from the checked command line."""
    return JobSpec(
        inputs=tuple(args.input),
        shown_folders=None if args.shown_folders is None else tuple(args.shown_folders),
        output=args.output,
        pseudonym_key_file=args.pseudonym_key_file,
        redact_paths=not args.keep_paths,  # redacted by default; --redact_paths is kept for old command lines
        artifact_model=args.artifact_model or "",
        use_artifact_model=not args.no_artifact_model,
        ae_sample_size=args.ae_sample_size,
        ae_train_sites=tuple(name.strip() for name in args.ae_train_sites.split(",") if name.strip()),
        num_shards=args.num_shards,
        max_shard_bytes=shard_bytes(args.max_shard_mb),
    )
