"""A benchmark run's options, typed and checked once: the CLI builds them from its arguments and
every suite reads them (no argparse namespace handed down)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from eegfm.core.config import ConfigError
from eegfm.evaluation.benchmark.rows import ROWS, baseline_names
from eegfm.evaluation.benchmark.runs import METHODS

DEFAULT_CONFIG = "cpu-small"
EEGMAT_METHODS = ("eegfm", "scratch", "linear_probe", "eegfm_10pct", "scratch_10pct", "cbramod", "labram")


@dataclasses.dataclass(frozen=True)
class BenchmarkOptions:
    """What every suite's eegfm runs and baselines share (see ``eegfm-benchmark SUITE --help``)."""

    output: Path
    config: str = DEFAULT_CONFIG
    seeds: tuple[int, ...] = (0, 1, 2)
    reference_seeds: tuple[int, ...] | None = None
    methods: tuple[str, ...] = EEGMAT_METHODS
    baselines: tuple[str, ...] = tuple(baseline_names())
    shared_encoder: str | None = None
    unlabeled: tuple[str, ...] = ()
    pretrain_steps: int | None = None
    pretrain_set: tuple[str, ...] = ()
    finetune_set: tuple[str, ...] = ()
    pseudonym_key_file: str | None = None
    export: Path | None = None
    eegnet_max_epochs: int = 30  # deep_baselines.MAX_EPOCHS

    def __post_init__(self) -> None:
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"--seeds: expected one or more distinct seeds; got {list(self.seeds)}")
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown:
            raise ConfigError(f"--methods: expected names of {', '.join(METHODS)}; got {unknown}")
        unknown = [b for b in self.baselines if b not in ROWS or ROWS[b].kind != "baseline"]
        if unknown:
            raise ConfigError(f"--baselines: expected names of {', '.join(baseline_names())}; got {unknown}")
        if self.eegnet_max_epochs < 1:
            raise ConfigError(
                f"--eegnet_max_epochs: expected a positive number of epochs; got {self.eegnet_max_epochs}"
            )
        if self.pretrain_steps is not None and self.pretrain_steps < 1:
            raise ConfigError(f"--pretrain_steps: expected a positive number of steps; got {self.pretrain_steps}")

    @classmethod
    def from_args(cls, args) -> BenchmarkOptions:
        """From the CLI's parsed arguments (a suite's own options stay with the suite)."""
        methods = list(getattr(args, "methods", EEGMAT_METHODS))
        if getattr(args, "shared_encoder", None) and "eegfm_shared" not in methods:
            methods.append("eegfm_shared")
        reference = getattr(args, "reference_seeds", None)
        export = getattr(args, "export", None)
        return cls(
            output=Path(args.output),
            config=args.config,
            seeds=tuple(getattr(args, "seeds", (0, 1, 2))),
            reference_seeds=None if reference is None else tuple(reference),
            methods=tuple(methods),
            baselines=tuple(getattr(args, "baselines", None) or baseline_names()),
            shared_encoder=getattr(args, "shared_encoder", None),
            unlabeled=tuple(args.unlabeled),
            pretrain_steps=args.pretrain_steps,
            pretrain_set=tuple(args.pretrain_set),
            finetune_set=tuple(getattr(args, "finetune_set", ())),
            pseudonym_key_file=args.pseudonym_key_file,
            export=None if export is None else Path(export),
            eegnet_max_epochs=getattr(args, "eegnet_max_epochs", 30),
        )
