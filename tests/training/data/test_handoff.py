from __future__ import annotations

import dataclasses
import multiprocessing
from collections.abc import Iterator

import pytest
import torch

from eegfm.training.augment import AugmentConfig
from eegfm.training.data import EEGLoader, LoaderConfig, handoff, list_files, workers
from eegfm.training.data.handoff import Handoff, SharedBatch, handoff_supported
from eegfm.training.data.stream import ShardStream

needs_handoff = pytest.mark.skipif(not handoff_supported(), reason="needs memfd, send_fds and forked workers")


def _tensors(seed: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {
        "eeg": torch.randn(3, 19, 256, generator=generator).half(),
        "ecg": torch.randn(3, 256, generator=generator).half(),
    }


def _send_from_child(channel: Handoff, worker: int, seeds: list[int], refs) -> None:
    for seed in seeds:
        refs.put(channel.send(worker, _tensors(seed)))


@needs_handoff
def test_batches_cross_from_forked_workers_in_order_with_their_values():
    channel = Handoff(2)
    refs = multiprocessing.get_context("fork").Queue()
    children = [
        multiprocessing.get_context("fork").Process(target=_send_from_child, args=(channel, w, seeds, refs))
        for w, seeds in ((0, [1, 2, 3]), (1, [4, 5]))
    ]
    try:
        for child in children:
            child.start()
        got = [refs.get(timeout=60) for _ in range(5)]
        for child in children:
            child.join(60)
        assert sorted((r.worker, r.seq) for r in got) == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1)]
        seeds = {(0, 0): 1, (0, 1): 2, (0, 2): 3, (1, 0): 4, (1, 1): 5}
        for ref in sorted(got, key=lambda r: (r.worker, r.seq)):
            tensors = ref.resolve()
            expected = _tensors(seeds[ref.worker, ref.seq])
            assert set(tensors) == {"eeg", "ecg"}
            assert all(torch.equal(tensors[k], expected[k]) for k in expected)
            # eeg and ecg share the one segment the worker sent, mapped shared in this process
            assert tensors["eeg"].is_shared()
            assert tensors["eeg"].untyped_storage().data_ptr() == tensors["ecg"].untyped_storage().data_ptr()
    finally:
        channel.close()
    with pytest.raises(RuntimeError, match="iteration has ended"):
        got[0].resolve()


def _send_reusing(channel: Handoff, go, report) -> None:
    channel.send(0, _tensors(1))
    channel.send(0, _tensors(2))
    go.wait(60)  # the main process now holds batch 0 and has let go of batch 1
    channel.send(0, _tensors(3))
    channel.send(0, _tensors(4))
    report.put(channel.segments_made)


@needs_handoff
def test_a_segment_is_written_again_only_after_the_trainer_let_go_of_its_batch():
    context = multiprocessing.get_context("fork")
    channel, go, report = Handoff(1), context.Event(), context.Queue()
    child = context.Process(target=_send_reusing, args=(channel, go, report))
    child.start()
    try:
        held = SharedBatch(channel.token, 0, 0, *_ref_layout()).resolve()
        view = held["eeg"][1:, 3]  # a view alone keeps the batch's segment in use too
        del held
        dropped = SharedBatch(channel.token, 0, 1, *_ref_layout()).resolve()
        assert torch.equal(dropped["eeg"], _tensors(2)["eeg"])
        del dropped
        go.set()
        third = SharedBatch(channel.token, 0, 2, *_ref_layout()).resolve()
        fourth = SharedBatch(channel.token, 0, 3, *_ref_layout()).resolve()
        assert report.get(timeout=60) == 3  # batch 3 reused batch 2's segment; batch 4 needed a new one
        assert torch.equal(view, _tensors(1)["eeg"][1:, 3])  # never overwritten while held
        assert torch.equal(third["eeg"], _tensors(3)["eeg"]) and torch.equal(fourth["ecg"], _tensors(4)["ecg"])
    finally:
        child.join(60)
        channel.close()


def _ref_layout() -> tuple:
    layout, total = handoff._layout(handoff._specs(_tensors(0)))
    return tuple(layout), total


def _build(channel: Handoff, specs, seed: int) -> dict[str, torch.Tensor]:
    """``_tensors(seed)`` written into the tensors ``channel.buffers`` hands out, as a worker would."""
    built = channel.buffers(specs)
    for name, tensor in _tensors(seed).items():
        built[name].copy_(tensor)
    return built


