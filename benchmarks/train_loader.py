"""Training data loader throughput against the raw read bound; prints one JSON object.

- ``raw``: ``contract.tfrecord.read_records`` over the same files in one process (read, snappy
  decompression, CRC checks; nothing parsed): the bound the loader works from. Records per
  second of wall time, and CPU microseconds per record.
- ``loader``: ``training.data.EEGLoader`` in training mode (infinite stream, shuffle buffer,
  batches of ``--batch-size``, by default the ``base`` preset's, no augmentation, no pinned
  memory), for each ``--workers`` count and each ``eeg_dtype`` (float16: what the GPU presets use).
  ``windows_per_s`` is steady state (from the first batch on; ``_per_worker``: over the processes
  building batches, the main one with 0 workers), ``first_batch_s`` the start-up,
  ``cpu_us_per_window`` the CPU time of the main process and its workers per window delivered.
- ``tensorflow``: with ``--tf-reference``, ``tf.data.TFRecordDataset(files, compression_type=
  "SNAPPY")`` counted in graph mode on one thread (read, decompress, CRC; nothing parsed), in a
  subprocess: the standard C++ reader, for scale. ``loader_vs_tensorflow``: loader windows/s over it.
- ``ratio``: loader windows/s over raw records/s (the issue's target: >= 0.5), and
  ``ratio_per_core``: raw CPU per record over loader CPU per window, the same ratio on an idle
  machine with one core per process; it is what the wall ratio of ``W`` workers approaches
  (times ``W``) where ``W`` cores are free. This machine is shared, so every measurement repeats
  ``--rounds`` times interleaved and the median is reported, with the load average.

- ``--mechanisms``: instead, the loader against itself with protobuf parsing whole records
  (``split_samples=False``), with DataLoader's own transfer (``fast_ipc=False``) and against a
  plain DataLoader (``--against`` picks some), windows/s and CPU per window, interleaved
  (``benchmarks/loader_mechanisms.py``).

Usage: ``python benchmarks/train_loader.py [--data outputs/demo/tfrecords] [--seconds 3] [--copies 40]``
(``make demo`` writes the default data), or ``--simulate 60`` to simulate and preprocess a corpus
of 3 sites x 4 subjects x 60 minutes (4,320 windows of 10 s, 6 files, about 420 MB) first, or
``--synthetic 8640`` to write 8,640 windows of noise in 60 files of 144 without Beam (the GPU image
has none; ``benchmarks/synthetic_corpus.py``). The ratio depends on the corpus: on one much smaller
than the shuffle buffers and the CPU caches, every window stays cached from read to batch.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from benchmarks.corpora import link_corpus, simulate_and_preprocess  # noqa: E402
from benchmarks.loader_mechanisms import VARIANTS, cpu_seconds, mechanism_benchmark  # noqa: E402
from benchmarks.synthetic_corpus import WINDOWS_PER_FILE, write_corpus  # noqa: E402
from eegfm.contract.tfrecord import read_records  # noqa: E402
from eegfm.training.config import load_config  # noqa: E402
from eegfm.training.data import EEGLoader, LoaderConfig, list_files  # noqa: E402

BASE_LOADER = load_config("base", "pretrain").loader
BASE_BATCH = BASE_LOADER.batch_size


def raw_rate(files: list[str], seconds: float) -> dict[str, float]:
    """Plain read_records passes over ``files`` for at least ``seconds``."""
    count, start, cpu = 0, time.perf_counter(), cpu_seconds()
    while time.perf_counter() - start < seconds:
        for path in files:
            count += sum(1 for _ in read_records(path, "SNAPPY"))
    elapsed = time.perf_counter() - start
    return {"per_s": count / elapsed, "cpu_us": (cpu_seconds() - cpu) / count * 1e6}


# Run in a subprocess: TensorFlow's thread pools must not exist in a process that forks
# DataLoader workers.
_TF_RATE = r"""
import os, sys, time
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import tensorflow as tf
tf.config.threading.set_inter_op_parallelism_threads(1)
tf.config.threading.set_intra_op_parallelism_threads(1)
files, seconds = sys.argv[2:], float(sys.argv[1])
count = tf.autograph.experimental.do_not_convert(lambda n, _: n + 1)
ds = tf.data.TFRecordDataset(files, compression_type="SNAPPY")
int(ds.reduce(tf.constant(0, tf.int64), count))  # warm-up: page cache, graph construction
start = time.perf_counter()
per_pass = int(ds.reduce(tf.constant(0, tf.int64), count))
passes = max(1, int(seconds / (time.perf_counter() - start)))
start = time.perf_counter()  # one reduce over repeated passes: each call builds a graph
n = int(ds.repeat(passes).reduce(tf.constant(0, tf.int64), count))
print(n / (time.perf_counter() - start), per_pass)
"""


def tf_rate(files: list[str], seconds: float) -> tuple[float, int] | None:
    """tf.data's (records/s, records per pass over ``files``), one thread, graph mode; None
    without TensorFlow."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run(
        [sys.executable, "-c", _TF_RATE, str(seconds), *files], env=env, capture_output=True, text=True
    )
    if done.returncode:
        if "No module named 'tensorflow'" in done.stderr:
            return None
        raise RuntimeError(f"TensorFlow reference failed:\n{done.stderr[-2000:]}")
    rate, per_pass = done.stdout.strip().splitlines()[-1].split()
    return float(rate), int(per_pass)


