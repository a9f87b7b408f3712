"""A pretraining-sized corpus in the pipeline's output layout, written without Beam.

The loader and loop benchmarks need a corpus with many batches per loader worker and epoch; on a
machine without Apache Beam (the GPU image) none can be preprocessed there, and linking a small
one many times (``--copies``) gives many tiny files instead. This writes ``windows`` ten-second
windows of 1/f noise (about 20 µV RMS, float16, every channel measured) through the real record
encoder (``contract.schema.encode_example``) and TFRecord writer, as
``OUT/<site>/part-SSSSS-of-NNNNN.tfrecord`` files of at most ``windows_per_file`` windows each,
spread over ``sites`` sites, with a ``manifest.json`` that ``training.data.describe`` reads. The
samples barely compress, like the pipeline's (about 97 kB a record either way). Deterministic
for a given ``seed``.

    python benchmarks/synthetic_corpus.py --output DIR [--windows 8640] [--windows-per-file 144]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from eegfm.contract import layout  # noqa: E402
from eegfm.contract.schema import (  # noqa: E402
    CHANNELS,
    HMS_CLASSES,
    N_CHANS,
    PIPELINE_VERSION,
    SFREQ,
    WindowRecord,
    encode_example,  # noqa: E402
)
from eegfm.contract.tfrecord import write_records  # noqa: E402
from eegfm.core.config import check_int  # noqa: E402

NEEDS_INPUT = "a folder to write (--output)"  # make bench skips it

WINDOW_SECONDS = 10
WINDOWS_PER_FILE = 144  # 24 minutes, about 14 MB a file
SUBJECTS_PER_SITE = 4
_CONFIG_HASH = "synthetic"


def pink_noise(rng: np.random.Generator, shape: tuple[int, int], rms_uv: float = 20.0) -> np.ndarray:
    """Noise whose power falls as 1/f along the last axis (EEG's background shape), ``rms_uv`` RMS."""
    n = shape[-1]
    spectrum = rng.standard_normal((*shape[:-1], n // 2 + 1)) + 1j * rng.standard_normal((*shape[:-1], n // 2 + 1))
    spectrum[..., 0] = 0.0
    spectrum[..., 1:] /= np.sqrt(np.arange(1, n // 2 + 1))
    signal = np.fft.irfft(spectrum, n=n, axis=-1)
    return (signal * (rms_uv / signal.std(axis=-1, keepdims=True))).astype(np.float32)


def _pseudonym(kind: str, *parts: object) -> str:
    return f"{kind}-" + hashlib.sha256("/".join(map(str, parts)).encode()).hexdigest()[:16]


def write_corpus(
    output: str | Path, windows: int, *, windows_per_file: int = WINDOWS_PER_FILE, sites: int = 3, seed: int = 0
) -> dict:
    """Write the corpus; returns its manifest. ``output`` must not hold TFRecords already."""
    check_int("windows", windows, 1)
    check_int("windows_per_file", windows_per_file, 1)
    check_int("sites", sites, 1)
    output = Path(output)
    if any(output.glob("*/part-*-of-*.tfrecord")):
        raise FileExistsError(f"output: {output} already holds TFRecord shards; choose an empty folder")
    rng = np.random.default_rng(seed)
    n_times = int(WINDOW_SECONDS * SFREQ)
    site_ids = [_pseudonym("site", seed, s) for s in range(sites)]
    # Windows are dealt to sites in turn; each site's windows fill its files in order.
    per_site = [len(range(s, windows, sites)) for s in range(sites)]
    shards, per_subject = [], {}
    shard_records: dict[str, int] = {}
    shard_bytes: dict[str, int] = {}
    for site, site_id, count in zip(range(sites), site_ids, per_site):
        n_files = -(-count // windows_per_file)
        for part in range(n_files):
            first = part * windows_per_file
            records = []
            for index in range(first, min(count, first + windows_per_file)):
                subject = _pseudonym("sub", seed, site, index % SUBJECTS_PER_SITE)
                per_subject[subject] = per_subject.get(subject, 0) + 1
                records.append(
                    encode_example(
                        WindowRecord(
                            eeg=pink_noise(rng, (N_CHANS, n_times)),
                            channel_mask=np.ones(N_CHANS, np.int64),
                            site_id=site_id,
                            subject_id=subject,
                            session_id="",
                            recording_id=_pseudonym("rec", seed, site, index % SUBJECTS_PER_SITE),
                            window_start_s=float(index // SUBJECTS_PER_SITE * WINDOW_SECONDS),
                            window_start_index=index // SUBJECTS_PER_SITE * n_times,
                            quality=np.zeros(0, np.float32),
                            artifact_score=0.0,
                            source_sha256=hashlib.sha256(f"{seed}/{site}".encode()).hexdigest(),
                            config_hash=_CONFIG_HASH,
                            age=30.0 + index % 50,
                            sex="FM"[index % 2],
                        )
                    )
                )
            path = output / site_id / f"part-{part:05d}-of-{n_files:05d}.tfrecord"
            path.parent.mkdir(parents=True, exist_ok=True)
            write_records(path, records)
            shards.append(str(path.relative_to(output)))
            shard_records[shards[-1]], shard_bytes[shards[-1]] = len(records), path.stat().st_size
    manifest = {
        "pipeline_version": PIPELINE_VERSION,
        "config_hash": _CONFIG_HASH,
        "channels": list(CHANNELS),
        "sfreq": SFREQ,
        "quality_names": [],
        "feature_names": [],
        "sites": sorted(site_ids),
        "classes": {"hms6": list(HMS_CLASSES)},
        "output": str(output),
        "shards": sorted(shards),
        # what training checks each shard against (training.data.catalog.check_shards)
        "shard_records": dict(sorted(shard_records.items())),
        "shard_bytes": dict(sorted(shard_bytes.items())),
        "synthetic": {
            "seed": seed,
            "windows_per_file": windows_per_file,
            "note": "benchmarks/synthetic_corpus.py: 1/f noise, not EEG",
        },
        "counts": {
            "windows": windows,
            "window_eeg_hours": round(windows * WINDOW_SECONDS / 3600, 6),
            "per_site": dict(zip(site_ids, per_site)),
            "per_subject": dict(sorted(per_subject.items())),
            "per_label": {"unlabeled:-1": windows},
        },
    }
    (output / layout.MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--output", required=True, type=Path, help="folder to write (must hold no shards yet)")
    parser.add_argument(
        "--windows", type=int, default=8640, help="ten-second windows in all (8,640: 24 EEG-hours, about 840 MB)"
    )
    parser.add_argument(
        "--windows-per-file",
        type=int,
        default=WINDOWS_PER_FILE,
        help=f"windows per TFRecord file ({WINDOWS_PER_FILE}: 24 minutes, about 14 MB; more "
        "files than loader workers let every worker read whole files)",
    )
    parser.add_argument("--sites", type=int, default=3, help="site folders the windows are dealt to")
    parser.add_argument("--seed", type=int, default=0, help="seeds the samples and the pseudonyms")
    args = parser.parse_args(argv)
    for name in ("windows", "windows_per_file", "sites"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')}: expected an integer >= 1; got {getattr(args, name)}")
    if args.seed < 0:
        parser.error(f"--seed: expected an integer >= 0; got {args.seed}")
    try:
        manifest = write_corpus(
            args.output, args.windows, windows_per_file=args.windows_per_file, sites=args.sites, seed=args.seed
        )
    except FileExistsError as err:
        parser.error(str(err))
    print(
        json.dumps(
            {
                "output": str(args.output),
                "windows": args.windows,
                "files": len(manifest["shards"]),
                "bytes": sum((args.output / s).stat().st_size for s in manifest["shards"]),
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