@pytest.fixture
def channel() -> Iterator[Handoff]:
    """A one-worker hand-off whose worker is this process (flock locks are per open file
    description, so one process can play both sides)."""
    one = Handoff(1)
    yield one
    one.close()


@needs_handoff
def test_a_batch_built_in_a_segment_is_sent_in_place_and_a_replaced_one_is_copied(channel):
    specs = handoff._specs(_tensors(0))
    built = _build(channel, specs, 1)
    first = channel.receive(channel.send(0, built))
    assert all(torch.equal(first[k], v) for k, v in _tensors(1).items())
    built["eeg"].zero_()  # the worker's mapping is the segment the main process reads
    assert not first["eeg"].any()
    built["eeg"].copy_(_tensors(1)["eeg"])
    again = _build(channel, specs, 2)  # `first` is held, so its segment is not handed out
    assert again["eeg"].data_ptr() != built["eeg"].data_ptr()
    # augmentation replaces tensors after the build: they are copied in, the kept ones intact
    second = channel.receive(channel.send(0, {"eeg": again["eeg"] * 2, "ecg": again["ecg"]}))
    assert torch.equal(second["eeg"], _tensors(2)["eeg"] * 2)
    assert torch.equal(second["ecg"], _tensors(2)["ecg"])
    assert torch.equal(first["eeg"], _tensors(1)["eeg"]) and channel.segments_made == 2
    del second
    assert channel.buffers(specs)["eeg"].data_ptr() == again["eeg"].data_ptr()  # let go of: reused


@needs_handoff
def test_batches_built_side_by_side_are_each_sent_in_place_or_given_back(channel):
    # The loader fills several batches at once, sends some of a build's tensors (a batch
    # without ECG) and gives back builds it merged away.
    specs = handoff._specs(_tensors(0))
    first, second, third = (_build(channel, specs, seed) for seed in (1, 2, 3))
    assert len({b["eeg"].data_ptr() for b in (first, second, third)}) == 3 and channel.segments_made == 3
    only_eeg = channel.receive(channel.send(0, {"eeg": second["eeg"]}))
    assert only_eeg.keys() == {"eeg"} and torch.equal(only_eeg["eeg"], _tensors(2)["eeg"])
    second["eeg"].zero_()  # sent in place: the main process reads the worker's segment
    assert not only_eeg["eeg"].any()
    assert channel.discard(third) and not channel.discard(third) and not channel.discard(_tensors(4))
    whole = channel.receive(channel.send(0, first))
    assert all(torch.equal(whole[k], v) for k, v in _tensors(1).items()) and channel.segments_made == 3
    assert channel.buffers(specs)["eeg"].data_ptr() == third["eeg"].data_ptr()  # given back: reused
    assert channel.buffers(specs)["eeg"].data_ptr() not in {first["eeg"].data_ptr(), second["eeg"].data_ptr()}
    assert channel.segments_made == 4  # both sent batches are still held


@needs_handoff
def test_with_every_pooled_segment_held_a_batch_is_built_elsewhere_and_sent_in_a_new_segment(channel, monkeypatch):
    monkeypatch.setattr(handoff, "POOL_SEGMENTS", 1)
    specs = handoff._specs(_tensors(0))
    held = channel.receive(channel.send(0, _build(channel, specs, 1)))
    assert channel.buffers(specs) is None  # the one pooled segment is held by the trainer
    extra = channel.receive(channel.send(0, _tensors(2)))
    assert torch.equal(extra["eeg"], _tensors(2)["eeg"]) and torch.equal(held["ecg"], _tensors(1)["ecg"])
    assert channel.segments_made == 2 and len(channel._pool[extra["eeg"].untyped_storage().nbytes()]) == 1


@needs_handoff
def test_segments_of_sizes_no_longer_used_are_closed_to_keep_the_pool_bounded(channel, monkeypatch):
    monkeypatch.setattr(handoff, "POOL_SEGMENTS", 4)

    def batch(n):  # 512 * n bytes: a size of its own for each n
        return {"eeg": torch.full((2, 64 * n), float(n))}

    held = [channel.receive(channel.send(0, batch(n))) for n in (1, 2)]
    for n in range(3, 12):  # a new size each time, let go of at once
        sent = channel.receive(channel.send(0, batch(n)))
        assert torch.equal(sent["eeg"], batch(n)["eeg"])
        del sent
        assert sum(len(pool) for pool in channel._pool.values()) <= 4
    assert channel.segments_made == 11
    # the held batches' segments were never closed or written again
    assert torch.equal(held[0]["eeg"], batch(1)["eeg"]) and torch.equal(held[1]["eeg"], batch(2)["eeg"])
    assert len(channel._pool[512]) == len(channel._pool[1024]) == 1


