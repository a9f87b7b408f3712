"""A supervised deep baseline every labeled benchmark run reports beside eegfm: braindecode's EEGNet
(``EEGNetv4``, Lawhern et al. 2018) trained from scratch on the training split's windows, the
recipe a careful user would pick without a foundation model.

- Input and network: ``model.eegnet`` (each window alone resampled to 128 Hz, its uV over one
  fixed constant; EEGNet-8,2), the one definition an exported model runs too.
- Training: AdamW on the soft cross-entropy of ``baselines.targets`` (vote distributions where a
  window has votes), classes weighted by the training split's inverse frequency; the training
  windows alone, in an order drawn from a generator seeded by ``seed``.
- Choice on validation only: each setting of ``GRID`` trains up to ``MAX_EPOCHS`` epochs and stops
  after ``PATIENCE`` epochs without a lower validation loss (not before ``MIN_EPOCHS``), by
  successive halving (:func:`search`: at ``MIN_EPOCHS`` the worse half of the grid stops); the
  setting and epoch with the lowest validation loss are kept. Validation windows are only ever
  predicted, under ``torch.no_grad``.

The benchmark fits one network per fine-tuning seed (as many as eegfm's, :func:`chosen_weights`):
the first seed with the whole grid, the others with the setting it chose; with a ``core.job_pool`` of
several workers the settings, then the other seeds, train side by side, each a :class:`Training`
that a job takes on and hands back. CPU, deterministic for a seed and thread count: the caller's
random state is left as it was. With ``cache`` (a folder), each seed's chosen network is saved
there with a fingerprint of the windows, their targets, the grid, the seed and the fixed recipe
(:class:`SavedFits`); a later call with the same fingerprint loads it instead of training again
(a benchmark rerun with other eegfm methods), and any other fit replaces it.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import hashlib
import itertools
import json
import math
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import braindecode
import numpy as np
import torch

from eegfm.core import stopwatch
from eegfm.core.job_pool import JobPool, plan
from eegfm.core.logs import get_logger
from eegfm.evaluation.comparison.baselines import targets
from eegfm.evaluation.comparison.windows import WindowSet
from eegfm.metrics.losses import balanced_class_weights, soft_cross_entropy
from eegfm.model import eegnet_factored
from eegfm.model.eegnet import KERNEL_LENGTH, MODEL_SFREQ, SCALE_UV, build_model, logits_of
from eegfm.model.eegnet import inputs as eegnet_inputs
from eegfm.model.eegnet import probabilities as eegnet_probabilities

log = get_logger(__name__)

# Dropout moved eegmat's validation loss most (0.25 and 0.5 are the two rates the EEGNet paper
# uses); the learning rate is Adam's 1e-3, as in the paper, or a third of it (3e-3 stopped earlier
# at a higher validation loss); the epoch is chosen by early stopping on validation. Four settings
# a seed, as eegfm's network chooses between its recipes per seed on validation.
GRID = {"lr": (3e-4, 1e-3), "drop_prob": (0.25, 0.5)}
MAX_EPOCHS = 30
PATIENCE = 5
# For the first epochs the validation loss sits near a uniform prediction's (ln 2 for two classes)
# while the network leaves its near-uniform start (with few training subjects, for ten epochs and
# more): stopping there would keep a network that has learnt nothing, so early stopping waits.
MIN_EPOCHS = 12
BATCH = 64
WEIGHT_DECAY = 1e-2  # AdamW's default: the grid varies the settings EEGNet is most sensitive to


@dataclasses.dataclass(frozen=True)
class Data:
    """A split's network inputs [N, 19, T] and target distributions [N, C] as float32 tensors."""

    x: torch.Tensor
    y: torch.Tensor

    @classmethod
    def of(cls, windows: WindowSet, n_classes: int) -> Data:
        return cls(inputs(windows), torch.from_numpy(targets(windows, n_classes).astype(np.float32)))


def inputs(windows: WindowSet) -> torch.Tensor:
    """EEGNet's input of a window set (``model.eegnet.inputs``)."""
    return eegnet_inputs(windows.eeg)


@dataclasses.dataclass
class Training:
    """One setting's training so far, with everything another epoch needs: a job in another process
    takes it on (``core.job_pool``) and ends where one uninterrupted loop would have, bit for bit
    on the same threads. ``best``: the weights of the epoch of lowest validation loss."""

    settings: dict[str, float]
    seed: int
    epoch: int = 0
    state: dict[str, Any] | None = None  # model, optimizer, batch order and dropout random state
    best: dict[str, torch.Tensor] | None = None
    best_epoch: int = 0
    best_loss: float = math.inf
    stopped: bool = False

    @property
    def max_epochs(self) -> int:
        return int(self.settings.get("max_epochs", MAX_EPOCHS))


