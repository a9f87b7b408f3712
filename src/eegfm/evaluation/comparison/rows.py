"""The registry of a labeled benchmark's rows: every baseline, network and derived row (the recipe,
ensembles, stacks) registered once, with its name, what it is, how it is fitted and what
validation chose. ``labeled.evaluate`` fits and scores every registered row the run asks for; the
report, ``benchmark.json`` and ``--export`` read the same names.

Each row's fit (a function of ``row_fits``, imported on the first fit: the registry itself stays
light for ``--help``) returns its models as :class:`~eegfm.model.fused.FusedModel` (one per seed,
or one), the same objects ``--export`` writes and ``eegfm-predict`` serves: what the benchmark
scores is what a user gets. Adding a baseline is one :func:`register` call here and its fit in
``row_fits`` (where it needs new features, those in their own module).

Kinds: ``baseline`` rows are fitted on the windows (``--baselines`` selects them);
``network`` rows are the fine-tuning runs of ``--methods`` (``methods.METHODS``), each run's network
alone; ``derived`` rows combine what other rows fitted (the readout, EEGNet's seeds, eegfm's runs).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING

# The methods, not runs: the registry stays light for eegfm-benchmark --help (tests/test_commands.py)
from eegfm.evaluation.comparison.methods import METHODS

if TYPE_CHECKING:
    from eegfm.evaluation.comparison.row_fits import Context, Fitted

KINDS = ("baseline", "network", "derived")
# The suites a row can run in: a labeled corpus split by subject (eegmat, folder), and the
# simulated corpus's leave-one-site-out folds (each fold's training sites, without a validation split).
SUITES = ("labeled", "simulated")
# The network row of method "eegfm": the network alone has one name in every suite.
NETWORK_ROW = {"eegfm": "eegfm_model", "eegfm_full": "eegfm_model_full"}


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


def _fit(name: str, *args: str) -> Callable[[Context], Fitted]:
    """The fit ``row_fits.<name>`` (``args`` before the context), imported on the first fit."""

    def fit(context: Context) -> Fitted:
        from eegfm.evaluation.comparison import row_fits

        return getattr(row_fits, name)(*args, context)

    return fit


READOUT = "a logistic regression on the pretrained encoder's embedding and the band powers (and the bands' "
READOUT += "tangent-space covariances where validation prefers them), features and C on validation"
register(Row("class_prior", "class prior", "baseline", _fit("class_prior"), suites=SUITES))
register(
    Row(
        "band_power_lr",
        "log absolute + relative band powers (0.5-45 Hz) + logistic regression (class-balanced on a labeled "
        "corpus), C on validation (by subject-grouped cross-validation where there is none)",
        "baseline",
        _fit("band_power_lr"),
        suites=SUITES,
    )
)
register(
    Row(
        "tangent_space_lr",
        "pyRiemann: each band's spatial covariance in the tangent space of the training windows' mean "
        "+ balanced logistic regression, metric and C on validation",
        "baseline",
        _fit("tangent_space_lr"),
    )
)
register(
    Row(
        "eegnet",
        "braindecode EEGNet, supervised, recipe chosen on validation, one network per seed",
        "baseline",
        _fit("eegnet"),
    )
)
register(
    Row("eegnet_ensemble", "eegnet, mean probabilities of the seeds' networks", "derived", _fit("eegnet_ensemble"))
)
register(Row("spectral_readout", f"eegfm's readout alone: {READOUT}", "derived", _fit("spectral_readout"), ("eegfm",)))
register(
    Row(
        "eegnet_stack",
        "each seed's EEGNet fused with eegfm's readout (weighted geometric mean, its share on validation), "
        "as the eegfm row",
        "derived",
        _fit("eegnet_stack"),
        ("eegfm",),
    )
)
register(
    Row(
        "eegfm",
        f"eegfm: each seed's fine-tuned network (eegfm_model) fused (weighted geometric mean, the network's share "
        f"of 0.25-1 on validation) with {READOUT}",
        "derived",
        _fit("recipe"),
        ("eegfm",),
    )
)
register(
    Row(
        "eegfm_ensemble",
        "eegfm, the seeds' networks' mean fused with the readout",
        "derived",
        _fit("recipe_ensemble"),
        ("eegfm",),
    )
)
register(
    Row(
        "eegfm_model_ensemble",
        "eegfm_model, mean probabilities of the seeds' networks",
        "derived",
        _fit("network_ensemble"),
        ("eegfm",),
    )
)
# A network row of a labeled corpus: per seed, the method's own run or its alternative (full
# fine-tuning or the linear probe of the same pretrained encoder). With a few dozen subjects whose
# every window carries the subject's label, full fine-tuning can learn the training subjects
# instead of the classes (on a 60-person simulated corpus its test AUROC ranged 0.28-0.87 over
# seeds, the probe's 0.96-0.97), while on eegmat it beats the probe. The probe is the default and
# full fine-tuning must beat it beyond the spread of the validation people (``choice``); test never
# chooses. The pretrained peers are given the same choice.
ALTERNATIVES = {
    "eegfm": ("linear_probe",),
    "cbramod_pretrained": ("cbramod_probe",),
    "labram_pretrained": ("labram_probe",),
}
CHOSEN = "linearly probed, or fully fine-tuned where that scores higher on validation in 90 % of draws of its people"
NETWORK_ALONE = (
    "eegfm's network alone (its head also reads each channel's band powers, and each band's covariances "
    "where validation keeps them, and starts as the logistic regression of the frozen encoder, C on "
    "validation, as the readout's): pretrained"
)


def _register_networks() -> None:
    for method in METHODS.values():
        name = NETWORK_ROW.get(method.name, method.name)
        what = NETWORK_ALONE if method.name == "eegfm" else method.description
        description = f"{what}; {CHOSEN}" if method.name in ALTERNATIVES else method.description
        register(Row(name, description, "network", _fit("network", method.name), (method.name,)))
        if method.name in ALTERNATIVES:
            full = NETWORK_ROW.get(f"{method.name}_full", f"{method.name}_full")
            text = f"{what}, fully fine-tuned on every seed (the {name} row's first candidate)"
            register(Row(full, text, "network", _fit("network", f"{method.name}_full"), (method.name,)))


_register_networks()
