"""What every training command shares at launch: the run on one process or under
torchrun/horovodrun, bad input answered with one line. The command-line options, what they name and
their overrides are ``training.run_options``' (re-exported here)."""

from __future__ import annotations

import sys
from collections.abc import Callable

from eegfm.contract.schema import SchemaError
from eegfm.contract.tfrecord import CorruptTFRecordError
from eegfm.core.stores import StoreUnreachableError
from eegfm.training.checkpoint import CheckpointError
from eegfm.training.config import ConfigError
from eegfm.training.distributed import Dist, DistributedError, init_distributed
from eegfm.training.run_options import PREEMPTED_EXIT_CODE, RunSpec, add_run_arguments, run_overrides

_BAD_INPUT = (ConfigError, CheckpointError, FileNotFoundError, StoreUnreachableError, CorruptTFRecordError, SchemaError)
__all__ = ["PREEMPTED_EXIT_CODE", "RunSpec", "add_run_arguments", "launch", "run_overrides"]


def launch(prog: str, backend: str, device: str, train: Callable[[Dist], int]) -> int:
    """Join the process group, run ``train``, leave the group; bad input exits 2 with one line."""
    try:
        dist = init_distributed(backend, device=device)
    except DistributedError as err:
        print(f"{prog}: {err}", file=sys.stderr)
        return 2
    try:
        return train(dist)
    except _BAD_INPUT as err:
        print(f"{prog}: {err}", file=sys.stderr)
        return 2
    finally:
        dist.shutdown()
