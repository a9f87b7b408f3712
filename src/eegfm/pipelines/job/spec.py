"""What the launcher hands the job: the graph's :class:`JobSpec` and the :class:`LaunchOptions` around
it, as ``options.job_from_args`` makes them from the command line.

Light on purpose (dataclasses, no Beam): the command line reads their defaults for ``--help``.
"""

from __future__ import annotations

import dataclasses

from eegfm.core.config import ConfigError
from eegfm.pipelines.job.limits import DEFAULT_MAX_SHARD_BYTES


@dataclasses.dataclass(frozen=True)
class JobSpec:
    """What the job's graph takes from the launcher's checked command line.

    ``artifact_model``: a saved autoencoder to score with, or "" to fit one on ``ae_sample_size``
    windows of ``ae_train_sites`` (site names as given; none: every site); ``use_artifact_model``
    False scores with the rules alone. ``num_shards`` 0: shards of at most ``max_shard_bytes``."""

    inputs: tuple[str, ...]
    output: str
    pseudonym_key_file: str
    redact_paths: bool = True
    shown_folders: tuple[str, ...] | None = None  # None: the folder each input is given in
    artifact_model: str = ""
    use_artifact_model: bool = True
    ae_sample_size: int = 2000
    ae_train_sites: tuple[str, ...] = ()
    num_shards: int = 0
    max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES
    run_token: str = ""  # the launcher's run lock on a local output (core.run_lock); '' for none

    def __post_init__(self):
        for name in ("ae_sample_size", "max_shard_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"JobSpec.{name}: expected an integer >= 1; got {getattr(self, name)}")
        if self.num_shards < 0:
            raise ValueError(f"JobSpec.num_shards: expected an integer >= 0; got {self.num_shards}")


@dataclasses.dataclass(frozen=True)
class LaunchOptions:
    """What the launcher does around the job's graph: how it reads the inputs' layout (``dataset``,
    ``site``: None, from the paths), what becomes of an earlier run's outputs (``overwrite``), the
    report after the run, a missing key file (``create_key_file``), unsigned S3 reads, the stall
    watchdog (seconds; 0: never) and Beam's own pipeline options (as Beam parses them)."""

    dataset: str = "auto"
    site: str | None = None
    overwrite: bool = False
    report: bool = False
    create_key_file: bool = False
    s3_anonymous: bool = False
    stall_timeout_s: float = 600.0
    beam_args: tuple[str, ...] = ()

    def __post_init__(self):
        if not self.stall_timeout_s >= 0:
            raise ConfigError(f"--stall_timeout_s: expected seconds >= 0 (0: never); got {self.stall_timeout_s:g}")