def train_step(model, optimizer, x: torch.Tensor, y: torch.Tensor, class_weights: torch.Tensor) -> float:
    """One gradient step on one batch of training windows (the only place weights change)."""
    optimizer.zero_grad(set_to_none=True)
    loss = soft_cross_entropy(eegnet_factored.forward(model, x), y, class_weights=class_weights)
    loss.backward()
    optimizer.step()
    return float(loss.detach())


def _val_loss(model, val: Data, class_weights: torch.Tensor) -> float:
    # batches of training's size: 256 windows' activations (100 MB each) are beyond what the
    # allocator keeps (core/allocator.py), and the kernel would fault them in every epoch
    return float(soft_cross_entropy(logits_of(model, val.x, BATCH), val.y, class_weights=class_weights))


def _resume(training: Training, train: Data):
    """The model, optimizer and batch order of ``training``; torch's random state where it left it."""
    torch.manual_seed(training.seed)
    model = build_model(train.x.shape[1], train.x.shape[2], train.y.shape[1], training.settings["drop_prob"])
    optimizer = torch.optim.AdamW(model.parameters(), lr=training.settings["lr"], weight_decay=WEIGHT_DECAY)
    order = torch.Generator().manual_seed(training.seed)  # the same batches for every setting of the grid
    if training.state is not None:
        model.load_state_dict(training.state["model"])
        optimizer.load_state_dict(training.state["optimizer"])
        order.set_state(training.state["order"])
        torch.set_rng_state(training.state["rng"])
    return model, optimizer, order


def train_until(training: Training, inputs: Path, last_epoch: int, part: str = "training") -> Training:
    """``training`` taken on to epoch ``last_epoch`` (at most its ``max_epochs``), or until it
    stops early: :data:`PATIENCE` epochs without a lower validation loss, not before
    :data:`MIN_EPOCHS`. ``inputs``: the file :func:`save_inputs` wrote; ``part``: the stopwatch item.
    The caller's random state is left as it was."""
    train, val = load_inputs(inputs)
    class_weights = balanced_class_weights(train.y.sum(0))
    with stopwatch.part("EEGNet", part), torch.random.fork_rng(devices=[]):
        model, optimizer, order = _resume(training, train)
        while not training.stopped and training.epoch < min(last_epoch, training.max_epochs):
            training.epoch += 1
            model.train()
            for rows in torch.randperm(len(train.x), generator=order).split(BATCH):
                # a lone window would give batch norm a batch of one; the permutation changes next epoch
                if len(rows) > 1:
                    train_step(model, optimizer, train.x[rows], train.y[rows], class_weights)
            _score_epoch(training, model, _val_loss(model, val, class_weights))
        training.stopped = training.stopped or training.epoch >= training.max_epochs
        state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "order": order.get_state()}
        training.state = {**state, "rng": torch.get_rng_state()}
    return training


def _score_epoch(training: Training, model: torch.nn.Module, loss: float) -> None:
    epoch = training.epoch
    log.info("eegnet %s seed %d: epoch %d (at most %d), validation loss %.4f", training.settings, training.seed,
             epoch, training.max_epochs, loss)  # fmt: skip
    if training.best is None or loss < training.best_loss:
        training.best = copy.deepcopy(model.state_dict())
        training.best_epoch, training.best_loss = epoch, loss
    elif epoch - training.best_epoch >= PATIENCE and epoch >= min(MIN_EPOCHS, training.max_epochs):
        training.stopped = True


def _grid(grid: dict[str, tuple[float, ...]]) -> list[dict[str, float]]:
    return [dict(zip(grid, values)) for values in itertools.product(*grid.values())]


def save_inputs(train: Data, val: Data, path: Path) -> Path:
    """Both splits' inputs and targets in one file, which every job of a fit maps (not copies)."""
    torch.save({"train_x": train.x, "train_y": train.y, "val_x": val.x, "val_y": val.y}, path)
    return path


_LOADED: dict[str, tuple[Data, Data]] = {}  # the last inputs a process read: its jobs share them


def load_inputs(path: Path) -> tuple[Data, Data]:
    """The training and validation data of :func:`save_inputs`' file, read once per process."""
    if str(path) not in _LOADED:
        found = torch.load(path, mmap=True, weights_only=True)
        _LOADED.clear()
        _LOADED[str(path)] = (Data(found["train_x"], found["train_y"]), Data(found["val_x"], found["val_y"]))
    return _LOADED[str(path)]


