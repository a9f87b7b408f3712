"""eegfm's rows of a benchmark: one pretraining on the windows it may use, then fine-tuning runs
over seeds, each through the same ``training.pretrain`` / ``training.finetune`` a user runs.

Methods (fine-tuning ``mode`` and the encoder it starts from):

- ``eegfm``: the pretrained encoder, fully fine-tuned;
- ``eegfm_shared``: the same from the shared encoder (``--shared_encoder``: one pretraining over
  every corpus at hand, ``benchmark.shared``) instead of this benchmark's own pretraining;
- ``eegfm_adapted``: the same from the shared encoder pretrained further on the windows this
  benchmark's own pretraining reads (``adapt_steps``; ``pretrainings``);
- ``scratch``: the same architecture from random weights, fine-tuned the same way;
- ``linear_probe``: the pretrained encoder frozen, a linear head trained (with ``head_init: probe``,
  a convex fit no seed enters: one run serves every seed, :func:`seed_free`);
- ``eegfm_10pct`` / ``scratch_10pct``: the first two with the labels of 10 % of the training
  subjects (``train_subject_fraction``; drawn by the seed);
- ``eegfm_fusion``: ``eegfm`` with the records' spectrograms fused (``modalities: [spectrogram]``);
- ``spectrogram_cnn``: the 2-D CNN on the spectrograms (``model.spectrogram_cnn``), from scratch;
- ``ensemble``: ``eegfm`` and ``spectrogram_cnn`` of the same fold and seed stacked by
  ``training.ensemble``, its weights fitted on the fold's validation windows;
- ``cbramod`` / ``labram``: peer EEG transformers (``model.cbramod``, ``model.labram``) from
  scratch, at the preset's size, fine-tuned by the same recipe as ``scratch``;
- ``cbramod_pretrained`` / ``labram_pretrained``: the same peers pretrained first by their own
  masked patch modeling (``model.patch_pretraining``) on the windows eegfm's pretraining reads,
  for as many steps, then fine-tuned the same way; ``cbramod_probe`` / ``labram_probe``: those
  pretrained encoders frozen, a linear head trained.

The rows eegfm is compared with (``scratch``, the 10 % rows, the peers: :attr:`Method.reference`)
run the seeds of ``reference_seeds``, by default the first seed alone: each such run costs about
as much as an eegfm run, and on a 10-EEG-hour corpus their second and third seeds would take the
default run past 45 minutes. eegfm's own rows run every seed (its seed ensemble needs them).

Each pretraining reads only the training split (``exclude_corpus_splits: [dev, eval]``) plus any
``unlabeled`` folders, so no validation or test subject's window reaches it, even unlabeled.

Each pretraining, scratch initialisation and run folder carries ``fingerprint.json``
(``benchmark.fingerprint``): the data folder's fingerprint (the labels, split, classes and window
length it was made from), the preset and overrides, and for a run its method, seed and encoder. A
rerun whose fingerprint differs makes the folder anew, with a warning; the same one reuses it.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eegfm.contract import layout
from eegfm.core import stopwatch
from eegfm.core.job_pool import JobPool, plan
from eegfm.core.logs import get_logger
from eegfm.evaluation.comparison import fingerprint
from eegfm.evaluation.comparison.methods import METHODS, Method, check_shared_encoder
from eegfm.evaluation.comparison.pretrainings import check_status, pretrain, pretrain_folder, untrained
from eegfm.training import ensemble as ensembling
from eegfm.training import finetune as finetuning
from eegfm.training import pretrain as pretraining
from eegfm.training.command import RunSpec
from eegfm.training.config import FinetuneConfig, PretrainConfig, load_config
from eegfm.training.config_files import parse_overrides

if TYPE_CHECKING:  # annotations only
    from eegfm.evaluation.comparison.options import BenchmarkOptions

log = get_logger(__name__)
# The corpus splits every benchmark's pretraining leaves out, unless a suite says otherwise.
HELD_OUT_SPLITS = ("dev", "eval")
# eegfm's network on a labeled corpus (every run of the eegfm architecture: pretrained, probed,
# from scratch): its head also reads each channel's Welch band powers (``head_band_powers``) and
# each band's co-spectral matrix in a tangent space (``head_covariances``), and starts as the
# logistic regression of what it reads on the frozen encoder (``head_init: probe``), validated
# before the first step; C and whether the covariances help are chosen on the validation people
# (``probe_chosen_by``), the rule the readout and every baseline choose their C by. Validation,
# 3 seeds (balanced accuracy / AUROC / AUPRC): eegmat's network alone 0.831 / 0.956 / 0.900 ->
# 0.820 / 0.965 / 0.923 with band powers -> 0.910 / 0.974 / 0.954 chosen on validation rather than
# by the training people's cross-validation (0.848 / 0.972 / 0.936 on that pretraining); the group
# study's 0.970 / 0.996 / 0.989 -> 0.999 / 1.000 / 1.000 with covariances (docs/model-quality.md).
EEGFM_SETTINGS: tuple[tuple[str, Any], ...] = (
    ("head_init", "probe"),
    ("probe_chosen_by", "validation"),
    ("model_overrides.head_band_powers", True),
    ("model_overrides.head_covariances", True),
)
# The pretrained ones of those runs train every epoch and keep the last (``epochs_chosen_by``): on
# held-out folds of eegmat's training people the last epoch beat the one its 4 validation people
# chose, on every metric and for both encoders. From scratch, a network needs early stopping (the
# last epoch took eegmat's validation AUROC from 0.964 to 0.941), so those keep validation's choice.
PRETRAINED_SETTINGS: tuple[tuple[str, Any], ...] = (("epochs_chosen_by", "none"),)
# The shared encoder's further pretraining (``eegfm_adapted``) runs this share of the benchmark's
# own pretraining's steps. eegmat validation, seeds 0-2 (balanced accuracy / AUROC / AUPRC):
# a third (500 of 1500) 0.903 / 0.978 / 0.957, as many 0.889 / 0.977 / 0.951, own pretraining
# 0.895 / 0.976 / 0.954; over twelve seeds, a third 0.895 / 0.979 / 0.957 against own pretraining's
# 0.889 / 0.977 / 0.954 (docs/model-quality.md).
ADAPT_SHARE = 1 / 3


@dataclasses.dataclass(frozen=True)
class RecipeOptions:
    """What the eegfm runs share: preset, pretraining length and data, fine-tuning settings.
    ``finetune_set`` / ``pretrain_set``: the user's overrides (``KEY=VALUE``, as the benchmark's
    --finetune_set / --pretrain_set give them); ``finetune_defaults``: the suite's own fine-tuning
    settings (field, or section.field, and value), which ``finetune_set`` overrides;
    ``eegfm_settings``: the suite's settings of the eegfm architecture's runs, after the method's
    (``finetune_set`` overrides them too), and ``pretrained_settings`` those of its runs from a
    pretrained encoder; ``held_out_splits``: the corpus splits pretraining never reads."""

    config: str
    task: str
    pretrain_steps: int | None = None
    adapt_steps: int | None = None  # the shared encoder's further pretraining; None: ADAPT_SHARE of pretraining's
    record_task: str | None = None  # the windows' task, where ``task`` is a generic head (binary, multiclass)
    shared_encoder: str | None = None  # the shared encoder's model folder (the eegfm_shared row)
    unlabeled: tuple[str, ...] = ()
    finetune_set: tuple[str, ...] = ()
    pretrain_set: tuple[str, ...] = ()
    reference_seeds: tuple[int, ...] | None = None  # the reference rows' seeds; None: the first seed
    finetune_defaults: tuple[tuple[str, Any], ...] = ()
    eegfm_settings: tuple[tuple[str, Any], ...] = ()
    pretrained_settings: tuple[tuple[str, Any], ...] = ()
    held_out_splits: tuple[str, ...] = HELD_OUT_SPLITS

    def suite_settings(self, method: Method) -> tuple[tuple[str, Any], ...]:
        """The suite's settings of ``method``'s runs beyond its own: ``eegfm_settings`` for the eegfm
        architecture, with ``pretrained_settings`` where it starts from a pretrained encoder."""
        if method.architecture != "eegfm":
            return ()
        return (*self.eegfm_settings, *(self.pretrained_settings if method.pretrained else ()))

    def seeds_of(self, method: Method, seeds: Sequence[int]) -> list[int]:
        """The seeds ``method`` runs: the run's ``seeds``, or for a reference row ``reference_seeds``."""
        if not method.reference:
            return list(seeds)
        return list(self.reference_seeds) if self.reference_seeds is not None else list(seeds[:1])

    @classmethod
    def from_options(
        cls,
        options: BenchmarkOptions,
        task: str,
        held_out_splits: Sequence[str] = HELD_OUT_SPLITS,
        finetune_defaults: Mapping[str, Any] | None = None,
    ) -> RecipeOptions:
        """From the suites' common options. ``held_out_splits``: the corpus splits the suite's
        pretraining never reads; ``finetune_defaults``: the suite's fine-tuning settings, which
        ``--finetune_set`` overrides."""
        return cls(
            config=options.config,
            task=task,
            pretrain_steps=options.pretrain_steps,
            adapt_steps=options.adapt_steps,
            unlabeled=options.unlabeled,
            finetune_set=options.finetune_set,
            pretrain_set=options.pretrain_set,
            shared_encoder=options.shared_encoder,
            reference_seeds=options.reference_seeds,
            finetune_defaults=tuple((finetune_defaults or {}).items()),
            held_out_splits=tuple(held_out_splits),
        )

    def finetune_config(self, seed: int, split: Mapping[str, Any], method: Method | None = None) -> FinetuneConfig:
        """A run's config: the preset with ``finetune_set``, then the suite's defaults, the run's
        ``split`` settings, seed and share of subjects where ``finetune_set`` sets none of them;
        then ``method``'s settings, mode and architecture, and the task. ``method`` None: a stack's,
        which takes its members' split and seed and has no model fields of its own."""
        cfg = load_config(self.config, "finetune", list(self.finetune_set))
        given = set(parse_overrides(list(self.finetune_set)))
        run = {**dict(self.finetune_defaults), **split, "seed": seed, "loader.seed": seed}
        if method is not None and method.subject_fraction < 1:
            run["train_subject_fraction"] = method.subject_fraction
        settings = {key: value for key, value in run.items() if not _overlaps(key, given)}
        if method is not None:
            settings.update({**dict(method.settings), "mode": method.mode, "architecture": method.architecture})
        if method is not None:
            settings.update({key: value for key, value in self.suite_settings(method) if not _overlaps(key, given)})
        return cfg.with_settings({**settings, "task": self.task})

    def pretrain_config(self, architecture: str = "eegfm", init_from: Path | None = None) -> tuple[PretrainConfig, str]:
        """The pretraining's config (the preset with ``pretrain_set`` and ``pretrain_steps``;
        ``held_out_splits`` excluded; a peer ``architecture`` with its preset's own model fields)
        and a note for the log. ``init_from``: the further pretraining of that encoder, for
        ``adapt_steps``."""
        steps = self.pretrain_steps if init_from is None else self.adapted_steps()
        cfg, note = pretraining.pretrain_config(self.config, list(self.pretrain_set), steps)
        settings: dict[str, Any] = {"exclude_corpus_splits": list(self.held_out_splits)}
        if architecture != "eegfm":
            settings.update(architecture=architecture, model_overrides={})
        if init_from is not None:
            settings["init_from"] = str(init_from)
        return cfg.with_settings(settings), note

    def adapted_steps(self) -> int:
        """The steps of the shared encoder's further pretraining: ``adapt_steps``, else
        ``ADAPT_SHARE`` of this benchmark's own pretraining's."""
        if self.adapt_steps is not None:
            return self.adapt_steps
        own = pretraining.pretrain_config(self.config, list(self.pretrain_set), self.pretrain_steps)[0]
        return max(1, round(own.optim.max_steps * ADAPT_SHARE))


