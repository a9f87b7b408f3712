"""The registry of a labeled benchmark's rows: every baseline, network and derived row (the recipe,
ensembles, stacks) registered once, with its name, what it is, how it is fitted and what
validation chose. ``labeled.evaluate`` fits and scores every registered row the run asks for; the
report, ``benchmark.json`` and ``--export`` read the same names.

Each row's fit returns its models as :class:`~eegfm.model.fused.FusedModel` (one per seed, or one),
the same objects ``--export`` writes and ``eegfm-predict`` serves: what the benchmark scores is
what a user gets. Adding a baseline is one :func:`register` call here (and its fit, where it needs
new features, in its own module).

Kinds: ``baseline`` rows are fitted here on the windows (``--baselines`` selects them);
``network`` rows are the fine-tuning runs of ``--methods`` (``runs.METHODS``), each run's network
alone; ``derived`` rows combine what other rows fitted (the readout, EEGNet's seeds, eegfm's runs).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from eegfm.core import stopwatch
from eegfm.evaluation.comparison import baselines, deep_baselines, spectral_stack, tangent_space
from eegfm.evaluation.comparison.runs import METHODS, pretrain_folder
from eegfm.evaluation.comparison.windows import WindowSet
from eegfm.model.fused import FusedModel, Part, Readout

KINDS = ("baseline", "network", "derived")
# The suites a row can run in: a labeled corpus split by subject (eegmat, folder), and the
# simulated corpus's leave-one-site-out folds (each fold's training sites, without a validation split).
SUITES = ("labeled", "simulated")
# The network row of method "eegfm": the network alone has one name in every suite.
NETWORK_ROW = {"eegfm": "eegfm_model", "eegfm_full": "eegfm_model_full"}


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
    # Class-balanced linear fits: balanced accuracy wants decisions beyond the majority class; the
    # simulated suite's KL on vote distributions wants the probabilities unweighted.
    balanced: bool = True

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
    def readout(self) -> tuple[Readout, dict[str, Any]]:
        """eegfm's spectral readout of its own pretrained encoder (``spectral_stack``)."""
        encoder = pretrain_folder(self.output) / "model"
        with stopwatch.part("spectral readout"):
            return spectral_stack.spectral_readout(encoder, self.train, self.n_classes, self.validation)

    @functools.cached_property
    def eegnets(self) -> list[deep_baselines.EEGNetFit]:
        """EEGNet fitted once per seed of the run: the first seed tries the whole grid, the others
        train the setting it chose, each stopping at its own best validation epoch. As many
        candidates as eegfm's network gets (two recipes a seed), at half the cost of the grid on
        every seed, which took a 60-person run's EEGNet past 30 of its 45 minutes."""
        cache = self.output / "baselines"
        grid = {**deep_baselines.GRID, "max_epochs": (self.eegnet_max_epochs,)}
        first, *others = self.seeds
        with stopwatch.part("EEGNet", "the grid, first seed"):
            fits = [deep_baselines.eegnet(self.train, self.validation, self.n_classes, first, grid, cache=cache)]
        chosen = {key: (fits[0].record[key],) for key in grid}
        for seed in others:
            with stopwatch.part("EEGNet", "the chosen setting, another seed"):
                fit = deep_baselines.eegnet(self.train, self.validation, self.n_classes, seed, chosen, cache=cache)
            fits.append(fit)
        return fits

    def network_folders(self, method: str) -> list[Path]:
        """The model folders of ``method``'s runs, one per seed."""
        return [Path(run["run"]) / "model" for run in self.reports[method]["corpus"]]


@dataclasses.dataclass
class Fitted:
    """A row's models (one per seed, or one) and what validation chose for it."""

    models: list[FusedModel]
    chosen: Any = None


@dataclasses.dataclass(frozen=True)
class Row:
    name: str
    description: str
    kind: str
    fit: Callable[[Context], Fitted]
    needs: tuple[str, ...] = ()  # the fine-tuning methods whose runs it reads
    suites: tuple[str, ...] = ("labeled",)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"row {self.name}: kind: expected one of {', '.join(KINDS)}; got {self.kind!r}")
        if not self.suites or not set(self.suites) <= set(SUITES):
            raise ValueError(f"row {self.name}: suites: expected some of {', '.join(SUITES)}; got {self.suites}")


ROWS: dict[str, Row] = {}


def register(row: Row) -> Row:
    if row.name in ROWS:
        raise ValueError(f"register: row {row.name!r} is already registered")
    ROWS[row.name] = row
    return row


def baseline_names(suite: str = "labeled") -> list[str]:
    """The baseline rows ``suite`` runs (``--baselines``' choices)."""
    return [name for name, row in ROWS.items() if row.kind == "baseline" and suite in row.suites]


def _readout_part(context: Context, weight: float = 1.0) -> Part:
    return Part("readout", weight, readout=context.readout[0])


def _class_prior(context: Context) -> Fitted:
    prior = baselines.class_prior(context.train, context.n_classes)(context.train)[0]
    return Fitted([context.model([Part("prior", 1.0, prior=prior)])])


def _band_power_lr(context: Context) -> Fitted:
    fit = baselines.band_power_lr(context.train, context.n_classes, context.validation, balanced=context.balanced)
    readout = Readout(("powers",), fit.linear)
    return Fitted([context.model([Part("readout", 1.0, readout=readout)])], {"C": fit.c})


def _tangent_space_lr(context: Context) -> Fitted:
    fit, tangent = tangent_space.tangent_space_lr(context.train, context.n_classes, context.validation)
    readout = Readout((tangent.metric,), fit.linear, {tangent.metric: tangent})
    return Fitted([context.model([Part("readout", 1.0, readout=readout)])], {"metric": tangent.metric, "C": fit.c})