def preset_workers(data: str | Path) -> int:
    """The workers the ``base`` preset's ``num_workers`` (``auto``) gives on this machine for ``data``."""
    config = LoaderConfig(
        batch_size=BASE_BATCH,
        num_workers=BASE_LOADER.num_workers,
        shuffle_buffer=BASE_LOADER.shuffle_buffer,
        eeg_dtype=BASE_LOADER.eeg_dtype,
    )
    return EEGLoader(str(data), config, rank=0, world_size=1).config.num_workers


def loader_rate(data: str, workers: int, dtype: str, batch_size: int, seconds: float) -> dict[str, float]:
    """Steady-state windows per second through the loader, start-up time and CPU per window."""
    config = LoaderConfig(batch_size=batch_size, num_workers=workers, pin_memory=False, eeg_dtype=dtype)
    start, cpu = time.perf_counter(), cpu_seconds()
    batches = iter(EEGLoader(data, config, rank=0, world_size=1))
    total = len(next(batches)["label"])
    first = time.perf_counter()
    count = 0
    while time.perf_counter() - first < seconds:
        count += len(next(batches)["label"])
    elapsed = time.perf_counter() - first
    batches.close()  # shuts the workers down, so their CPU time is counted
    return {
        "per_s": count / elapsed,
        "first_batch_s": first - start,
        "cpu_us": (cpu_seconds() - cpu) / (total + count) * 1e6,
    }


def _median(values: list[dict[str, float]], key: str) -> float:
    return statistics.median(v[key] for v in values)


def _loader_table(
    runs: dict[tuple[int, str], list[dict[str, float]]],
    raw_per_s: float,
    raw_cpu_us: float,
    consumed_per_s: float | None,
) -> dict[str, dict[str, float]]:
    """Each (workers, dtype) case's medians over the rounds, against the raw read bound and, given
    ``consumed_per_s``, the windows/s a training step takes."""
    loader = {}
    for (n_workers, dtype), values in runs.items():
        rate, cpu = _median(values, "per_s"), _median(values, "cpu_us")
        loader[f"workers={n_workers},{dtype}"] = {
            "windows_per_s": round(rate, 1),
            "windows_per_s_per_worker": round(rate / max(1, n_workers), 1),
            "first_batch_s": round(_median(values, "first_batch_s"), 2),
            "cpu_us_per_window": round(cpu),
            "ratio": round(rate / raw_per_s, 3),
            "ratio_per_core": round(raw_cpu_us / cpu, 3),
        }
        if consumed_per_s:
            loader[f"workers={n_workers},{dtype}"]["times_training_demand"] = round(rate / consumed_per_s, 1)
    return loader


def _tensorflow_summary(tf_rates: list[tuple[float, int] | None]) -> dict:
    """tf.data's median records/s over the rounds, or a note where TensorFlow is missing."""
    if None in tf_rates:
        return {"note": "TensorFlow is not installed (pip install -e .[tf])"}
    return {
        "records_per_s": round(statistics.median(r for r, _ in tf_rates), 1),
        "note": "tf.data.TFRecordDataset, SNAPPY, one thread, graph mode, nothing parsed",
    }


