"""What windows an epoch holds (:class:`RecordFilter`) and how they become batches (:class:`LoaderConfig`)."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import torch

from eegfm.contract.schema import CORPUS_SPLITS
from eegfm.core.config import ConfigError, check_int, check_option, check_range
from eegfm.training.augment import AugmentConfig
from eegfm.training.config_choices import AUTO

EEG_DTYPES = {"float32": torch.float32, "float16": torch.float16}


def _names(name: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{name}: expected a list of strings; got {value!r}")
    return tuple(value)


@dataclasses.dataclass(frozen=True)
class RecordFilter:
    """Which windows an epoch contains; defaults keep everything. ``sites``, ``subjects`` and
    ``tasks`` keep (``""``: unlabeled); ``exclude_*`` drop; ``min_votes`` (expert votes),
    ``max_artifact_score`` and ``min_samples`` are thresholds."""

    sites: tuple[str, ...] = ()
    exclude_sites: tuple[str, ...] = ()
    tasks: tuple[str, ...] = ()
    min_votes: float = 0.0
    max_artifact_score: float = 1.0
    subjects: tuple[str, ...] = ()
    exclude_subjects: tuple[str, ...] = ()
    min_samples: int = 0
    exclude_corpus_splits: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("sites", "exclude_sites", "tasks", "subjects", "exclude_subjects", "exclude_corpus_splits"):
            object.__setattr__(self, name, _names(f"RecordFilter.{name}", getattr(self, name)))
        for split in self.exclude_corpus_splits:
            check_option("RecordFilter.exclude_corpus_splits", split, CORPUS_SPLITS[1:])
        check_range("RecordFilter.min_votes", self.min_votes, 0.0)
        check_range("RecordFilter.max_artifact_score", self.max_artifact_score, 0.0, 1.0)
        check_int("RecordFilter.min_samples", self.min_samples, 0)

    def accepts(self, window: Any) -> bool:
        """Whether ``window`` (a ``contract.windows.Window``) passes."""
        if window.n_times < self.min_samples:
            return False
        if self.sites or self.exclude_sites:
            site = window.text("site_id")
            if (self.sites and site not in self.sites) or site in self.exclude_sites:
                return False
        if self.tasks and window.text("task") not in self.tasks:
            return False
        if self.subjects or self.exclude_subjects:
            subject = window.text("subject_id")
            if (self.subjects and subject not in self.subjects) or subject in self.exclude_subjects:
                return False
        if self.min_votes > 0 and float(window.floats("votes").sum()) < self.min_votes:
            return False
        if self.exclude_corpus_splits and window.text("corpus_split") in self.exclude_corpus_splits:
            return False
        return self.max_artifact_score >= 1.0 or window.scalar("artifact_score") <= self.max_artifact_score


@dataclasses.dataclass(frozen=True)
class LoaderConfig:
    """How windows become batches. Give exactly one of ``batch_size`` and ``token_budget``.

    token_budget: ``max(1, min(max_batch_size, token_budget // tokens))`` windows of one length.
    pin_memory: None means "if CUDA is there". full_shuffle_mb: where the loader knows each
        shard's windows and they fit, the shuffle buffer holds a whole epoch (0: never).
    eeg_dtype: ``"float16"`` (the stored precision) halves the bytes handed over.
    fast_ipc (``handoff``, 3x the windows/s) and split_samples (``records``, 1.2-1.3x): off,
        the same batches come by DataLoader's transfer and protobuf's whole parse.

    The defaults of the settings a run's ``loader:`` section chooses are these, the one set
    (``training.config_sections.LoaderSection`` reads them).
    """

    batch_size: int | None = 8
    token_budget: int | None = None
    max_batch_size: int = 256
    patch_size: int = 1
    drop_last: bool = False
    num_workers: int | str = 0
    prefetch_factor: int = 4
    pin_memory: bool | None = None
    shuffle: bool = True
    shuffle_buffer: int = 1000
    full_shuffle_mb: float = 1024.0
    seed: int = 0
    verify_crc: bool = True
    eeg_dtype: str = "float32"
    fast_ipc: bool = True
    split_samples: bool = True
    augment: AugmentConfig = dataclasses.field(default_factory=AugmentConfig)
    filters: RecordFilter = dataclasses.field(default_factory=RecordFilter)

    def __post_init__(self) -> None:
        if (self.batch_size is None) == (self.token_budget is None):
            raise ConfigError(
                "LoaderConfig.batch_size, LoaderConfig.token_budget: expected exactly one "
                f"of them; got batch_size={self.batch_size!r}, token_budget={self.token_budget!r}"
            )
        check_int("LoaderConfig.batch_size", self.batch_size, 1, optional=True)
        check_int("LoaderConfig.token_budget", self.token_budget, 1, optional=True)
        check_int("LoaderConfig.max_batch_size", self.max_batch_size, 1)
        check_int("LoaderConfig.patch_size", self.patch_size, 1)
        workers = self.num_workers
        if workers != AUTO and (isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 0):
            raise ConfigError(f"LoaderConfig.num_workers: expected an integer >= 0 or {AUTO!r}; got {workers!r}")
        check_int("LoaderConfig.prefetch_factor", self.prefetch_factor, 1)
        check_int("LoaderConfig.shuffle_buffer", self.shuffle_buffer, 0)
        if (
            isinstance(self.full_shuffle_mb, bool)
            or not isinstance(self.full_shuffle_mb, (int, float))
            or not 0 <= self.full_shuffle_mb < math.inf
        ):
            raise ConfigError(
                f"LoaderConfig.full_shuffle_mb: expected a number of MiB >= 0; got {self.full_shuffle_mb!r}"
            )
        check_int("LoaderConfig.seed", self.seed, 0)
        for name in ("drop_last", "shuffle", "verify_crc", "fast_ipc", "split_samples"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"LoaderConfig.{name}: expected True or False; got {getattr(self, name)!r}")
        check_option("LoaderConfig.eeg_dtype", self.eeg_dtype, EEG_DTYPES)
        if self.pin_memory not in (None, True, False):
            raise ConfigError(f"LoaderConfig.pin_memory: expected True, False or None; got {self.pin_memory!r}")
        for name, kind in (("augment", AugmentConfig), ("filters", RecordFilter)):
            if not isinstance(getattr(self, name), kind):
                raise ConfigError(f"LoaderConfig.{name}: expected a {kind.__name__}; got {getattr(self, name)!r}")

    def batch_size_for(self, n_times: int) -> int:
        """Windows per batch for windows of ``n_times`` samples."""
        if self.batch_size is not None:
            return self.batch_size
        tokens = -(-n_times // self.patch_size)
        return max(1, min(self.max_batch_size, self.token_budget // tokens))