def _overlaps(key: str, given: set[str]) -> bool:
    """Whether a setting ``key`` (dotted) is one of ``given``, inside one, or holds one."""
    return any(key == other or key.startswith(f"{other}.") or other.startswith(f"{key}.") for other in given)


def finetune(
    data: str,
    encoder: Path | None,
    output: Path,
    method: Method,
    seed: int,
    opts: RecipeOptions,
    split: Mapping[str, Any],
) -> dict:
    """One fine-tuning run (``split``: the settings choosing its held-out subjects or site;
    ``encoder``: None for an architecture trained from scratch); returns its eval.json (reused
    where the run already finished with the same fingerprint, :func:`run_fields`)."""
    report = output / layout.EVAL
    encoder_id = fingerprint.identity(encoder) if encoder is not None else None
    fingerprint.refresh(output, run_fields(data, method, seed, opts, split, encoder=encoder_id), "fine-tuning")
    if not report.is_file():
        cfg = opts.finetune_config(seed, split, method).with_settings({"wandb.mode": "disabled"})
        pretrained = str(encoder) if encoder is not None else None
        job = finetuning.FinetuneJob(RunSpec((data,), output), pretrained, opts.record_task)
        what = f"fine-tuning {method.name} seed {seed}"
        log.info("%s into %s", what, output)
        with stopwatch.part("fine-tuning", method.name):
            check_status(finetuning.finetune(cfg, job), what)
    return json.loads(report.read_text(encoding="utf-8"))