def _eegnet_part(fits: Sequence[deep_baselines.EEGNetFit], weight: float) -> Part:
    return Part("eegnet", weight, eegnets=[f.model for f in fits], eegnet_settings=fits[0].settings)


def _eegnet(context: Context) -> Fitted:
    models = [context.model([_eegnet_part([fit], 1.0)]) for fit in context.eegnets]
    return Fitted(models, [fit.record for fit in context.eegnets])


def _eegnet_ensemble(context: Context) -> Fitted:
    return Fitted([context.model([_eegnet_part(context.eegnets, 1.0)])])


def _spectral_readout(context: Context) -> Fitted:
    return Fitted([context.model([_readout_part(context)])], context.readout[1])


def _stacked(network: Part, context: Context) -> FusedModel:
    weight = spectral_stack.FUSION_WEIGHT
    network = dataclasses.replace(network, weight=weight)
    return context.model([network, _readout_part(context, 1.0 - weight)])


def _eegnet_stack(context: Context) -> Fitted:
    return Fitted([_stacked(_eegnet_part([fit], 1.0), context) for fit in context.eegnets], context.readout[1])


def _recipe(context: Context) -> Fitted:
    folders = context.network_folders("eegfm")
    models = [_stacked(Part("network", 1.0, folders=[folder]), context) for folder in folders]
    return Fitted(models, context.readout[1])


def _recipe_ensemble(context: Context) -> Fitted:
    folders = context.network_folders("eegfm")
    return Fitted([_stacked(Part("network", 1.0, folders=folders), context)], context.readout[1])


def network_row(method: str) -> Callable[[Context], Fitted]:
    """The fit of a network row: each of ``method``'s runs' networks alone."""

    def fit(context: Context) -> Fitted:
        models = [context.model([Part("network", 1.0, folders=[f])]) for f in context.network_folders(method)]
        chosen = [run.get("chosen") for run in context.reports[method]["corpus"]]
        return Fitted(models, chosen if any(chosen) else None)

    return fit


def _network_ensemble(context: Context) -> Fitted:
    return Fitted([context.model([Part("network", 1.0, folders=context.network_folders("eegfm"))])])


READOUT = "a logistic regression on the pretrained encoder's embedding and the band powers (and the bands' "
READOUT += "tangent-space covariances where validation prefers them), features and C on validation"
register(Row("class_prior", "class prior", "baseline", _class_prior, suites=SUITES))
register(
    Row(
        "band_power_lr",
        "log absolute + relative band powers (0.5-45 Hz) + logistic regression (class-balanced on a labeled "
        "corpus), C on validation (by subject-grouped cross-validation where there is none)",
        "baseline",
        _band_power_lr,
        suites=SUITES,
    )
)
register(
    Row(
        "tangent_space_lr",
        "pyRiemann: each band's spatial covariance in the tangent space of the training windows' mean "
        "+ balanced logistic regression, metric and C on validation",
        "baseline",
        _tangent_space_lr,
    )
)
register(Row("eegnet", f"{deep_baselines.DESCRIPTION}, one network per seed", "baseline", _eegnet))
register(Row("eegnet_ensemble", "eegnet, mean probabilities of the seeds' networks", "derived", _eegnet_ensemble))
register(Row("spectral_readout", f"eegfm's readout alone: {READOUT}", "derived", _spectral_readout, ("eegfm",)))
register(
    Row(
        "eegnet_stack",
        "each seed's EEGNet fused with eegfm's readout (weighted geometric mean, 1:3), as the eegfm row",
        "derived",
        _eegnet_stack,
        ("eegfm",),
    )
)
register(
    Row(
        "eegfm",
        f"eegfm: each seed's fine-tuned network (eegfm_model) fused (weighted geometric mean, 1:3) with {READOUT}",
        "derived",
        _recipe,
        ("eegfm",),
    )
)
register(
    Row(
        "eegfm_ensemble",
        "eegfm, the seeds' networks' mean fused with the readout",
        "derived",
        _recipe_ensemble,
        ("eegfm",),
    )
)
register(
    Row(
        "eegfm_model_ensemble",
        "eegfm_model, mean probabilities of the seeds' networks",
        "derived",
        _network_ensemble,
        ("eegfm",),
    )
)
# A network row of a labeled corpus: per seed, the method's own run or its alternatives' (full
# fine-tuning or the linear probe of the same pretrained encoder), whichever validates better. With
# a few dozen subjects whose every window carries the subject's label, full fine-tuning can learn
# the training subjects instead of the classes (on a 60-person simulated corpus its test AUROC
# ranged 0.28-0.87 over seeds, the probe's 0.96-0.97), while on eegmat it beats the probe;
# validation tells which, test never does. The pretrained peers are given the same choice.
ALTERNATIVES = {
    "eegfm": ("linear_probe",),
    "cbramod_pretrained": ("cbramod_probe",),
    "labram_pretrained": ("labram_probe",),
}
CHOSEN = "fully fine-tuned or linearly probed, whichever scores higher on validation"


def _register_networks() -> None:
    for method in METHODS.values():
        name = NETWORK_ROW.get(method.name, method.name)
        what = "eegfm's network alone: pretrained" if method.name == "eegfm" else method.description
        description = f"{what}; {CHOSEN}" if method.name in ALTERNATIVES else method.description
        register(Row(name, description, "network", network_row(method.name), (method.name,)))
        if method.name in ALTERNATIVES:
            full = NETWORK_ROW.get(f"{method.name}_full", f"{method.name}_full")
            text = f"{what}, fully fine-tuned on every seed (the {name} row's first candidate)"
            register(Row(full, text, "network", network_row(f"{method.name}_full"), (method.name,)))


_register_networks()