def _train(trainings: list[Training], inputs: Path, part: str, pool: JobPool, last_epoch: int = 1 << 30):
    """Each of ``trainings`` taken on to ``last_epoch`` (or its end), side by side in ``pool``."""
    jobs = [
        # first: each round waits for the one before, so a round queued behind fine-tuning runs
        # would leave the search's last rounds alone on one core at the end of a benchmark
        pool.submit(train_until, t, inputs, last_epoch, part, name=f"EEGNet {t.settings} seed {t.seed}", first=True)
        for t in trainings
    ]
    return pool.results(jobs)


def search(grid, seed: int, inputs: Path, pool: JobPool) -> list[Training]:
    """Every setting of ``grid`` from ``seed``, by successive halving with one cut: all train to
    epoch :data:`MIN_EPOCHS`, and the better half by validation loss (the first on a tie) trains
    on to its early stop. A setting cut had a higher validation loss than each one kept, so the
    lowest loss of the whole grid is among the kept. Where every setting would run its
    :data:`MAX_EPOCHS`, this trains 30 % fewer epochs with four settings."""
    trainings = [Training(settings, seed) for settings in _grid(grid)]
    if len(trainings) > 1:
        trainings = _train(trainings, inputs, "the grid, first seed", pool, last_epoch=MIN_EPOCHS)
    ranked = sorted(range(len(trainings)), key=lambda i: (trainings[i].best_loss, i))
    kept = sorted(ranked[: (len(trainings) + 1) // 2])
    for index, training in zip(kept, _train([trainings[i] for i in kept], inputs, "the grid, first seed", pool)):
        trainings[index] = training
    return trainings


def eegnet(
    train: WindowSet,
    validation: WindowSet,
    n_classes: int,
    seed: int = 0,
    grid=GRID,
    cache: Path | None = None,
    pool: JobPool | None = None,
) -> EEGNetFit:
    """Fit EEGNet on ``train``, its setting of ``grid`` (:func:`search`) and epoch chosen on
    ``validation``; returns an :class:`EEGNetFit`: the network (called on a window set, its
    [N, n_classes] probabilities) and the chosen recipe with every setting's validation loss
    (JSON-serialisable, for the run's record). ``cache``: a folder to reuse the fit from, or save
    it to (see the module docstring); ``pool``: where the settings train (default: one after
    another, in this process)."""
    return chosen_weights(train, validation, n_classes, (seed,), grid, cache, pool)[0].network()


def chosen_weights(
    train: WindowSet,
    validation: WindowSet,
    n_classes: int,
    seeds: Sequence[int],
    grid=GRID,
    cache: Path | None = None,
    pool: JobPool | None = None,
) -> list[ChosenWeights]:
    """One EEGNet per seed, as its weights: the first seed searches ``grid``, the others train the
    setting it chose (side by side where ``pool`` has workers), each stopping at its own best
    validation epoch; as :func:`eegnet` otherwise. Nothing here draws from torch's global random
    state (the trainings do, in their jobs), so a thread of the command may run it beside other
    work that does; :meth:`ChosenWeights.network` builds each network after."""
    if not len(train) or not len(validation):
        raise ValueError(f"eegnet: {len(train)} training and {len(validation)} validation windows; expected both")
    train_data, val_data = Data.of(train, n_classes), Data.of(validation, n_classes)
    saved = SavedFits(cache, train_data, val_data, n_classes)
    pool = pool or JobPool(plan(1, 1))
    first, *others = seeds
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as scratch:
        inputs = save_inputs(train_data, val_data, Path(scratch) / "inputs.pt")
        fits = {first: saved.get(first, grid) or saved.put(first, grid, search(grid, first, inputs, pool))}
        setting = {key: (fits[first].record[key],) for key in grid}
        fits.update({seed: saved.get(seed, setting) for seed in others})
        missing = [seed for seed in others if fits[seed] is None]
        started = [Training(_grid(setting)[0], seed) for seed in missing]
        for seed, training in zip(missing, _train(started, inputs, "the chosen setting, another seed", pool)):
            fits[seed] = saved.put(seed, setting, [training])
    return [fits[seed] for seed in seeds]


def _shape(data: Data) -> dict[str, int]:
    return {"n_chans": int(data.x.shape[1]), "n_times": int(data.x.shape[2])}


@dataclasses.dataclass(frozen=True)
class EEGNetFit:
    """One seed's chosen EEGNet, its record, and what rebuilding it needs (``settings``)."""

    model: torch.nn.Module
    record: dict[str, Any]
    n_classes: int
    shape: dict[str, int]

    @property
    def settings(self) -> dict[str, Any]:
        """What ``model.fused`` rebuilds the network from: input shape and dropout."""
        return {**self.shape, "drop_prob": float(self.record["drop_prob"])}

    def __call__(self, windows: WindowSet) -> np.ndarray:
        return eegnet_probabilities(self.model, windows.eeg, self.n_classes)


@dataclasses.dataclass(frozen=True)
class ChosenWeights:
    """One seed's chosen EEGNet as its weights (``state_dict``) and record, with its input shape."""

    weights: dict[str, torch.Tensor]
    record: dict[str, Any]
    n_classes: int
    shape: dict[str, int]

    def network(self) -> EEGNetFit:
        """The network these weights make, in eval mode. Building it draws initial weights from
        torch's global random state, forked (the caller's stream stays where it was)."""
        with torch.random.fork_rng(devices=[]):
            model = build_model(self.shape["n_chans"], self.shape["n_times"], self.n_classes, self.record["drop_prob"])
        model.load_state_dict(self.weights)
        return EEGNetFit(model.eval(), self.record, self.n_classes, self.shape)


def _fixed() -> dict[str, Any]:
    return {
        "max_epochs": MAX_EPOCHS,
        "patience": PATIENCE,
        "min_epochs": MIN_EPOCHS,
        "search": "successive halving: every setting to min_epochs, the better half on",
        "batch": BATCH,
        "weight_decay": WEIGHT_DECAY,
        "sfreq": MODEL_SFREQ,
        "kernel_length": KERNEL_LENGTH,
        "scale_uv": SCALE_UV,
        "network": f"braindecode {braindecode.__version__} EEGNetv4",  # a saved fit's weights fit this one
        "forward": "first block factored (model.eegnet_factored)",  # the same network, other rounding
    }


def _record(chosen: Training, trainings: list[Training]) -> dict[str, Any]:
    def outcome(t: Training) -> dict[str, Any]:
        return {**t.settings, "epoch": t.best_epoch, "val_loss": round(t.best_loss, 6), "epochs_trained": t.epoch}

    return {**outcome(chosen), "grid": [outcome(t) for t in trainings], "fixed": _fixed()}


@dataclasses.dataclass
class SavedFits:
    """Each seed's chosen network in ``folder`` (None: nowhere), under a fingerprint of everything
    its fit depends on: both splits' inputs and targets, the grid, the seed and the fixed recipe."""

    folder: Path | None
    train: Data
    val: Data
    n_classes: int

    @functools.cached_property
    def _data_digest(self) -> bytes:
        """Both splits' inputs and targets digested once (hundreds of MB), for every seed's key."""
        digest = hashlib.blake2b(digest_size=20)
        for tensor in (self.train.x, self.train.y, self.val.x, self.val.y):
            digest.update(str(tuple(tensor.shape)).encode())
            digest.update(tensor.numpy().tobytes())
        return digest.digest()

    def key(self, seed: int, grid) -> str:
        digest = hashlib.blake2b(self._data_digest, digest_size=20)
        recipe = {"grid": {k: list(v) for k, v in grid.items()}, "seed": seed, "fixed": _fixed()}
        digest.update(json.dumps(recipe, sort_keys=True).encode())
        return digest.hexdigest()

    def put(self, seed: int, grid, trainings: list[Training]) -> ChosenWeights:
        """The weights and record of the lowest validation loss among ``trainings``, saved."""
        chosen = min(trainings, key=lambda t: t.best_loss)
        log.info("eegnet seed %d: %s, epoch %d (validation loss %.4f)", seed, chosen.settings, chosen.best_epoch,
                 chosen.best_loss)  # fmt: skip
        record = _record(chosen, trainings)
        if self.folder is not None:
            state = {"key": self.key(seed, grid), "record": json.dumps(record), "weights": chosen.best}
            torch.save(state, self.folder / f"eegnet-seed{seed}.pt")
        return ChosenWeights(chosen.best, record, self.n_classes, _shape(self.train))

    def get(self, seed: int, grid) -> ChosenWeights | None:
        """The saved weights and record of ``seed`` where its fingerprint matches; else None."""
        path = self.folder / f"eegnet-seed{seed}.pt" if self.folder is not None else None
        if path is None or not path.is_file():
            return None
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            if state.get("key") != self.key(seed, grid):
                return None
            fit = ChosenWeights(state["weights"], json.loads(state["record"]), self.n_classes, _shape(self.train))
        # A torn or foreign file fails in whichever way the unpickler meets it; every way means fit again.
        except Exception as error:
            log.warning("eegnet: %s is not a usable saved fit (%s); fitting again", path, error)
            return None
        log.info("eegnet: reused the fit saved in %s (same windows, targets, grid and seed)", path)
        return fit