@needs_handoff
def test_a_batch_out_of_order_is_refused_not_mixed_up(channel):
    first = channel.send(0, _tensors(1))  # same process stands in for the worker
    second = channel.send(0, _tensors(2))
    with pytest.raises(RuntimeError, match="worker 0 batch 1 arrived, expected batch 0"):
        channel.receive(second)
    assert torch.equal(channel.receive(first)["eeg"], _tensors(1)["eeg"])
    assert torch.equal(channel.receive(second)["ecg"], _tensors(2)["ecg"])


@needs_handoff
def test_a_handoff_cannot_be_pickled_into_spawned_workers(channel):
    with pytest.raises(TypeError, match="must be forked"):
        channel.__reduce_ex__(2)


@needs_handoff
def test_loader_workers_send_references_and_the_loader_closes_its_sockets(pipeline_output):
    config = LoaderConfig(batch_size=4, num_workers=2, shuffle=False, eeg_dtype="float16")
    loader = EEGLoader(pipeline_output, config, rank=0, world_size=1, infinite=False)
    channel = Handoff(2)
    try:
        wire = [batch for _, batch in loader._data_loader(channel)]
        assert wire and all(isinstance(b[workers._SHARED], SharedBatch) and "eeg" not in b for b in wire)
        batches = [workers.from_wire(b) for b in wire]
    finally:
        channel.close()
    reference = list(
        EEGLoader(pipeline_output, dataclasses.replace(config, num_workers=0), rank=0, world_size=1, infinite=False)
    )
    assert sum(len(b["label"]) for b in batches) == sum(len(b["label"]) for b in reference)
    assert all(b["eeg"].dtype == torch.float16 and b["eeg"].is_shared() for b in batches)
    assert sorted(float(b["eeg"].double().sum()) for b in batches) == sorted(
        float(b["eeg"].double().sum()) for b in _worker_free(pipeline_output, config)
    )
    list(loader)  # a whole pass through __iter__ leaves no hand-off open
    assert not handoff._OPEN


def _worker_free(path, config):
    """The same batches made in this process, by running each worker's shard stream directly."""
    out = []
    for worker in range(config.num_workers):
        stream = ShardStream(list_files(path), config, worker, config.num_workers)
        out += [batch for _, _, batch in stream.batches(0)]
    return out


@pytest.mark.parametrize("augmented", [False, True])
def test_the_plain_transfer_yields_the_same_batches(pipeline_output, augmented):
    # fast_ipc=False: DataLoader's own transfer of tensors in shared memory, no hand-off.
    config = LoaderConfig(batch_size=4, num_workers=2, shuffle_buffer=6, seed=3, eeg_dtype="float16")
    if augmented:
        config = dataclasses.replace(config, augment=AugmentConfig(time_shift=64, noise_std=1.0))
    fast, plain = (
        list(
            EEGLoader(
                pipeline_output, dataclasses.replace(config, fast_ipc=fast_ipc), rank=0, world_size=1, infinite=False
            )
        )
        for fast_ipc in (True, False)
    )
    assert len(fast) == len(plain) > 1 and not handoff._OPEN
    for a, b in zip(fast, plain):
        assert a.keys() == b.keys()
        for key, value in a.items():
            if isinstance(value, torch.Tensor):  # exactly, NaN (no age, no ECG) included
                torch.testing.assert_close(value, b[key], rtol=0, atol=0, equal_nan=True)
            else:
                assert value == b[key], key


@pytest.mark.skipif(not torch.cuda.is_available(), reason="pinned memory needs CUDA")
@needs_handoff
def test_pinned_batches_resolve_in_the_pin_memory_thread(pipeline_output):
    config = LoaderConfig(batch_size=4, num_workers=2, shuffle=False, pin_memory=True)
    batches = list(EEGLoader(pipeline_output, config, rank=0, world_size=1, infinite=False))
    assert batches and all(b["eeg"].is_pinned() for b in batches)
