"""Pretraining's validation: the pretraining losses on up to ``val_windows`` windows of the held-out
subjects (sites), logged as ``val/...`` at every checkpoint to rank them for ``best``."""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Sequence
from typing import Any

import torch

from eegfm.contract.schema import CHANNELS
from eegfm.core.logs import get_logger
from eegfm.model.modeling import pretraining_losses
from eegfm.training.config import ConfigError, PretrainConfig
from eegfm.training.data import EEGLoader, RecordFilter, data_label, describe, model_inputs
from eegfm.training.distributed import Dist, unwrap
from eegfm.training.run_state import TrainState
from eegfm.training.splits import HeldOut, corpus_split_windows, hold_out, training_filter
from eegfm.training.steps import autocast, loader_config, step_seed
from eegfm.training.tracking import ReconstructionMeter

log = get_logger("eegfm.training.pretrain")


def measure_reconstruction(
    run: TrainState, meter: ReconstructionMeter, batch: dict[str, Any], inputs: dict[str, Any], out: Any
) -> None:
    """Add a micro-batch's masked reconstruction error, per channel and site, to ``meter`` (eegfm's
    sample reconstruction; a peer's patch targets are not samples, and its loss alone is logged)."""
    tokenizer = getattr(unwrap(run.model).encoder, "tokenizer", None)
    if tokenizer is None:
        return
    with torch.no_grad():
        target = tokenizer.to_patches(inputs["eeg"].float() * tokenizer.scale).flatten(2)
        mask = out.sample_mask & (inputs["channel_mask"] > 0.5).unsqueeze(-1)
        meter.add(out.reconstruction.float(), target, mask, batch["site_id"])


def plan_groups(cfg: PretrainConfig, dist: Dist, data: str | Sequence[str]) -> tuple[HeldOut | None, RecordFilter]:
    """The held-out groups (None: no validation) and the training windows' filter: rank 0 chooses
    them (``splits.hold_out``, ``splits.training_filter``) and every rank gets them (or fails alike)."""
    found: dict[str, Any] = {}
    if dist.is_main:
        splits = tuple(cfg.exclude_corpus_splits)
        try:
            held_out = hold_out(data, cfg.val_fraction, cfg.split_group, cfg.seed, splits)
            train = training_filter(data, cfg.split_group, cfg.train_subject_fraction, cfg.seed, held_out, splits)
            found = {"held_out": held_out, "train": train}
        except (OSError, ValueError) as err:  # a missing folder, an unreachable store, no shards
            found = {"error": f"--data {data_label(data)}: {err}"}
    found = dist.broadcast_object(found)
    if "error" in found:
        raise ConfigError(found["error"])
    return found["held_out"], found["train"]


def check_corpus_split_windows(cfg: PretrainConfig, data: str | Sequence[str], say: bool) -> None:
    """Say how many windows ``exclude_corpus_splits`` leaves out of pretraining (``say``); a
    ConfigError where it leaves none."""
    splits = tuple(cfg.exclude_corpus_splits)
    try:
        counts = describe(data).counts
    except OSError:  # no manifest: the loader's filter still applies
        counts = {}
    excluded = corpus_split_windows(counts, splits) if splits else None
    total = int(counts.get("windows", 0) or 0)
    if excluded and excluded >= total:
        raise ConfigError(
            f"exclude_corpus_splits: all {total} windows of {data_label(data)} are of the corpus "
            f"split(s) {', '.join(splits)}, which pretraining leaves out (a benchmark's test "
            "recordings); preprocess the corpus's train recordings, or set exclude_corpus_splits=[] "
            "to pretrain on them"
        )
    if excluded and say:
        log.info(
            "pretraining leaves out %d of %d windows: the corpus's %s split (exclude_corpus_splits; "
            "[] pretrains on them too)",
            excluded,
            total,
            "/".join(splits),
        )


def validation_due(cfg: PretrainConfig, step: int) -> bool:
    """Validate at every scheduled checkpoint (its metric picks ``best``) and every ``eval_every``."""
    return (
        step % cfg.save_every == 0
        or step == cfg.optim.max_steps
        or (cfg.eval_every is not None and step % cfg.eval_every == 0)
    )


class Validation:
    """The pretraining losses on held-out windows, on rank 0 (the others wait at their next
    collective). The first ``val_windows`` are read once and kept, and every evaluation uses the
    same masks, so two validation losses differ only by the weights.
    """

    def __init__(self, run: TrainState, data: str | Sequence[str], held_out: HeldOut):
        cfg = run.cfg
        # Read once: worker processes would only outlive the single pass.
        section = dataclasses.replace(cfg.loader, num_workers=0)
        patch = unwrap(run.model).config.patch_size
        config = loader_config(section, patch, filters=held_out.val_filter(), train=False)
        self.loader = EEGLoader(data, config, rank=0, world_size=1, infinite=False)
        self.quota, self.held_out = cfg.val_windows, held_out
        self.batches: list[dict[str, Any]] | None = None

    def _read(self) -> list[dict[str, Any]]:
        started = time.perf_counter()
        batches, count = [], 0
        with contextlib.closing(iter(self.loader)) as stream:
            for batch in stream:
                batches.append(batch)
                count += len(batch["label"])
                if count >= self.quota:
                    break
        self.loader = None  # its buffers go; the batches are all it is needed for
        seconds = time.perf_counter() - started
        if count:
            log.info("validation: %d held-out windows read in %.1f s, kept for every evaluation", count, seconds)
        else:
            log.warning(
                "validation: the data holds no window of the held-out %ss (its manifest counts %d); "
                "no validation loss, so no checkpoint is marked best",
                self.held_out.group,
                self.held_out.windows,
            )
        return batches

    @torch.no_grad()
    def __call__(self, run: TrainState) -> dict[str, float]:
        """``val/`` losses, window count and reconstruction metrics; {} without held-out windows."""
        if self.batches is None:
            self.batches = self._read()
        net = unwrap(run.model)
        was_training = net.training
        net.eval()
        meter = ReconstructionMeter(CHANNELS)
        names = ("loss", *pretraining_losses(net))
        sums = torch.zeros(len(names), dtype=torch.float64)
        count = 0
        try:
            for index, batch in enumerate(self.batches):
                inputs = model_inputs(batch, run.dist.device, non_blocking=True)
                generator = torch.Generator().manual_seed(step_seed(run.cfg.seed, index))
                with autocast(run.dist, run.amp_dtype):
                    out = net(**inputs, generator=generator)
                size = inputs["eeg"].shape[0]
                losses = torch.stack([getattr(out, name) for name in names])
                sums += size * losses.double().cpu()
                count += size
                measure_reconstruction(run, meter, batch, inputs, out)
        finally:
            net.train(was_training)
        if count == 0:
            return {}
        metrics = {f"val/{name}": value for name, value in zip(names, (sums / count).tolist())}
        metrics["val/windows"] = float(count)
        recon = ReconstructionMeter.report([meter.pop()], CHANNELS)
        metrics.update({f"val/{name}": value for name, value in recon.items()})
        return metrics