def loader_benchmark(
    data: str | Path,
    *,
    workers: tuple[int, ...] = (0, 2),
    dtypes: tuple[str, ...] = ("float32", "float16"),
    batch_size: int = BASE_BATCH,
    seconds: float = 3.0,
    rounds: int = 3,
    consumed_per_s: float | None = None,
    tf_reference: bool = False,
) -> dict:
    """The loader section of the report; ``consumed_per_s``: windows/s a training step takes;
    ``tf_reference``: also time tf.data's reader (skipped, with a note, without TensorFlow)."""
    data = str(data)
    torch.set_num_threads(1)  # one core per process, like a DataLoader worker
    files = list_files(data)
    n_records = sum(1 for path in files for _ in read_records(path, "SNAPPY")) if tf_reference else 0
    load_before = os.getloadavg()[0]
    cases = [(w, d) for w in workers for d in dtypes]
    raw: list[dict[str, float]] = []
    tf_rates: list[tuple[float, int] | None] = []
    runs: dict[tuple[int, str], list[dict[str, float]]] = {case: [] for case in cases}
    for _ in range(rounds):
        raw.append(raw_rate(files, seconds))
        if tf_reference:
            tf_rates.append(tf_rate(files, seconds))
            if tf_rates[-1] is not None and tf_rates[-1][1] != n_records:
                raise RuntimeError(f"tf.data read {tf_rates[-1][1]} records per pass; read_records {n_records}")
        for n_workers, dtype in cases:
            runs[n_workers, dtype].append(loader_rate(data, n_workers, dtype, batch_size, seconds))

    raw_rate_, raw_cpu = _median(raw, "per_s"), _median(raw, "cpu_us")
    loader = _loader_table(runs, raw_rate_, raw_cpu, consumed_per_s)
    tensorflow = _tensorflow_summary(tf_rates) if tf_reference else None
    for value in loader.values():
        if tensorflow and "records_per_s" in tensorflow:
            value["loader_vs_tensorflow"] = round(value["windows_per_s"] / tensorflow["records_per_s"], 2)
    return {
        "data": data,
        "files": len(files),
        "batch_size": batch_size,
        "cpu_count": os.cpu_count(),
        "preset": {
            "name": "base",
            "batch_size": BASE_LOADER.batch_size,
            "eeg_dtype": BASE_LOADER.eeg_dtype,
            "num_workers": BASE_LOADER.num_workers,
            "num_workers_here": preset_workers(data),
        },
        "rounds": rounds,
        "seconds": seconds,
        "raw": {"records_per_s": round(raw_rate_, 1), "cpu_us_per_record": round(raw_cpu)},
        **({"tensorflow": tensorflow} if tf_reference else {}),
        "loader": loader,
        "training_consumes_windows_per_s": consumed_per_s,
        "targets": {"ratio": ">= 0.5", "times_training_demand": ">= 10"},
        "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        **(
            {
                "note": f"{len(files)} files for up to {max(workers)} workers: workers share files, and each "
                "reads (decompresses) the records of its files that other workers keep"
            }
            if len(files) < max(workers)
            else {}
        ),
    }


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data",
        default=str(REPO / "outputs" / "demo" / "tfrecords"),
        help="folder of the pipeline's TFRecords (default: what `make demo` writes)",
    )
    workers_help = "DataLoader worker counts to measure (0: batches built in this process)"
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2], help=workers_help)
    parser.add_argument(
        "--dtypes",
        nargs="+",
        default=["float32", "float16"],
        choices=["float32", "float16"],
        help="eeg_dtype of the batches; the GPU presets use float16",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=BASE_BATCH,
        help=f"windows per batch (default: the base pretraining preset's, {BASE_BATCH})",
    )
    parser.add_argument(
        "--seconds", type=float, default=3.0, help="steady-state seconds of each measurement (after the first batch)"
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="interleaved repetitions of every measurement; the median is reported"
    )
    parser.add_argument(
        "--tf-reference",
        action="store_true",
        help="also time tf.data's own SNAPPY TFRecord reader on the same files (one "
        "thread, in a subprocess) and report the loader's rate against it",
    )
    _add_corpus_options(parser)
    _add_mechanism_options(parser)
    return parser


