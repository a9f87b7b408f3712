"""How each row of the benchmark's registry (``rows``) is fitted: the :class:`Context` of one
labeled run (its windows, classes, fine-tuning runs and the fits its rows share) and one function
per row, named by its registration. Imported when a row is fitted: torch, scikit-learn, MNE and
pyRiemann come with it, which the registry, and so ``eegfm-benchmark --help``, does without."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import numpy as np

from eegfm.core import stopwatch
from eegfm.core.job_pool import WAITING, JobPool, plan
from eegfm.evaluation.comparison import baselines, deep_baselines, spectral_stack, tangent_space
from eegfm.evaluation.comparison.pretrainings import pretrain_folder
from eegfm.evaluation.comparison.windows import WindowSet
from eegfm.model.fused import FusedModel, Part, Readout


@dataclasses.dataclass
class Context:
    """What the rows of one labeled run are fitted from: its windows, classes and folders, the
    fine-tuning runs (``runs.run_methods``' reports) and, fitted once and shared, the spectral
    readout and EEGNet's seeds."""

    windows: WindowSet
    labels: tuple[str, ...]
    output: Path
    seeds: Sequence[int]
    window_seconds: float
    reports: dict[str, dict[str, list[dict[str, Any]]]] = dataclasses.field(default_factory=dict)
    eegnet_max_epochs: int = deep_baselines.MAX_EPOCHS
    pool: JobPool | None = None  # where EEGNet's fits run (None: in this process, one after another)
    # Class-balanced linear fits: balanced accuracy wants decisions beyond the majority class; the
    # simulated suite's KL on vote distributions wants the probabilities unweighted.
    balanced: bool = True
    _eegnet_fits: Future | None = dataclasses.field(default=None, init=False, repr=False)

    @property
    def n_classes(self) -> int:
        return len(self.labels)

    @functools.cached_property
    def train(self) -> WindowSet:
        return self.windows.of_split("train")

    @functools.cached_property
    def validation(self) -> WindowSet:
        return self.windows.of_split("dev")

    def model(self, parts: list[Part], **card: Any) -> FusedModel:
        return FusedModel(self.labels, parts, self.window_seconds, card)

    @functools.cached_property
    def covariances(self) -> Callable[[WindowSet], np.ndarray]:
        """Each window set's band covariances, computed once for the readout and the tangent-space
        baseline (30 s for a 60-person corpus's 7,200 windows on one core)."""
        return tangent_space.band_covariances_of()

    @functools.cached_property
    def readout(self) -> tuple[Readout, dict[str, Any]]:
        """eegfm's spectral readout of its own pretrained encoder (``spectral_stack``)."""
        encoder = pretrain_folder(self.output) / "model"
        with stopwatch.part("spectral readout"):
            return spectral_stack.spectral_readout(
                encoder, self.train, self.n_classes, self.validation, self.covariances
            )

    def start_eegnets(self) -> None:
        """Start EEGNet's fits now (:meth:`eegnets`), on a thread whose jobs share ``pool`` with
        the fine-tuning runs submitted meanwhile, rather than after them."""
        if self._eegnet_fits is None:
            grid = {**deep_baselines.GRID, "max_epochs": (self.eegnet_max_epochs,)}
            cache = self.output / "baselines"
            pool = self.pool or JobPool(plan(1, 1))
            args = (self.train, self.validation, self.n_classes, self.seeds, grid, cache, pool)
            self._eegnet_fits = pool.beside(deep_baselines.chosen_weights, *args, name="EEGNet")

    @functools.cached_property
    def eegnets(self) -> list[deep_baselines.EEGNetFit]:
        """EEGNet fitted once per seed of the run: the first seed searches the grid, the others
        train the setting it chose, each stopping at its own best validation epoch
        (``deep_baselines.chosen_weights``; side by side in ``pool``; started by :meth:`start_eegnets`,
        or here). As many candidates as eegfm's network gets (two recipes a seed), at a fraction
        of the grid on every seed, which took a 60-person run's EEGNet past 30 of its 45 minutes."""
        self.start_eegnets()
        done = self._eegnet_fits.done()
        with contextlib.nullcontext() if done else stopwatch.part(WAITING):  # the command's wait, not the row's work
            weights = self._eegnet_fits.result()
        return [fit.network() for fit in weights]

    @functools.cached_property
    def recipe_share(self) -> tuple[float, dict[str, Any]]:
        """The eegfm networks' share of the recipe's fusion and what chose it (:func:`_share`)."""
        return _share(_recipe_networks(self), self)

    def network_folders(self, method: str) -> list[Path]:
        """The model folders of ``method``'s runs, one per seed."""
        return [Path(run["run"]) / "model" for run in self.reports[method]["corpus"]]


@dataclasses.dataclass
class Fitted:
    """A row's models (one per seed, or one) and what validation chose for it."""

    models: list[FusedModel]
    chosen: Any = None


def _readout_part(context: Context, weight: float = 1.0) -> Part:
    return Part("readout", weight, readout=context.readout[0])


def class_prior(context: Context) -> Fitted:
    prior = baselines.class_prior(context.train, context.n_classes)(context.train)[0]
    return Fitted([context.model([Part("prior", 1.0, prior=prior)])])


def band_power_lr(context: Context) -> Fitted:
    fit = baselines.band_power_lr(context.train, context.n_classes, context.validation, balanced=context.balanced)
    readout = Readout(("powers",), fit.linear)
    return Fitted([context.model([Part("readout", 1.0, readout=readout)])], {"C": fit.c})


def tangent_space_lr(context: Context) -> Fitted:
    fit, tangent = tangent_space.tangent_space_lr(
        context.train, context.n_classes, context.validation, context.covariances
    )
    readout = Readout((tangent.metric,), fit.linear, {tangent.metric: tangent})
    return Fitted([context.model([Part("readout", 1.0, readout=readout)])], {"metric": tangent.metric, "C": fit.c})


def _eegnet_part(fits: Sequence[deep_baselines.EEGNetFit], weight: float) -> Part:
    return Part("eegnet", weight, eegnets=[f.model for f in fits], eegnet_settings=fits[0].settings)


def eegnet(context: Context) -> Fitted:
    models = [context.model([_eegnet_part([fit], 1.0)]) for fit in context.eegnets]
    return Fitted(models, [fit.record for fit in context.eegnets])


def eegnet_ensemble(context: Context) -> Fitted:
    return Fitted([context.model([_eegnet_part(context.eegnets, 1.0)])])


def spectral_readout(context: Context) -> Fitted:
    return Fitted([context.model([_readout_part(context)])], context.readout[1])


def _validation_probabilities(part: Part, context: Context) -> np.ndarray:
    validation = context.validation
    alone = context.model([dataclasses.replace(part, weight=1.0)])
    return alone.probabilities(validation.eeg, validation.channel_mask)


def _share(networks: list[Part], context: Context) -> tuple[float, dict[str, Any]]:
    """The networks' share of their fusion with the readout (``spectral_stack.choose_share``, on
    validation) and what chose it, beside the readout's own choice."""
    readout = _validation_probabilities(_readout_part(context), context)
    target = baselines.targets(context.validation, context.n_classes)
    found = [_validation_probabilities(part, context) for part in networks]
    share, losses = spectral_stack.choose_share(found, readout, target, context.balanced)
    spread = {f"{w:g}": round(loss, 6) for w, loss in losses.items()}
    return share, {**context.readout[1], "network_share": share, "share_validation_loss": spread}


def _stacked(networks: list[Part], share: float, context: Context) -> list[FusedModel]:
    readout = _readout_part(context, 1.0 - share)
    return [context.model([dataclasses.replace(network, weight=share), readout]) for network in networks]


def eegnet_stack(context: Context) -> Fitted:
    networks = [_eegnet_part([fit], 1.0) for fit in context.eegnets]
    share, chosen = _share(networks, context)
    return Fitted(_stacked(networks, share, context), chosen)


def _recipe_networks(context: Context) -> list[Part]:
    return [Part("network", 1.0, folders=[folder]) for folder in context.network_folders("eegfm")]


def recipe(context: Context) -> Fitted:
    networks = _recipe_networks(context)
    share, chosen = context.recipe_share
    return Fitted(_stacked(networks, share, context), chosen)


def recipe_ensemble(context: Context) -> Fitted:
    """The seeds' networks' mean, fused at the share the seeds' own fusions chose (the recipe's)."""
    share, chosen = context.recipe_share
    ensemble = Part("network", 1.0, folders=context.network_folders("eegfm"))
    return Fitted(_stacked([ensemble], share, context), chosen)


def network(method: str, context: Context) -> Fitted:
    """A network row: each of ``method``'s runs' networks alone."""
    models = [context.model([Part("network", 1.0, folders=[f])]) for f in context.network_folders(method)]
    chosen = [run.get("choice", run.get("chosen")) for run in context.reports[method]["corpus"]]
    return Fitted(models, chosen if any(chosen) else None)


def network_ensemble(context: Context) -> Fitted:
    return Fitted([context.model([Part("network", 1.0, folders=context.network_folders("eegfm"))])])
