"""The preprocessed windows of a benchmark as numpy arrays, grouped by the corpus's own split.

Baselines read them here; eegfm's runs read the same TFRecords through the training loader, so
both see the same windows of the same subjects.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np

from eegfm.contract.tfrecord import read_records
from eegfm.contract.windows import Window
from eegfm.model.batch import collate
from eegfm.training.data import RecordFilter, check_data, list_files
from eegfm.training.data.catalog import open_source


@dataclasses.dataclass(frozen=True)
class WindowSet:
    """Labeled windows of one task. ``eeg`` float32 [N, 19, T] in uV; ``channel_mask`` [N, 19]
    (1 measured, 0 interpolated); ``label`` int64 [N]
    (-1 where a window has only votes); ``votes`` float32 [N, C] (zeros without votes);
    ``subject``, ``recording`` (pseudonyms), ``site`` and ``split`` (``train``/``dev``/``eval``) one
    string per window."""

    eeg: np.ndarray
    channel_mask: np.ndarray
    label: np.ndarray
    votes: np.ndarray
    subject: np.ndarray
    site: np.ndarray
    recording: np.ndarray
    split: np.ndarray

    def __len__(self) -> int:
        return len(self.label)

    def where(self, mask: np.ndarray) -> WindowSet:
        return WindowSet(**{f.name: getattr(self, f.name)[mask] for f in dataclasses.fields(self)})

    def of_split(self, split: str) -> WindowSet:
        return self.where(self.split == split)


def computed_once(compute: Callable[[WindowSet], np.ndarray]) -> Callable[[WindowSet], np.ndarray]:
    """``compute`` with each window set's result kept, so features several readers share are
    computed once per set. A set is known by its ``eeg`` array, held and compared, since an id is
    reused once an array is freed."""
    found: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def cached(windows: WindowSet) -> np.ndarray:
        held, value = found.get(id(windows.eeg), (None, None))
        if held is not windows.eeg:
            value = compute(windows)
            found[id(windows.eeg)] = (windows.eeg, value)
        return value

    return cached


_ARRAYS = ("eeg", "channel_mask", "label", "votes")  # collated per batch; the other fields are strings


def load_windows(data: str | Sequence[str], task: str, *, batch: int = 256) -> WindowSet:
    """Every window of ``task`` under ``data`` (the pipeline's output, every shard its manifest
    lists: ``check_data``), in file order."""
    filters = RecordFilter(tasks=(task,))
    parts: dict[str, list] = {field.name: [] for field in dataclasses.fields(WindowSet)}
    pending: list[Window] = []

    def flush() -> None:
        collated = collate(pending)  # float32 eeg and channel_mask
        for name in _ARRAYS:
            parts[name].append(collated[name].numpy())
        keys = ("subject", "subject_id"), ("site", "site_id"), ("recording", "recording_id"), ("split", "corpus_split")
        for name, key in keys:
            parts[name] += [w.text(key) for w in pending]
        pending.clear()

    for path in list_files(check_data(data, say=False)):
        with open_source(path) as source:
            for index, raw in enumerate(read_records(source, "SNAPPY")):
                window = Window(raw, path, index)
                if not filters.accepts(window):
                    continue
                if pending and window.n_times != pending[0].n_times:
                    flush()  # a batch holds windows of one length
                pending.append(window)
                if len(pending) == batch:
                    flush()
    if pending:
        flush()
    if not parts["label"]:
        raise FileNotFoundError(f"data: no window of task {task!r} under {data}; expected the pipeline's output")
    lengths = {a.shape[-1] for a in parts["eeg"]}
    if len(lengths) > 1:
        raise ValueError(f"data: windows of task {task!r} differ in length ({sorted(lengths)} samples); expected one")
    return WindowSet(**{name: np.concatenate(v) if name in _ARRAYS else np.array(v) for name, v in parts.items()})