def _add_corpus_options(parser: argparse.ArgumentParser) -> None:
    """--simulate, --synthetic and --copies: a corpus made, or enlarged, in a temporary folder."""
    parser.add_argument(
        "--simulate",
        type=float,
        default=0,
        metavar="MINUTES",
        help="instead of --data, simulate 3 sites x 4 subjects x MINUTES of EEG and preprocess "
        "it (2 files per site) into a temporary folder first",
    )
    parser.add_argument(
        "--synthetic",
        type=int,
        default=0,
        metavar="WINDOWS",
        help="instead of --data, write a corpus of this many 10 s windows of noise in files of "
        f"{WINDOWS_PER_FILE} (benchmarks/synthetic_corpus.py: the pipeline's layout without Beam, "
        "for the GPU image) into a temporary folder first",
    )
    parser.add_argument(
        "--copies",
        type=int,
        default=1,
        help="read the corpus as this many copies of its site folders (symbolic links, as "
        "train_loop.py makes): where Beam is missing to preprocess a larger corpus (the GPU "
        "image), many workers on a small one each get an epoch of a few windows, and a "
        "loader's epoch ends cost more than its steady state",
    )


def _add_mechanism_options(parser: argparse.ArgumentParser) -> None:
    """--mechanisms and --against: the loader against its variants instead of the throughput report."""
    parser.add_argument(
        "--mechanisms",
        action="store_true",
        help="instead of the throughput report, compare the loader with the --against variants "
        "(max of --workers, first of --dtypes)",
    )
    parser.add_argument(
        "--against",
        nargs="+",
        default=list(VARIANTS[1:]),
        choices=VARIANTS[1:],
        help="with --mechanisms: protobuf parsing whole records (split_samples=False), "
        "DataLoader's own transfer (fast_ipc=False), a plain DataLoader (default: all)",
    )


def _check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Exits through ``parser.error`` on an option out of its range, or on two that exclude each other."""
    if args.copies < 1:
        parser.error(f"--copies: expected an integer >= 1; got {args.copies}")
    if args.synthetic < 0 or (args.synthetic and args.simulate > 0):
        parser.error(f"--synthetic: expected an integer >= 1, and not with --simulate; got {args.synthetic}")


def _corpus(args: argparse.Namespace, tmp: Path) -> str | Path:
    """The folder to read: ``--data``, or the corpus ``--simulate`` or ``--synthetic`` writes under
    ``tmp``, linked ``--copies`` times under ``tmp`` where that is over 1."""
    data = args.data
    if args.simulate > 0:
        data = simulate_and_preprocess(tmp, shards_per_site=2, subjects=4, minutes=args.simulate)
    if args.synthetic:
        data = str(tmp / "synthetic")
        write_corpus(data, args.synthetic)
    if args.copies > 1:
        link_corpus(Path(data), args.copies, tmp / "copies")
        data = str(tmp / "copies")
    return data


def main(argv: list[str] | None = None) -> None:
    parser = _parser()
    args = parser.parse_args(argv)
    _check_args(parser, args)
    with tempfile.TemporaryDirectory() as tmp:
        data = _corpus(args, Path(tmp))
        if args.mechanisms:
            result = mechanism_benchmark(
                data,
                workers=max(args.workers),
                dtype=args.dtypes[0],
                batch_size=args.batch_size,
                seconds=args.seconds,
                rounds=args.rounds,
                against=tuple(args.against),
            )
            result["data"] = data
        else:
            result = loader_benchmark(
                data,
                workers=tuple(args.workers),
                dtypes=tuple(args.dtypes),
                batch_size=args.batch_size,
                seconds=args.seconds,
                rounds=args.rounds,
                tf_reference=args.tf_reference,
            )
    if args.simulate > 0:
        result["data"] = f"simulated: 3 sites x 4 subjects x {args.simulate:g} min, 10 s windows, 2 files per site"
    if args.synthetic:
        result["data"] = f"synthetic: {args.synthetic} windows of 10 s noise in files of {WINDOWS_PER_FILE}"
    if args.copies > 1:
        source = result["data"] if args.simulate > 0 or args.synthetic else args.data
        result["data"] = f"{source}, linked {args.copies} times"
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