def run_fields(data: str, method: Method, seed: int, opts: RecipeOptions, split: Mapping[str, Any], **more) -> dict:
    """What a run's folder depends on: the data folder's fingerprint (its labels, split, classes and
    window length), the method, seed, split settings, preset and overrides, and ``more`` (its
    encoder, or the runs it stacks)."""
    recipe = (method.name, method.mode, method.architecture, method.subject_fraction, list(method.settings))
    eegfm = [list(item) for item in opts.suite_settings(method)]
    return {
        "data": fingerprint.identity(data),
        "method": recipe,
        "seed": seed,
        "split": dict(split),
        "config": fingerprint.config_identity(opts.config),
        "settings": {
            "set": list(opts.finetune_set),
            "defaults": [list(item) for item in opts.finetune_defaults],
            **({"eegfm": eegfm} if eegfm else {}),
        },
        "task": (opts.task, opts.record_task),
        **more,
    }


def stack(
    data: str,
    members: Sequence[Path],
    output: Path,
    method: Method,
    seed: int,
    opts: RecipeOptions,
    split: Mapping[str, Any],
) -> dict:
    """The members' runs stacked (``training.ensemble``, weights fitted on the same split's
    validation windows); returns its eval.json (reused where it exists with the same fingerprint)."""
    report = output / layout.EVAL
    members_id = [fingerprint.identity(member) for member in members]
    fingerprint.refresh(output, run_fields(data, method, seed, opts, split, members=members_id), "stacking")
    if not report.is_file():
        cfg = opts.finetune_config(seed, split)
        job = ensembling.StackJob(tuple(map(str, members)), (data,), output)
        what = f"stacking {method.name} seed {seed}"
        log.info("%s into %s", what, output)
        with stopwatch.part("stacking", method.name):
            check_status(ensembling.stack(cfg, job), what)
    return json.loads(report.read_text(encoding="utf-8"))


