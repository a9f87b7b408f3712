"""A benchmark run's options, typed and checked once: the CLI builds them from its arguments and
every suite reads them (no argparse namespace handed down). :class:`BenchmarkOptions` are what
every suite shares; each suite's corpus has its own dataclass."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from eegfm.core.config import ConfigError
from eegfm.evaluation.comparison.methods import METHODS, check_shared_encoder
from eegfm.evaluation.comparison.rows import ROWS, baseline_names

DEFAULT_CONFIG = "cpu-small"
# The benchmarks' window length where a run names none (the folder suite's --window_seconds,
# eegmat's, the shared encoder's corpora); the pipeline's own default is contract.schema.WINDOW_SECONDS.
BENCHMARK_WINDOW_SECONDS = 5.0
LAYOUTS = ("edf", "hms")  # the simulated corpus's layouts
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
    adapt_steps: int | None = None  # eegfm_adapted's further pretraining of the shared encoder
    pretrain_set: tuple[str, ...] = ()
    finetune_set: tuple[str, ...] = ()
    pseudonym_key_file: str | None = None
    export: Path | None = None
    eegnet_max_epochs: int = 30  # deep_baselines.MAX_EPOCHS
    workers: int | None = None  # fits side by side (core.job_pool); None: one per thread

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
        if self.workers is not None and self.workers < 1:
            raise ConfigError(f"--workers: expected a positive number of worker processes; got {self.workers}")
        for name in ("pretrain_steps", "adapt_steps"):
            if (steps := getattr(self, name)) is not None and steps < 1:
                raise ConfigError(f"--{name}: expected a positive number of steps; got {steps}")
        check_shared_encoder(self.methods, self.shared_encoder)

    @classmethod
    def from_args(cls, args) -> BenchmarkOptions:
        """From the CLI's parsed arguments (a suite's own options are its own dataclass below)."""
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
            adapt_steps=getattr(args, "adapt_steps", None),
            pretrain_set=tuple(args.pretrain_set),
            finetune_set=tuple(getattr(args, "finetune_set", ())),
            pseudonym_key_file=args.pseudonym_key_file,
            export=None if export is None else Path(export),
            eegnet_max_epochs=getattr(args, "eegnet_max_epochs", 30),
            workers=getattr(args, "workers", None),
        )


@dataclasses.dataclass(frozen=True)
class FolderOptions:
    """The folder suite's corpus: recordings, their label table and how to window and split them."""

    data: Path
    labels: Path
    window_seconds: float = BENCHMARK_WINDOW_SECONDS
    classes: tuple[str, ...] = ()
    split_seed: int = 0

    def __post_init__(self) -> None:
        if not self.window_seconds > 0:
            raise ConfigError(f"--window_seconds: expected a positive length in seconds; got {self.window_seconds}")


@dataclasses.dataclass(frozen=True)
class SimulatedOptions:
    """The simulated suite's corpus: its sites (each a leave-one-site-out fold), seed, people and layout."""

    sites: int = 6
    seed: int = 0
    subjects_per_site: int = 10
    layout: str = "edf"

    def __post_init__(self) -> None:
        if self.sites < 2:
            raise ConfigError(f"--sites: leave-one-site-out needs at least 2 sites; got {self.sites}")
        if self.subjects_per_site < 2:
            raise ConfigError(
                f"--subjects_per_site: fine-tuning keeps people aside for validation, so at least 2; "
                f"got {self.subjects_per_site}"
            )
        if self.layout not in LAYOUTS:
            raise ConfigError(f"--layout: expected one of {', '.join(LAYOUTS)}; got {self.layout!r}")


@dataclasses.dataclass(frozen=True)
class SharedOptions:
    """The shared encoder's corpora: the real ones under ``shared_data`` and a simulated one."""

    shared_data: Path
    simulated_sites: int = 6

    def __post_init__(self) -> None:
        if self.simulated_sites < 0:
            raise ConfigError(f"--simulated_sites: expected 0 (none) or more sites; got {self.simulated_sites}")
