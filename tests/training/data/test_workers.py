"""training.data.workers: how many workers, and a worker's errors in the main process."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from eegfm.contract.tfrecord import CorruptTFRecordError, read_records
from eegfm.core.machine import Cpus
from eegfm.training import data
from eegfm.training.data import LoaderConfig, list_files
from eegfm.training.data.catalog import first_record_bytes
from tests.training.data.conftest import _epoch


def _machine(cpus=16, total=None, ranks=1, memory=None, cuda=True):
    return data.Machine(cpus, cpus if total is None else total, ranks, memory, cuda)


@pytest.mark.parametrize(
    "machine, expected, why",
    [
        (_machine(cuda=False), 1, "CPU training"),
        (_machine(1, cuda=False), 0, "CPU training on 1 CPUs / 1 local rank(s): no core to spare"),
        (_machine(2, ranks=2, cuda=False), 0, "no core to spare"),  # two gloo ranks on two cores
        (_machine(2, cuda=False), 0, "beside two for the step"),  # a worker would outnumber the cores
        (_machine(3, cuda=False), 1, "CPU training"),
        (_machine(16), 15, "16 CPUs / 1 local rank"),
        (_machine(96, ranks=8), 11, "96 CPUs / 8 local rank"),
        (_machine(4, total=64, ranks=8), 3, "4 CPUs bound to this rank"),  # mpirun's binding
        (_machine(128), data.AUTO_MAX_WORKERS, f"capped at {data.AUTO_MAX_WORKERS}"),
        (_machine(1), 1, "1 CPUs / 1 local rank"),
        # 32 open batches of 64 + 5 x 64 in flight, x 100 kB = 237 MB a worker; half of 4 GiB over 2 ranks: 4
        (_machine(32, ranks=2, memory=4 << 30), 4, "memory: each worker holds about 226 MiB"),
        (_machine(16, memory=100 << 20), 1, "memory"),
    ],
)
def test_auto_workers_fit_the_cpus_and_memory_of_the_rank(machine, expected, why):
    config = LoaderConfig(batch_size=64, num_workers="auto", shuffle_buffer=2000, prefetch_factor=4)
    workers, reason = data.auto_num_workers(config, 100_000, machine)
    assert workers == expected and why in reason


@pytest.mark.parametrize(
    "windows, ranks, expected, why",
    [
        (216, 1, 1, "corpus: about 216 windows"),  # the benchmark's corpus: 14 windows a worker, batches of 64
        (2_560, 1, 10, "corpus: about 2560 windows over 1 rank(s)"),
        (2_560, 2, 5, "over 2 rank(s)"),
        (360_000, 8, 15, "16 CPUs / 1 local rank"),  # 1,000 EEG-hours: no cap
        (None, 1, 15, "16 CPUs / 1 local rank"),  # size unknown (a named remote file): no cap
    ],
)
def test_auto_workers_leave_each_worker_whole_batches_of_a_small_corpus(windows, ranks, expected, why):
    config = LoaderConfig(batch_size=64, num_workers="auto", shuffle_buffer=2000)
    workers, reason = data.auto_num_workers(config, 100_000, _machine(16), windows, ranks)
    assert workers == expected and why in reason
    if windows is not None:  # each worker's epoch holds at least AUTO_MIN_BATCHES full batches
        assert windows // (ranks * workers) >= data.AUTO_MIN_BATCHES * 64 or workers == 1


def test_auto_workers_read_this_machine_and_the_launcher(pipeline_output, monkeypatch):
    here, cpus = data.Machine.here(), Cpus.here()  # core.machine's counts (tests/core/test_machine.py)
    assert (here.cpus, here.total_cpus, here.local_ranks) == (cpus.usable, cpus.total, cpus.local_ranks)
    assert here.cuda == torch.cuda.is_available()
    assert here.memory is None or here.memory > 0
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "3")
    assert data.Machine.here().local_ranks == 3
    record = len(next(read_records(list_files(pipeline_output)[0])))
    assert first_record_bytes(list_files(pipeline_output)[0]) == record > 19 * 2560 * 2


def test_corrupt_file_is_named(pipeline_output, tmp_path):
    bad = tmp_path / "site-x" / "part-00000-of-00001.tfrecord"
    bad.parent.mkdir()
    blob = bytearray(Path(list_files(pipeline_output)[0]).read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    bad.write_bytes(bytes(blob))
    with pytest.raises(CorruptTFRecordError, match=str(bad)):
        _epoch(tmp_path, LoaderConfig(num_workers=0))
    # From a worker process the same error, not DataLoader's RuntimeError around its traceback.
    with pytest.raises(CorruptTFRecordError, match=f"^{bad}: corrupt TFRecord at byte offset") as raised:
        _epoch(tmp_path, LoaderConfig(num_workers=1))
    assert raised.value.path == str(bad) and "Traceback" not in str(raised.value)