def seeds_note(methods: Sequence[str], opts: RecipeOptions, seeds: Sequence[int]) -> str | None:
    """What a report says of the seeds of ``methods``: the reference rows' (``--reference_seeds``)
    and the rows one run serves (:func:`seed_free`), or None."""
    notes = []
    if references := [m for m in methods if m in METHODS and METHODS[m].reference]:
        chosen = " ".join(map(str, opts.seeds_of(METHODS[references[0]], seeds)))
        others = " ".join(map(str, seeds))
        notes.append(f"{', '.join(references)}: seeds {chosen} (--reference_seeds); the other rows: {others}")
    free = [m for m in methods if m in METHODS and seed_free(METHODS[m], opts, {})]
    if free and len(seeds) > 1:
        notes.append(f"{', '.join(free)}: one run serves every seed (a convex fit of the frozen encoder)")
    return "; ".join(notes) or None


# The validation metrics a choice between fine-tuning recipes reads (higher is better; their mean).
CHOICE_METRICS = ("balanced_accuracy", "auroc", "auprc")


def validation_score(report: Mapping[str, Any]) -> float:
    """The mean of a run's validation :data:`CHOICE_METRICS` (those it has)."""
    found = [float(report["val"][m]) for m in CHOICE_METRICS if report.get("val", {}).get(m) is not None]
    return sum(found) / len(found) if found else float("-inf")


def run_methods(
    data: str,
    output: Path,
    methods: Sequence[str],
    seeds: Sequence[int],
    opts: RecipeOptions,
    folds: Mapping[str, Mapping[str, Any]],
    pretrain_data: Sequence[str],
    alternatives: Mapping[str, Sequence[str]] | None = None,
    pool: JobPool | None = None,
    choose: Callable[[Mapping[str, dict]], dict] | None = None,
    meanwhile: Callable[[], None] | None = None,
) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """``{method: {fold: [eval.json per seed]}}``, each with ``run``, the folder of the run it
    describes; ``folds`` maps a fold's name to the fine-tuning settings that hold its subjects or
    site out; one pretraining on ``pretrain_data`` serves all. A reference row runs the seeds
    :meth:`RecipeOptions.seeds_of` gives it, the others ``seeds``.

    ``alternatives``: ``{method: other methods}``: the method's row becomes, per fold and seed, the
    run among its own and the others' that ``choose`` picks (default: the highest
    :func:`validation_score`; ``choice.with_people`` weighs the validation people's spread), and
    ``chosen`` names it; its own runs alone are then the row ``<method>_full``. Validation chooses;
    test never does.

    ``pool``: where the pretraining and the fine-tuning runs go, side by side where it has workers
    (default: one after another, in this process): the runs that need no pretraining of this run
    start beside it, the others once it is done; stacks, which read their members' runs, follow in
    this process. ``meanwhile``: this process's own work while the runs go on (called once every
    run is submitted, after the pretraining).
    """
    alternatives = {m: tuple(others) for m, others in (alternatives or {}).items() if m in methods}
    asked = list(methods)
    methods = [*asked, *(o for others in alternatives.values() for o in others if o not in asked)]
    chosen = [METHODS[name] for name in methods]
    needed = chosen + [METHODS[m] for method in chosen for m in method.members]
    check_shared_encoder([m.name for m in needed], opts.shared_encoder)
    pool = pool or JobPool(plan(1, 1))
    pretrainings = _submit_pretrainings(pool, needed, output, opts, pretrain_data)
    encoders: dict[str, Path] = {}
    jobs: dict[tuple[str, int, str], Future] = {}

    def submit(method: Method, seed: int, fold: str, split: Mapping[str, Any]) -> None:
        """``method``'s fine-tuning run (a stack's: its members') into the pool, once each."""
        for member in [METHODS[name] for name in method.members] or [method]:
            if (member.name, seed, fold) not in jobs:
                folder = output / "runs" / member.name / fold / f"seed{seed}"
                args = (data, _encoder(member, encoders, output, opts, seed), folder, member, seed, opts, split)
                jobs[member.name, seed, fold] = pool.submit(
                    finetune, *args, name=f"fine-tuning {member.name} seed {seed}"
                )

    order = _run_order(chosen, seeds, folds, opts)
    ran = {(m.name, seed, fold): _run_seed(m, seed, opts, seeds, split) for m, seed, fold, split in order}
    mine = [(m, seed, fold, split) for m, seed, fold, split in order if ran[m.name, seed, fold] == seed]
    # The runs that start from no pretraining of this run go first, beside the pretraining.
    for method, seed, fold, split in mine:
        if not _needs_pretraining(method):
            submit(method, seed, fold, split)
    encoders.update(zip(pretrainings, pool.results(list(pretrainings.values())), strict=True))
    for method, seed, fold, split in mine:
        if _needs_pretraining(method):
            submit(method, seed, fold, split)
    if meanwhile is not None:
        meanwhile()
    done = dict(zip(jobs, pool.results(list(jobs.values())), strict=True))
    reports: dict[str, dict[str, list[dict[str, Any]]]] = {m.name: {fold: [] for fold in folds} for m in chosen}
    for method, seed, fold, split in order:
        run_seed = ran[method.name, seed, fold]
        folder = output / "runs" / method.name / fold / f"seed{run_seed}"
        if method.members:
            runs = [output / "runs" / name / fold / f"seed{seed}" for name in method.members]
            found = stack(data, runs, folder, method, seed, opts, split)
        else:
            found = done[method.name, run_seed, fold]
        reports[method.name][fold].append({**found, "run": str(folder)})
    return choose_runs(reports, alternatives, asked, choose)


def _run_order(
    chosen: Sequence[Method], seeds: Sequence[int], folds: Mapping[str, Mapping[str, Any]], opts: RecipeOptions
) -> list[tuple[Method, int, str, Mapping[str, Any]]]:
    """Every (method, seed, fold, split) the rows report, seed by seed: each method's own seeds
    (:meth:`RecipeOptions.seeds_of`), the reference seeds included."""
    return [
        (method, seed, fold, split)
        for seed in dict.fromkeys([*seeds, *(opts.reference_seeds or ())])
        for fold, split in folds.items()
        for method in chosen
        if seed in opts.seeds_of(method, seeds)
    ]


def _submit_pretrainings(
    pool: JobPool, needed: Sequence[Method], output: Path, opts: RecipeOptions, pretrain_data: Sequence[str]
) -> dict[str, Future]:
    """One pretraining job per architecture that ``needed`` starts from (the shared encoder's
    excepted, but not its further pretraining); each serves all its runs, which wait for it (``first``)."""
    jobs = {}
    for name in dict.fromkeys(m.pretraining for m in needed if m.pretraining):
        method = next(m for m in needed if m.pretraining == name)
        init_from = Path(opts.shared_encoder) if method.adapted else None
        args = (pretrain_data, pretrain_folder(output, name), opts, method.architecture, init_from)
        jobs[name] = pool.submit(pretrain, *args, name=f"pretraining {name}", first=True)
    return jobs


def seed_free(method: Method, opts: RecipeOptions, split: Mapping[str, Any]) -> bool:
    """Whether ``method``'s run is the same whatever its seed: a linear probe (``mode: linear``,
    ``head_init: probe``) of a pretrained encoder on every training subject is a convex fit of the
    frozen encoder's features of the training split read once in file order, then temperature
    scaling and evaluation; no step draws from the seed (its seeds' runs on eegmat and on the
    group study saved the same bytes)."""
    if not method.pretrained or method.members:
        return False
    cfg = opts.finetune_config(0, split, method)
    return cfg.mode == "linear" and cfg.head_init == "probe" and cfg.train_subject_fraction >= 1


def _run_seed(method: Method, seed: int, opts: RecipeOptions, seeds: Sequence[int], split: Mapping[str, Any]) -> int:
    """The seed whose run serves ``method``'s ``seed``: its own, or for a :func:`seed_free` method
    the first seed the method runs (one run instead of one a seed)."""
    return opts.seeds_of(method, seeds)[0] if seed_free(method, opts, split) else seed


def _needs_pretraining(method: Method) -> bool:
    """Whether ``method``'s run (a stack's: one of its members') starts from this run's pretraining."""
    members = [METHODS[name] for name in method.members] or [method]
    return any(m.pretraining for m in members)


def _encoder(method: Method, encoders: Mapping[str, Path], output: Path, opts: RecipeOptions, seed: int):
    """The model folder ``method``'s run starts from; None for a peer architecture from scratch."""
    if method.pretraining:
        return encoders[method.pretraining]
    if method.shared:
        return Path(opts.shared_encoder)
    if method.architecture == "eegfm":
        return untrained(output / "scratch-init", opts, seed)
    return None


def choose_runs(
    reports: dict,
    alternatives: Mapping[str, Sequence[str]],
    asked: Sequence[str],
    choose: Callable[[Mapping[str, dict]], dict] | None = None,
) -> dict:
    """``reports`` with each method of ``alternatives`` replaced by its choice per run (see
    :func:`run_methods`; ``choose`` as there); alternatives that were not ``asked`` for
    themselves leave the result."""
    choose = choose or best_on_validation
    for name, others in alternatives.items():
        names = (name, *others)
        reports[f"{name}_full"] = reports[name]
        reports[name] = {
            fold: [choose(dict(zip(names, runs, strict=True))) for runs in zip(*(reports[n][fold] for n in names))]
            for fold in reports[name]
        }
    return {m: reports[m] for m in [*asked, *(f"{n}_full" for n in alternatives)]}


def best_on_validation(runs: Mapping[str, dict]) -> dict:
    """The run with the highest validation score (a tie keeps the first: the method's own)."""
    name = max(runs, key=lambda n: validation_score(runs[n]))
    return {**runs[name], "chosen": name}
